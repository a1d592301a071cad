"""Tier 1: a catalogue of bad data sets, and what sweeper does with each (sweeper/data.py, images.py, spec.py).

Every case pins the exact behaviour: either a DataError / SpecError whose one-line message names the
offending file, folder, CSV line or spec key, or a file that is listed in `index.skipped` (with a
reason) and left out of the index and the decoded array. Real small images written with PIL into
tmp_path; no Ray started, no TensorFlow.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sweeper.cli import main
from sweeper.data import build_index
from sweeper.errors import DataError, SpecError, SweeperError
from sweeper.images import decode, load_images
from sweeper.spec import DataSpec, load_spec

SIZE = 16


# --- helpers -----------------------------------------------------------------------------------


def write_image(path: Path, seed: int = 0, size: int = SIZE, fmt: str | None = None) -> Path:
    """A random-colour RGB image; every seed gives a different file."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def image_bytes(fmt: str, size: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(7).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


def class_folders(root: Path, classes=("cats", "dogs"), per_class: int = 4) -> list[Path]:
    return [
        write_image(root / name / f"img{i}.png", seed=100 * c + i)
        for c, name in enumerate(classes)
        for i in range(per_class)
    ]


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    """Line 1 is the header, so rows[k] is on line k + 2."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in [header, *rows]))
    return path


def csv_images(root: Path, n: int = 6) -> list[str]:
    """n images img0.png.. in root, and their rows `img<i>.png,cat|dog` (lines 2..n+1)."""
    for i in range(n):
        write_image(root / f"img{i}.png", seed=i)
    return [f"img{i}.png,{'cat' if i % 2 else 'dog'}" for i in range(n)]


def regression_rows(root: Path, n: int = 6) -> list[str]:
    for i in range(n):
        write_image(root / f"img{i}.png", seed=i)
    return [f"img{i}.png,{1.5 * i}" for i in range(n)]


def write_spec(folder: Path, data_yaml: str, task: str = "classification") -> Path:
    path = folder / "spec.yaml"
    path.write_text(f"name: bad-data\ntask: {task}\ndata:\n{data_yaml}space: {{}}\n")
    return path


def skipped_dict(index) -> dict[str, str]:
    return dict(index.skipped)


# --- the error catalogue -----------------------------------------------------------------------
#
# Each case builds its bad data set under tmp_path and returns (action, error type, needles): the
# action must raise exactly that error type, with every needle in its one-line message.

Case = tuple[Callable[[], object], type, list[str]]
ERROR_CASES = []


def error_case(*marks):
    def register(func: Callable[[Path], Case]):
        ERROR_CASES.append(pytest.param(func, id=func.__name__.replace("_", "-"), marks=marks))
        return func

    return register


def classification(**data) -> Callable[[], object]:
    return lambda: build_index(DataSpec(**data), "classification")


def regression(**data) -> Callable[[], object]:
    return lambda: build_index(DataSpec(**data), "regression")


# 5. an empty class folder


@error_case()
def empty_class_folder(tmp_path):
    root = tmp_path / "train"
    class_folders(root, classes=("cats",))
    (root / "dogs").mkdir()
    return classification(train=root), DataError, [f"{root / 'dogs'}: class folder holds no images"]


@error_case()
def class_folder_with_only_hidden_files(tmp_path):
    root = tmp_path / "train"
    class_folders(root, classes=("cats",))
    (root / "dogs").mkdir()
    (root / "dogs" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    write_image(root / "dogs" / ".thumbnails" / "img0.png")  # inside a hidden folder: not an image of the class
    return classification(train=root), DataError, [f"{root / 'dogs'}: class folder holds no images"]


# 6. a single class


@error_case()
def single_class_folder(tmp_path):
    root = tmp_path / "train"
    class_folders(root, classes=("cats",))
    write_image(root / ".trash" / "img0.png")  # a hidden folder is not a second class
    return classification(train=root), DataError, [f"{root}: only one class ('cats')", "at least two"]


@error_case()
def single_class_in_csv(tmp_path):
    root = tmp_path / "data"
    rows = [row.replace("dog", "cat") for row in csv_images(root)]
    csv = write_csv(root / "labels.csv", "path,label", rows)
    return classification(csv=csv), DataError, [f"{csv}: only one class ('cat')", "at least two"]


@error_case()
def single_class_in_file_names(tmp_path):
    root = tmp_path / "photos"
    for i in range(4):
        write_image(root / f"cat.{i}.png", seed=i)
    return (
        classification(train=root, label_pattern=r"^(?P<label>[a-z]+)\."),
        DataError,
        [f"{root}: only one class ('cat')", "at least two"],
    )


# 7. a CSV without the configured columns


@error_case()
def csv_without_target_column(tmp_path):
    root = tmp_path / "data"
    rows = csv_images(root)
    csv = write_csv(root / "labels.csv", "path,class", rows)
    return (
        classification(csv=csv),
        DataError,
        [f"{csv}: no column 'label' (data.target_column); the columns are: path, class"],
    )


@error_case()
def csv_without_path_column(tmp_path):
    root = tmp_path / "data"
    rows = csv_images(root)
    csv = write_csv(root / "labels.csv", "path,label", rows)
    return (
        classification(csv=csv, path_column="filename"),
        DataError,
        [f"{csv}: no column 'filename' (data.path_column); the columns are: path, label"],
    )


@error_case()
def csv_with_semicolons(tmp_path):
    root = tmp_path / "data"
    rows = [row.replace(",", ";") for row in csv_images(root)]
    csv = write_csv(root / "labels.csv", "path;label", rows)
    return classification(csv=csv), DataError, [f"{csv}: no column 'path'", "the columns are: path;label"]


# 8. a row pointing to a missing file


@error_case()
def csv_row_with_missing_file(tmp_path):
    root = tmp_path / "data"
    rows = csv_images(root)
    rows.insert(2, "ghost.png,cat")  # line 4
    csv = write_csv(root / "labels.csv", "path,label", rows)
    return classification(csv=csv), DataError, [f"{csv}, line 4: image file not found: {root / 'ghost.png'}"]


@error_case()
def validation_csv_row_with_missing_file(tmp_path):
    root = tmp_path / "data"
    csv = write_csv(root / "train.csv", "path,label", csv_images(root))
    val = write_csv(root / "val.csv", "path,label", ["img0.png,dog", "sub/ghost.png,cat"])
    return (
        classification(csv=csv, validation=val),
        DataError,
        [f"{val}, line 3: image file not found: {root / 'sub' / 'ghost.png'}"],
    )


@error_case()
def csv_row_with_empty_path(tmp_path):
    root = tmp_path / "data"
    rows = csv_images(root) + [",cat"]  # line 8
    csv = write_csv(root / "labels.csv", "path,label", rows)
    return classification(csv=csv), DataError, [f"{csv}, line 8: empty 'path'"]


# 9. the same image listed twice


@error_case()
def csv_duplicate_row(tmp_path):
    root = tmp_path / "data"
    rows = csv_images(root) + ["img3.png,cat"]  # line 8; img3.png first on line 5
    csv = write_csv(root / "labels.csv", "path,label", rows)
    return classification(csv=csv), DataError, [f"{csv}, line 8: 'img3.png' is listed twice (first on line 5)"]


@error_case()
def csv_duplicate_row_spelled_with_dot_slash(tmp_path):
    root = tmp_path / "data"
    rows = csv_images(root) + ["./img0.png,dog"]  # line 8; img0.png first on line 2
    csv = write_csv(root / "labels.csv", "path,label", rows)
    return classification(csv=csv), DataError, [f"{csv}, line 8: './img0.png' is listed twice (first on line 2)"]


@error_case()
def csv_duplicate_row_spelled_with_dot_dot(tmp_path):
    root = tmp_path / "data"
    rows = ["sub/../img1.png,cat", *csv_images(root)]  # line 2; img1.png again on line 4
    csv = write_csv(root / "labels.csv", "path,label", rows)
    return classification(csv=csv), DataError, [f"{csv}, line 4: 'img1.png' is listed twice (first on line 2)"]


# 10. an empty regression target


@error_case()
def regression_empty_target(tmp_path):
    root = tmp_path / "data"
    rows = regression_rows(root)
    rows[3] = "img3.png,"  # line 5
    csv = write_csv(root / "targets.csv", "path,label", rows)
    return regression(csv=csv), DataError, [f"{csv}, line 5: empty 'label' for 'img3.png'"]


@error_case()
def regression_blank_target(tmp_path):
    root = tmp_path / "data"
    rows = regression_rows(root)
    rows[1] = "img1.png,   "  # line 3
    csv = write_csv(root / "targets.csv", "path,score", rows)
    return regression(csv=csv, target_column="score"), DataError, [f"{csv}, line 3: empty 'score' for 'img1.png'"]


@error_case()
def regression_short_row(tmp_path):
    root = tmp_path / "data"
    rows = regression_rows(root)
    rows[4] = "img4.png"  # line 6: no target field at all
    csv = write_csv(root / "targets.csv", "path,label", rows)
    return regression(csv=csv), DataError, [f"{csv}, line 6: empty 'label' for 'img4.png'"]


# 11. a non-numeric regression target


@error_case()
def regression_word_target(tmp_path):
    root = tmp_path / "data"
    rows = regression_rows(root)
    rows[2] = "img2.png,many"
    csv = write_csv(root / "targets.csv", "path,label", rows)
    return (
        regression(csv=csv),
        DataError,
        [f"{root / 'img2.png'}: target 'many' is not a number", "task regression needs numeric targets"],
    )


@error_case()
def regression_nan_target(tmp_path):
    root = tmp_path / "data"
    rows = regression_rows(root)
    rows[5] = "img5.png,nan"
    csv = write_csv(root / "targets.csv", "path,label", rows)
    return regression(csv=csv), DataError, [f"{root / 'img5.png'}: target 'nan' is not a number"]


@error_case()
def regression_word_in_file_name(tmp_path):
    root = tmp_path / "photos"
    for i in range(4):
        write_image(root / f"{i}.age{i * 10}.png", seed=i)
    write_image(root / "4.ageold.png", seed=4)
    return (
        regression(train=root, label_pattern=r"age(?P<label>\w+)\."),
        DataError,
        [f"{root / '4.ageold.png'}: target 'old' is not a number"],
    )


# 12. CSV paths that leave the images folder


@error_case()
def csv_path_climbing_to_etc_passwd(tmp_path):
    root = tmp_path / "data"
    rows = csv_images(root) + ["../../etc/passwd,cat"]  # line 8
    csv = write_csv(root / "labels.csv", "path,label", rows)
    return (
        classification(csv=csv),
        DataError,
        [f"{csv}, line 8: '../../etc/passwd' points outside the images folder {root}"],
    )


@error_case()
def csv_path_to_a_real_image_outside(tmp_path):
    root = tmp_path / "data"
    write_image(tmp_path / "outside.png", seed=99)  # it exists: still refused
    rows = ["../outside.png,dog", *csv_images(root)]  # line 2
    csv = write_csv(root / "labels.csv", "path,label", rows)
    return (
        classification(csv=csv),
        DataError,
        [f"{csv}, line 2: '../outside.png' points outside the images folder {root}"],
    )


@error_case()
def csv_path_outside_data_images_folder(tmp_path):
    images = tmp_path / "data" / "images"
    rows = csv_images(images)
    write_image(tmp_path / "data" / "beside.png", seed=98)  # beside the CSV, but not in data.images
    csv = write_csv(tmp_path / "data" / "labels.csv", "path,label", rows + ["../beside.png,cat"])
    return (
        classification(csv=csv, images=images),
        DataError,
        [f"{csv}, line 8: '../beside.png' points outside the images folder {images}"],
    )


# 13. absolute paths in the CSV


@error_case()
def csv_absolute_path_etc_passwd(tmp_path):
    root = tmp_path / "data"
    rows = csv_images(root) + ["/etc/passwd,cat"]  # line 8
    csv = write_csv(root / "labels.csv", "path,label", rows)
    return (
        classification(csv=csv),
        DataError,
        [f"{csv}, line 8: '/etc/passwd' is an absolute path; paths must be relative to {root}"],
    )


@error_case()
def csv_absolute_path_inside_the_images_folder(tmp_path):
    root = tmp_path / "data"
    rows = csv_images(root)
    rows[0] = f"{root / 'img0.png'},dog"  # line 2: absolute even though it is inside
    csv = write_csv(root / "labels.csv", "path,label", rows)
    return classification(csv=csv), DataError, [f"{csv}, line 2: '{root / 'img0.png'}' is an absolute path"]


@error_case()
def csv_windows_drive_path(tmp_path):
    root = tmp_path / "data"
    rows = csv_images(root) + [r"C:\photos\cat.png,cat"]  # line 8
    csv = write_csv(root / "labels.csv", "path,label", rows)
    return classification(csv=csv), DataError, [f"{csv}, line 8: 'C:\\\\photos\\\\cat.png' is an absolute path"]


# 14 and 17. label_pattern problems caught by the spec


@error_case()
def label_pattern_without_named_group(tmp_path):
    class_folders(tmp_path / "photos")
    spec = write_spec(tmp_path, "  train: photos\n  label_pattern: '^([a-z]+)\\.'\n")
    return lambda: load_spec(spec), SpecError, [f"{spec}: data.label_pattern:", "needs a named group `label`"]


@error_case()
def label_pattern_with_wrongly_named_group(tmp_path):
    class_folders(tmp_path / "photos")
    spec = write_spec(tmp_path, "  train: photos\n  label_pattern: '^(?P<class>[a-z]+)\\.'\n")
    return lambda: load_spec(spec), SpecError, [f"{spec}: data.label_pattern:", "needs a named group `label`"]


@error_case()
def label_pattern_invalid_regex(tmp_path):
    class_folders(tmp_path / "photos")
    spec = write_spec(tmp_path, "  train: photos\n  label_pattern: '^(?P<label>[a-z+'\n")
    return (
        lambda: load_spec(spec),
        SpecError,
        [f"{spec}: data.label_pattern: '^(?P<label>[a-z+' is not a valid regular expression"],
    )


@error_case()
def label_pattern_not_a_string(tmp_path):
    class_folders(tmp_path / "photos")
    spec = write_spec(tmp_path, "  train: photos\n  label_pattern: [cat, dog]\n")
    return lambda: load_spec(spec), SpecError, [f"{spec}: data.label_pattern:", "must be a regular expression"]


# 15. a label_pattern that matches nothing


@error_case()
def label_pattern_matching_no_file(tmp_path):
    root = tmp_path / "photos"
    for i in range(5):
        write_image(root / f"IMG_000{i}.jpg", seed=i, fmt="JPEG")
    return (
        classification(train=root, label_pattern=r"^(?P<label>[a-z]+)\."),
        DataError,
        [
            f"{root}: data.label_pattern '^(?P<label>[a-z]+)\\\\.' matches no file name",
            "(e.g. IMG_0000.jpg, IMG_0001.jpg, IMG_0002.jpg)",
        ],
    )


@error_case()
def label_pattern_in_a_folder_without_images(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    (root / "notes.txt").write_text("the photos are elsewhere")
    return (
        classification(train=root, label_pattern=r"^(?P<label>[a-z]+)\."),
        DataError,
        [f"{root}: data.label_pattern", "matches no file name (e.g. no image files)"],
    )


# 18. CSV files that are empty or not CSV at all


@error_case()
def csv_header_only(tmp_path):
    csv = write_csv(tmp_path / "data" / "labels.csv", "path,label", [])
    return classification(csv=csv), DataError, [f"{csv}: the CSV has no rows"]


@error_case()
def csv_zero_bytes(tmp_path):
    csv = tmp_path / "data" / "labels.csv"
    csv.parent.mkdir()
    csv.write_bytes(b"")
    return classification(csv=csv), DataError, [f"{csv}: not a readable CSV file"]


@error_case()
def csv_of_random_bytes(tmp_path):
    csv = tmp_path / "data" / "labels.csv"
    csv.parent.mkdir()
    csv.write_bytes(np.random.default_rng(0).bytes(4096))
    return classification(csv=csv), DataError, [f"{csv}: not a readable CSV file ("]


@error_case()
def csv_that_is_a_png(tmp_path):
    csv = tmp_path / "data" / "labels.csv"
    csv.parent.mkdir()
    csv.write_bytes(image_bytes("PNG"))
    return classification(csv=csv), DataError, [f"{csv}: not a readable CSV file ("]


# 19. regression needs targets, which class folders do not give


@error_case()
def regression_with_class_folders(tmp_path):
    root = tmp_path / "train"
    class_folders(root)
    return (
        regression(train=root),
        DataError,
        [f"{root}: task regression needs numeric targets", "data.csv", "data.label_pattern",
         "a folder per class only gives class labels"],
    )


# 20. two layouts at once


@error_case()
def csv_and_train_together(tmp_path):
    csv = write_csv(tmp_path / "data" / "labels.csv", "path,label", csv_images(tmp_path / "data"))
    class_folders(tmp_path / "train")
    spec = write_spec(tmp_path, f"  csv: {csv}\n  train: train\n")
    return (
        lambda: load_spec(spec),
        SpecError,
        [f"{spec}: data.csv: and data.train are two layouts"],
    )


@error_case()
def csv_and_label_pattern_together(tmp_path):
    csv = write_csv(tmp_path / "data" / "labels.csv", "path,label", csv_images(tmp_path / "data"))
    spec = write_spec(tmp_path, f"  csv: {csv}\n  label_pattern: '^(?P<label>[a-z]+)'\n")
    return lambda: load_spec(spec), SpecError, [f"{spec}: data.label_pattern:", "labels come from the CSV"]


# Regressions: bugs found while writing this catalogue, now fixed.


@error_case()
def csv_line_numbers_after_a_blank_line(tmp_path):
    root = tmp_path / "data"
    rows = ["", *csv_images(root), "ghost.png,cat"]  # blank line 2, images on 3..8, ghost.png on line 9
    csv = write_csv(root / "labels.csv", "path,label", rows)
    assert csv.read_text().splitlines()[8] == "ghost.png,cat"  # really line 9
    return classification(csv=csv), DataError, [f"{csv}, line 9: image file not found"]


@pytest.mark.parametrize("make", ERROR_CASES)
def test_bad_data_is_refused_with_a_message_naming_it(tmp_path, make):
    action, error, needles = make(tmp_path)
    with pytest.raises(SweeperError) as caught:
        action()
    message = str(caught.value)
    assert type(caught.value) is error, message
    assert "\n" not in message, message  # the CLI prints it on one line
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"


# --- 1-3. unreadable image files: skipped, or an error when asked --------------------------------


def random_bytes_jpg(folder: Path) -> Path:
    path = folder / "x.jpg"
    path.write_bytes(np.random.default_rng(1).bytes(3000))
    return path


def truncated_jpeg(folder: Path) -> Path:
    data = image_bytes("JPEG")
    path = folder / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    return path


def zero_byte_png(folder: Path) -> Path:
    path = folder / "empty.png"
    path.write_bytes(b"")
    return path


def truncated_png(folder: Path) -> Path:
    data = image_bytes("PNG")
    path = folder / "truncated.png"
    path.write_bytes(data[: len(data) // 2])
    return path


def text_named_png(folder: Path) -> Path:
    path = folder / "fake.png"
    path.write_text("this is not a picture\n")
    return path


def jpeg_named_png(folder: Path) -> Path:
    """Not bad: a JPEG with a .png suffix decodes fine (PIL reads the content, not the name)."""
    path = folder / "really_a_jpeg.png"
    path.write_bytes(image_bytes("JPEG"))
    return path


BAD_IMAGES = [random_bytes_jpg, truncated_jpeg, zero_byte_png, truncated_png, text_named_png]


@pytest.fixture
def cats_and_dogs(tmp_path) -> Path:
    root = tmp_path / "train"
    class_folders(root, per_class=4)
    return root


@pytest.mark.parametrize("make_bad", BAD_IMAGES, ids=lambda f: f.__name__.replace("_", "-"))
def test_unreadable_image_is_skipped(cats_and_dogs, tmp_path, make_bad):
    bad = str(make_bad(cats_and_dogs / "cats"))
    index = build_index(DataSpec(train=cats_and_dogs), "classification")
    assert bad in index.paths  # by its suffix it is an image: only decoding finds out
    label = dict(zip(index.paths, index.targets.tolist()))

    cleaned, array = load_images(index, SIZE, tmp_path / "cache", on_bad_image="skip")

    assert bad not in cleaned.paths
    assert len(cleaned.paths) == len(index.paths) - 1 == 8
    assert array.shape == (8, SIZE, SIZE, 3)
    (reason,) = [r for p, r in cleaned.skipped if p == bad]
    assert reason.startswith("unreadable image: ") and "\n" not in reason
    assert len(cleaned.skipped) == 1
    for i, path in enumerate(cleaned.paths):  # the remaining rows still line up with their labels
        assert cleaned.targets[i] == label[path]
        assert np.array_equal(array[i], decode(path, SIZE))
    assert cleaned.summary()["skipped_files"] == [{"path": bad, "reason": reason}]


@pytest.mark.parametrize("make_bad", BAD_IMAGES, ids=lambda f: f.__name__.replace("_", "-"))
def test_unreadable_image_is_an_error_when_asked(cats_and_dogs, tmp_path, make_bad):
    bad = str(make_bad(cats_and_dogs / "dogs"))
    index = build_index(DataSpec(train=cats_and_dogs), "classification")
    with pytest.raises(DataError) as caught:
        load_images(index, SIZE, tmp_path / "cache", on_bad_image="error")
    message = str(caught.value)
    assert message.startswith(f"{bad}: unreadable image: ")
    assert message.endswith("(set data.on_bad_image: skip to skip it)")
    assert "\n" not in message
    assert not list((tmp_path / "cache").rglob("*.npy"))  # nothing half-written to the cache


def test_a_jpeg_with_a_png_suffix_is_not_bad(cats_and_dogs, tmp_path):
    odd = str(jpeg_named_png(cats_and_dogs / "cats"))
    index = build_index(DataSpec(train=cats_and_dogs), "classification")
    cleaned, array = load_images(index, SIZE, tmp_path / "cache", on_bad_image="error")
    assert odd in cleaned.paths and cleaned.skipped == ()
    assert array.shape == (9, SIZE, SIZE, 3)


def test_unreadable_images_in_csv_and_file_name_layouts_are_skipped(tmp_path):
    # CSV layout: the suffix is not checked when indexing, so a text file listed in the CSV is found at decoding
    root = tmp_path / "data"
    rows = csv_images(root)
    text = root / "notes.txt"
    text.write_text("hello")
    csv = write_csv(root / "labels.csv", "path,label", rows + ["notes.txt,cat", "x.jpg,dog"])
    random_bytes_jpg(root)
    index = build_index(DataSpec(csv=csv), "classification")
    cleaned, array = load_images(index, SIZE, tmp_path / "cache", on_bad_image="skip")
    assert {p for p, _ in cleaned.skipped} == {str(text), str(root / "x.jpg")}
    assert all(r.startswith("unreadable image") for _, r in cleaned.skipped)
    assert len(cleaned.paths) == array.shape[0] == 6

    # file-name layout
    photos = tmp_path / "photos"
    for i in range(6):
        write_image(photos / f"{'cat' if i % 2 else 'dog'}.{i}.png", seed=i)
    (photos / "cat.99.png").write_bytes(b"")
    index = build_index(DataSpec(train=photos, label_pattern=r"^(?P<label>[a-z]+)\."), "classification")
    cleaned, array = load_images(index, SIZE, tmp_path / "cache", on_bad_image="skip")
    assert [p for p, _ in cleaned.skipped] == [str(photos / "cat.99.png")]
    assert len(cleaned.paths) == array.shape[0] == 6


# --- 4. non-image files and hidden files ----------------------------------------------------------


def test_non_image_files_are_skipped_and_hidden_files_ignored_in_class_folders(cats_and_dogs):
    notes = cats_and_dogs / "cats" / "notes.txt"
    notes.write_text("to do: more cats")
    thumbs = cats_and_dogs / "dogs" / "Thumbs.db"
    thumbs.write_bytes(b"\xd0\xcf\x11\xe0")
    hidden = [
        cats_and_dogs / "cats" / ".DS_Store",
        cats_and_dogs / "dogs" / "._img0.png",  # macOS AppleDouble: hidden, even with an image suffix
        cats_and_dogs / ".DS_Store",
    ]
    for path in hidden:
        path.write_bytes(b"\0\0\0\1Bud1")
    write_image(cats_and_dogs / "cats" / ".ipynb_checkpoints" / "img0-checkpoint.png")

    index = build_index(DataSpec(train=cats_and_dogs), "classification")

    assert skipped_dict(index) == {str(notes): "not an image file", str(thumbs): "not an image file"}
    assert len(index.paths) == 8
    listed = set(index.paths) | set(skipped_dict(index))
    assert not any("/." in p for p in listed)  # hidden files are not even listed as skipped
    assert index.summary()["skipped"] == 2


def test_non_image_files_are_skipped_in_the_file_name_layout(tmp_path):
    root = tmp_path / "photos"
    for i in range(6):
        write_image(root / f"{'cat' if i % 2 else 'dog'}.{i}.png", seed=i)
    notes = root / "cat.notes.txt"  # matches the pattern, but is not an image
    notes.write_text("x")
    (root / ".DS_Store").write_bytes(b"\0")
    index = build_index(DataSpec(train=root, label_pattern=r"^(?P<label>[a-z]+)\."), "classification")
    assert index.skipped == ((str(notes), "not an image file"),)
    assert len(index.paths) == 6


# --- 16. a label_pattern that matches only some files ------------------------------------------


def test_files_the_label_pattern_does_not_match_are_skipped(tmp_path):
    root = tmp_path / "photos"
    good = [write_image(root / f"{'cat' if i % 2 else 'dog'}.{i}.jpg", seed=i, fmt="JPEG") for i in range(8)]
    stray = [
        write_image(root / "IMG_0001.jpg", seed=50, fmt="JPEG"),
        write_image(root / "Cat.3.jpg", seed=51, fmt="JPEG"),  # upper case: the pattern says [a-z]
        write_image(root / "sub" / "42.png", seed=52),
    ]
    index = build_index(DataSpec(train=root, label_pattern=r"^(?P<label>[a-z]+)\."), "classification")

    assert index.classes == ("cat", "dog")
    assert set(index.paths) == {str(p) for p in good}
    skipped = skipped_dict(index)
    assert set(skipped) == {str(p) for p in stray}
    assert all("data.label_pattern" in reason for reason in skipped.values())


def test_an_empty_label_group_counts_as_no_match(tmp_path):
    root = tmp_path / "photos"
    for i in range(6):
        write_image(root / f"{'cat' if i % 2 else 'dog'}_{i}.png", seed=i)
    odd = write_image(root / "_7.png", seed=7)  # the group matches, but matches nothing
    index = build_index(DataSpec(train=root, label_pattern=r"^(?P<label>[a-z]*)_"), "classification")
    assert index.classes == ("cat", "dog")
    assert skipped_dict(index) == {str(odd): "file name does not match data.label_pattern"}


# --- 21. the CLI -----------------------------------------------------------------------------------


def test_cli_run_with_an_escaping_csv_path_exits_2_before_starting_ray(tmp_path, capsys, monkeypatch):
    import ray

    import sweeper.driver as driver

    was_initialized = ray.is_initialized()  # another test file may hold a session-wide Ray
    calls = []
    monkeypatch.setattr(driver, "init_ray", lambda address: calls.append(address))
    monkeypatch.setattr(ray, "init", lambda *a, **k: calls.append("ray.init"))

    root = tmp_path / "data"
    write_image(tmp_path / "outside.png", seed=99)
    csv = write_csv(root / "labels.csv", "path,label", csv_images(root) + ["../outside.png,cat"])
    spec = write_spec(tmp_path, "  csv: data/labels.csv\n")

    code = main(["run", str(spec), "--out", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache")])

    captured = capsys.readouterr()
    assert code == 2, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    assert lines[0].startswith("error: ")
    assert f"{csv}, line 8: '../outside.png' points outside the images folder" in lines[0]
    assert calls == []
    assert ray.is_initialized() == was_initialized
    if not was_initialized:
        assert not ray.is_initialized()
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.npy"))


# --- nothing the user had is modified or lost ---------------------------------------------------


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every file and folder below `folder`: contents and mtime_ns."""
    out = {}
    for path in sorted(folder.rglob("*")):
        stat = path.lstat()
        out[path.relative_to(folder).as_posix()] = (path.read_bytes() if path.is_file() else None, stat.st_mtime_ns)
    return out


def test_failing_and_skipping_never_touch_the_users_data(tmp_path):
    data = tmp_path / "user_data"
    train = data / "train"
    class_folders(train, per_class=5)
    random_bytes_jpg(train / "cats")
    zero_byte_png(train / "dogs")
    truncated_jpeg(train / "dogs")
    (train / "cats" / "notes.txt").write_text("keep me")
    (train / "dogs" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    write_csv(data / "labels.csv", "path,label", ["train/cats/img0.png,cat", "../escape.png,dog"])
    (data / "empty_class_set" / "a").mkdir(parents=True)
    write_image(data / "empty_class_set" / "b" / "img.png")
    cache = tmp_path / "cache"
    before = snapshot(data)
    assert len(before) > 15

    index = build_index(DataSpec(train=train), "classification")
    with pytest.raises(DataError):
        load_images(index, SIZE, cache, on_bad_image="error")
    cleaned, _ = load_images(index, SIZE, cache, on_bad_image="skip")
    assert len(cleaned.skipped) == 4  # notes.txt, and the three unreadable images
    with pytest.raises(DataError):  # the bad files remembered in the cache: still an error
        load_images(index, SIZE, cache, on_bad_image="error")
    load_images(cleaned, SIZE, cache, on_bad_image="error")  # the cleaned set decodes from the cache
    with pytest.raises(DataError):
        build_index(DataSpec(csv=data / "labels.csv"), "classification")
    with pytest.raises(DataError):
        build_index(DataSpec(train=data / "empty_class_set"), "classification")
    with pytest.raises(DataError):
        build_index(DataSpec(train=train), "regression")

    assert snapshot(data) == before
    assert list(cache.rglob("*.npy"))  # the cache went to cache_dir ...
    assert all(not p.is_relative_to(data) for p in cache.rglob("*"))  # ... and only there


# --- positive tests for the layouts -----------------------------------------------------------------


def test_csv_classification_layout(tmp_path):
    images = tmp_path / "pets" / "images"
    species = {}
    for i in range(12):
        name = f"{'cats' if i % 2 else 'dogs'}/{i:03d}.png"
        write_image(images / name, seed=i)
        species[name] = "cat" if i % 2 else "dog"
    rows = [f"  {name} , {label} " for name, label in species.items()]  # spaces around fields are tolerated
    csv = write_csv(tmp_path / "pets" / "meta" / "labels.csv", "file,species,notes", [r + ",x" for r in rows])
    index = build_index(DataSpec(csv=csv, images=images, path_column="file", target_column="species"), "classification")

    assert index.classes == ("cat", "dog")
    assert index.task == "classification"
    assert index.paths == tuple(str(images / name) for name in species)
    assert [index.classes[t] for t in index.targets] == list(species.values())
    assert index.skipped == ()
    assert set(index.splits.tolist()) == {"train", "validation"}


def test_csv_integer_labels_are_sorted_numerically(tmp_path):
    root = tmp_path / "digits"
    rows = []
    for label in range(11):
        for k in range(3):
            name = f"d{label}_{k}.png"
            write_image(root / name, seed=10 * label + k)
            rows.append(f"{name},{label}")
    csv = write_csv(root / "labels.csv", "path,label", rows)
    index = build_index(DataSpec(csv=csv), "classification")

    assert index.classes == tuple(str(i) for i in range(11))  # "2" before "10"
    for path, target in zip(index.paths, index.targets):
        assert Path(path).name.startswith(f"d{index.classes[target]}_")
    per_split = index.summary()["per_split"]
    assert all(per_split["validation"][c] >= 1 and per_split["train"][c] >= 1 for c in index.classes)


def test_csv_regression_layout(tmp_path):
    root = tmp_path / "ages"
    targets = {f"face{i:02d}.png": round(0.5 + 2.25 * i, 2) for i in range(30)}
    for i, name in enumerate(targets):
        write_image(root / name, seed=i)
    csv = write_csv(root / "ages.csv", "path,age", [f"{n},{v}" for n, v in targets.items()])
    index = build_index(DataSpec(csv=csv, target_column="age"), "regression")

    assert index.task == "regression"
    assert index.classes == ()
    assert index.targets.dtype == np.float32
    assert index.targets.tolist() == pytest.approx([targets[Path(p).name] for p in index.paths])
    summary = index.summary()
    assert summary["task"] == "regression" and summary["classes"] == []
    assert set(summary["per_split"]) == {"train", "validation"}
    for split, stats in summary["per_split"].items():
        values = index.targets[index.splits == split]
        expected = {
            "images": len(values),
            "mean": pytest.approx(float(values.mean()), abs=1e-4),
            "std": pytest.approx(float(values.std()), abs=1e-4),
            "min": pytest.approx(float(values.min())),
            "max": pytest.approx(float(values.max())),
        }
        assert {key: stats.get(key) for key in expected} == expected, stats


@pytest.mark.parametrize(
    "names, pattern, classes",
    [
        (["0_12.jpg", "1_7.jpg", "0_3.jpg", "1_100.jpg", "0_5.jpg", "1_9.jpg"], r"^(?P<label>[01])_", ("0", "1")),
        (["cat.12.jpg", "dog.7.jpg", "cat.3.jpg", "dog.100.jpg", "cat.5.jpg", "dog.9.jpg"], r"^(?P<label>[a-z]+)\.",
         ("cat", "dog")),
    ],
    ids=["food-5k", "cats-vs-dogs"],
)
def test_label_pattern_layouts(tmp_path, names, pattern, classes):
    root = tmp_path / "photos"
    for i, name in enumerate(names):
        write_image(root / name, seed=i, fmt="JPEG")
    spec = write_spec(tmp_path, f"  train: photos\n  label_pattern: '{pattern}'\n")
    data = load_spec(spec).data
    assert data.layout == "file names" and data.label_pattern == pattern

    index = build_index(data, "classification")

    assert index.classes == classes
    assert index.skipped == ()
    assert sorted(index.paths) == sorted(str(root / n) for n in names)
    for path, target in zip(index.paths, index.targets):
        assert Path(path).name.startswith(index.classes[target])


# --- bugs found while writing this catalogue --------------------------------------------------------


def test_a_superscript_digit_label_is_a_class_not_a_crash(tmp_path):
    root = tmp_path / "train"
    class_folders(root, classes=("2", "²"), per_class=3)
    index = build_index(DataSpec(train=root), "classification")
    assert set(index.classes) == {"2", "²"}


CLASSES_SCRIPT = """
import sys, types
sys.modules["pandas"] = types.ModuleType("pandas")  # only the CSV layout needs it: start faster
from pathlib import Path
from sweeper.data import build_index
from sweeper.spec import DataSpec
print("|".join(build_index(DataSpec(train=Path(sys.argv[1])), "classification").classes))
"""


def test_class_order_does_not_depend_on_the_hash_seed(tmp_path):
    root = tmp_path / "train"
    class_folders(root, classes=("2", "02", "002", "10"), per_class=3)
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", CLASSES_SCRIPT, str(root)],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            stdout=subprocess.PIPE,
            text=True,
        )
        for seed in range(4)
    ]
    orders = {run.communicate(timeout=60)[0].strip() for run in runs}
    assert all(run.returncode == 0 for run in runs)
    assert len(orders) == 1, orders


def test_an_image_in_both_the_training_and_the_validation_csv(tmp_path):
    root = tmp_path / "data"
    csv = write_csv(root / "train.csv", "path,label", csv_images(root))
    val = write_csv(root / "val.csv", "path,label", ["img0.png,dog", "img1.png,cat"])
    try:
        index = build_index(DataSpec(csv=csv, validation=val), "classification")
    except DataError as exc:  # refusing it, naming the image, is a fix
        assert "img0.png" in str(exc) and str(val) in str(exc)
    else:  # so is keeping each image in one split only
        assert len(set(index.paths)) == len(index.paths)


# --- images that claim more pixels than the cap ----------------------------------------------------


def _claims(path: Path, width: int, height: int) -> Path:
    """A tiny PNG (one bit a pixel, all black) that decodes to width x height pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("1", (width, height)).save(path)
    return path


def test_an_image_over_the_pixel_cap_is_skipped_as_too_large_and_pil_is_left_alone(cats_and_dogs, tmp_path):
    from PIL import Image as PILImage

    limit = PILImage.MAX_IMAGE_PIXELS
    big = str(_claims(cats_and_dogs / "cats" / "scan.png", 10_000, 9_000))  # 90 MP: just over PIL's default
    bomb = str(_claims(cats_and_dogs / "dogs" / "bomb.png", 20_000, 20_000))  # 400 MP: PIL refuses it itself
    assert os.path.getsize(bomb) < 100_000
    index = build_index(DataSpec(train=cats_and_dogs), "classification")
    cleaned, array = load_images(index, SIZE, tmp_path / "cache", on_bad_image="skip")
    reasons = dict(cleaned.skipped)
    assert reasons[big] == "too large: 10000×9000 pixels, over data.max_image_pixels (89,478,485)"
    assert reasons[bomb] == "too large: 400,000,000 pixels, over data.max_image_pixels (89,478,485)"
    assert array.shape == (8, SIZE, SIZE, 3)
    assert PILImage.MAX_IMAGE_PIXELS == limit  # no process-wide change: a program loading a bundle keeps PIL's guard

    # A cap raised in the spec decodes the scan; one lowered skips the ordinary images too.
    raised = build_index(DataSpec(train=cats_and_dogs, max_image_pixels=100_000_000), "classification")
    cleaned, _ = load_images(raised, SIZE, tmp_path / "cache", on_bad_image="skip")
    assert big in cleaned.paths and bomb not in cleaned.paths
    with pytest.raises(DataError, match=r"cats/scan.png: too large: 10000×9000 pixels"):
        load_images(index, SIZE, tmp_path / "cache2", on_bad_image="error")


@pytest.mark.parametrize("value, message", [(0, "must be between 1 and"), (10**12, "must be between 1 and"),
                                            ("many", "must be a whole number")])
def test_max_image_pixels_is_checked_in_the_spec(tmp_path, value, message):
    spec = tmp_path / "spec.yaml"
    class_folders(tmp_path / "train")
    spec.write_text(f"data: {{train: train, max_image_pixels: {value}}}\nspace: {{backbone: simple_cnn}}\n")
    with pytest.raises(SpecError, match=f"data.max_image_pixels: .*{message}"):
        load_spec(spec)


@pytest.mark.parametrize("damage", ["truncate", "another-shape", "skipped-json"])
def test_a_damaged_cache_file_is_decoded_again_not_trusted(cats_and_dogs, tmp_path, damage):
    from sweeper.images import cache_path

    index = build_index(DataSpec(train=cats_and_dogs), "classification")
    _, first = load_images(index, SIZE, tmp_path / "cache")
    expected = np.array(first)
    path = cache_path(tmp_path / "cache", index, SIZE)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-100])
    elif damage == "another-shape":
        np.save(path, expected[:3])
    else:
        path.with_suffix(".skipped.json").write_text('{"0": "unread')
    cleaned, again = load_images(index, SIZE, tmp_path / "cache")
    assert np.array_equal(again, expected) and cleaned.paths == index.paths
