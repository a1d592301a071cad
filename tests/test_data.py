"""Tier 1 tests for the data set index (sweeper/data.py) and image decoding (sweeper/images.py).

Real small PNG/JPEG files written with PIL into tmp_path; no Ray, no TensorFlow.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sweeper.images as images_module
from sweeper.data import SPLITS, DatasetIndex, build_index, split_of
from sweeper.errors import DataError, SweeperError
from sweeper.images import ImageTooLarge, cache_path, decode, load_images
from sweeper.spec import DataSpec

SIZE = 16


def write_image(path: Path, seed: int, size: tuple[int, int] = (SIZE, SIZE), fmt: str | None = None) -> Path:
    """A random-colour RGB image (every file different, so decoded rows can be told apart)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def make_dataset(root: Path, classes=("cats", "dogs", "birds"), per_class: int = 20, start: int = 0) -> list[Path]:
    written = []
    for c, name in enumerate(classes):
        for i in range(start, start + per_class):
            written.append(write_image(root / name / f"img{i:03d}.png", seed=1000 * c + i))
    return written


def index_of(root: Path, **kwargs) -> DatasetIndex:
    return build_index(DataSpec(train=root, **kwargs), "classification")


@pytest.fixture
def train_dir(tmp_path: Path) -> Path:
    root = tmp_path / "train"
    make_dataset(root)
    return root


# --- the index ---------------------------------------------------------------------------------


def test_classes_are_the_sorted_sub_folders_and_every_image_appears_once(tmp_path):
    root = tmp_path / "train"
    written = make_dataset(root, classes=("zebra", "ant", "moth"), per_class=5)
    (root / ".hidden_class").mkdir()  # hidden folders are not classes
    index = index_of(root)

    assert index.classes == ("ant", "moth", "zebra")
    assert len(index.paths) == len(written) == 15
    assert len(set(index.paths)) == len(index.paths)
    assert set(index.paths) == {str(p) for p in written}
    assert all(Path(p).is_absolute() for p in index.paths)
    assert index.targets.shape == index.splits.shape == (15,)
    assert np.issubdtype(index.targets.dtype, np.integer)
    for path, target in zip(index.paths, index.targets):
        assert index.classes[target] == Path(path).parent.name
    assert index.skipped == ()


def test_hash_split_is_train_and_validation_only_in_the_right_proportion(train_dir):
    index = index_of(train_dir, validation_split=0.2)
    assert set(index.splits.tolist()) == {"train", "validation"}
    share = np.mean(index.splits == "validation")
    assert 0.1 <= share <= 0.3, share
    for c, name in enumerate(index.classes):
        in_class = index.splits[index.targets == c]
        assert np.any(in_class == "validation"), name
        assert np.any(in_class == "train"), name


def test_every_class_gets_a_validation_image_even_when_small(tmp_path):
    root = tmp_path / "train"
    make_dataset(root, classes=tuple(f"class{i}" for i in range(8)), per_class=3)
    index = index_of(root, validation_split=0.05)  # 5% of 3 images: the hash alone would miss most classes
    for c in range(8):
        in_class = index.splits[index.targets == c]
        assert np.sum(in_class == "validation") >= 1
        assert np.sum(in_class == "train") >= 1


def test_a_class_with_a_single_image_cannot_be_split(tmp_path):
    root = tmp_path / "train"
    make_dataset(root, classes=("cats",), per_class=10)
    write_image(root / "solo" / "img0.png", seed=1)  # "solo/img0.png" hashes into train
    with pytest.raises(DataError, match="'solo'"):
        index_of(root)


def test_split_of_is_deterministic_and_ordered():
    names = [f"class{i % 4}/image_{i}.jpg" for i in range(4000)]
    first = [split_of(n, 0.2, 0.1) for n in names]
    assert first == [split_of(n, 0.2, 0.1) for n in names]
    counts = {s: first.count(s) / len(names) for s in SPLITS}
    assert abs(counts["test"] - 0.1) < 0.03
    assert abs(counts["validation"] - 0.2) < 0.03
    assert abs(counts["train"] - 0.7) < 0.03
    assert {split_of(n, 0.0, 0.0) for n in names} == {"train"}
    # a larger share only ever adds images to a split: an image in test at 10% is in test at 20%
    for n, split in zip(names, first):
        if split == "test":
            assert split_of(n, 0.2, 0.2) == "test"


def test_splits_are_identical_across_builds(train_dir):
    a, b = index_of(train_dir), index_of(train_dir)
    assert a.paths == b.paths
    assert a.splits.tolist() == b.splits.tolist()
    assert a.targets.tolist() == b.targets.tolist()


def test_adding_images_does_not_move_existing_ones(train_dir):
    before = index_of(train_dir)
    old = dict(zip(before.paths, before.splits.tolist()))
    added = [write_image(train_dir / c / f"new{i}.png", seed=9000 + i) for i, c in enumerate(["cats", "dogs"] * 5)]
    after = index_of(train_dir)
    new = dict(zip(after.paths, after.splits.tolist()))

    assert len(after.paths) == len(before.paths) + 10
    assert {str(p) for p in added} <= set(new)
    for path, split in old.items():
        assert new[path] == split, path


def test_a_validation_folder_is_the_validation_split(tmp_path):
    train, val = tmp_path / "train", tmp_path / "val"
    train_files = make_dataset(train, classes=("cats", "dogs"), per_class=10)
    val_files = make_dataset(val, classes=("cats", "dogs"), per_class=3, start=100)
    index = build_index(DataSpec(train=train, validation=val, validation_split=0.2), "classification")

    split_by_path = dict(zip(index.paths, index.splits.tolist()))
    assert all(split_by_path[str(p)] == "train" for p in train_files)  # no hash split of train
    assert all(split_by_path[str(p)] == "validation" for p in val_files)
    assert len(index.indices("validation")) == 6
    for path, target in zip(index.paths, index.targets):
        assert index.classes[target] == Path(path).parent.name
    assert index.summary()["per_split"] == {
        "train": {"cats": 10, "dogs": 10},
        "validation": {"cats": 3, "dogs": 3},
    }


def test_test_split_is_carved_from_train(train_dir):
    index = index_of(train_dir, validation_split=0.2, test_split=0.2)
    assert set(index.splits.tolist()) == {"train", "validation", "test"}
    sets = [set(index.indices(s).tolist()) for s in SPLITS]
    assert set.union(*sets) == set(range(len(index.paths)))
    assert sum(len(s) for s in sets) == len(index.paths)


def test_indices_and_summary(train_dir):
    index = index_of(train_dir)
    train, val = index.indices("train"), index.indices("validation")
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(index.paths)))
    assert np.all(index.splits[val] == "validation")
    assert index.indices("test").size == 0

    summary = index.summary()
    assert summary["images"] == 60
    assert summary["classes"] == ["birds", "cats", "dogs"]
    assert set(summary["per_split"]) == {"train", "validation"}  # no empty test split listed
    assert sum(n for per_class in summary["per_split"].values() for n in per_class.values()) == 60
    assert summary["per_split"]["validation"] == {
        c: int(np.sum((index.splits == "validation") & (index.targets == i))) for i, c in enumerate(index.classes)
    }
    assert summary["skipped"] == 0
    assert summary["skipped_files"] == []
    assert summary["fingerprint"] == index.fingerprint


def test_without_drops_positions_and_records_them_as_skipped(train_dir):
    index = index_of(train_dir)
    label = dict(zip(index.paths, index.targets.tolist()))
    split = dict(zip(index.paths, index.splits.tolist()))
    smaller = index.without({0: "broken", 5: "empty"})

    assert len(smaller.paths) == len(index.paths) - 2
    assert index.paths[0] not in smaller.paths and index.paths[5] not in smaller.paths
    assert smaller.skipped == ((index.paths[0], "broken"), (index.paths[5], "empty"))
    for path, target, s in zip(smaller.paths, smaller.targets.tolist(), smaller.splits.tolist()):
        assert (target, s) == (label[path], split[path])
    assert len(index.paths) == 60  # the original is unchanged
    assert smaller.fingerprint != index.fingerprint
    assert smaller.summary()["skipped"] == 2


def test_non_image_files_are_skipped_not_indexed(train_dir):
    notes = train_dir / "cats" / "notes.txt"
    notes.write_text("not a picture")
    readme = train_dir / "dogs" / "README.md"
    readme.write_text("# dogs")
    (train_dir / "dogs" / ".DS_Store").write_bytes(b"\0")
    index = index_of(train_dir)

    assert str(notes) not in index.paths and str(readme) not in index.paths
    assert not any(p.endswith(".DS_Store") for p in index.paths)
    skipped = dict(index.skipped)
    assert set(skipped) == {str(notes), str(readme)}
    assert all("not an image" in reason for reason in skipped.values())
    assert len(index.paths) == 60


def test_upper_case_suffixes_and_nested_folders_are_images(tmp_path):
    root = tmp_path / "train"
    make_dataset(root, classes=("a", "b"), per_class=3)
    upper = write_image(root / "a" / "BIG.JPG", seed=5, fmt="JPEG")
    nested = write_image(root / "b" / "sub" / "deep.png", seed=6)
    index = index_of(root)
    assert str(upper) in index.paths and str(nested) in index.paths
    assert index.targets[index.paths.index(str(nested))] == index.classes.index("b")


# --- the fingerprint ---------------------------------------------------------------------------


def test_fingerprint_is_stable(train_dir):
    a = index_of(train_dir).fingerprint
    assert a == index_of(train_dir).fingerprint
    assert isinstance(a, str) and len(a) == 16

    # New pixels in a file of the same size change it: cached arrays must never go stale.
    path = train_dir / "cats" / "img000.png"
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    assert index_of(train_dir).fingerprint != a


def test_fingerprint_changes_when_an_image_is_added(train_dir):
    before = index_of(train_dir).fingerprint
    write_image(train_dir / "dogs" / "extra.png", seed=77)
    assert index_of(train_dir).fingerprint != before


def test_fingerprint_changes_when_a_file_is_replaced_with_a_different_size(train_dir):
    before = index_of(train_dir).fingerprint
    path = train_dir / "cats" / "img003.png"
    old_size = path.stat().st_size
    write_image(path, seed=3, size=(32, 32))
    assert path.stat().st_size != old_size
    assert index_of(train_dir).fingerprint != before


def test_fingerprint_changes_when_an_image_is_removed_or_the_split_changes(train_dir):
    before = index_of(train_dir).fingerprint
    assert index_of(train_dir, validation_split=0.3).fingerprint != before
    (train_dir / "birds" / "img007.png").unlink()
    assert index_of(train_dir).fingerprint != before


# --- errors ------------------------------------------------------------------------------------


def test_empty_class_folder_is_an_error(tmp_path):
    root = tmp_path / "train"
    make_dataset(root, classes=("cats",), per_class=3)
    (root / "dogs").mkdir()
    (root / "dogs" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError) as caught:
        index_of(root)
    assert str(root / "dogs") in str(caught.value)
    assert "no images" in str(caught.value)
    assert isinstance(caught.value, SweeperError)


def test_a_single_class_folder_is_an_error(tmp_path):
    root = tmp_path / "train"
    make_dataset(root, classes=("cats",), per_class=5)
    with pytest.raises(DataError) as caught:
        index_of(root)
    assert str(root) in str(caught.value)
    assert "cats" in str(caught.value)
    assert "two" in str(caught.value)


def test_a_folder_without_class_folders_is_an_error(tmp_path):
    root = tmp_path / "train"
    write_image(root / "loose.png", seed=0)
    with pytest.raises(DataError) as caught:
        index_of(root)
    assert str(root) in str(caught.value)
    assert "class folders" in str(caught.value)


def test_validation_class_missing_from_train_is_an_error(tmp_path):
    train, val = tmp_path / "train", tmp_path / "val"
    make_dataset(train, classes=("cats", "dogs"), per_class=4)
    make_dataset(val, classes=("cats", "horses"), per_class=2)
    with pytest.raises(DataError) as caught:
        build_index(DataSpec(train=train, validation=val), "classification")
    message = str(caught.value)
    assert str(val) in message
    assert "'horses'" in message
    assert str(train) in message


def test_regression_with_class_folders_is_an_error(train_dir):
    with pytest.raises(DataError) as caught:
        build_index(DataSpec(train=train_dir), "regression")
    assert str(train_dir) in str(caught.value)
    assert "regression" in str(caught.value)


# --- decoding ----------------------------------------------------------------------------------


def _png(path: Path, img: Image.Image) -> str:
    img.save(path, format="PNG")
    return str(path)


def grayscale(path: Path) -> str:
    return _png(path, Image.fromarray(np.tile(np.arange(0, 240, 8, dtype=np.uint8), (30, 1)), mode="L"))


def rgba(path: Path) -> str:
    pixels = np.zeros((24, 40, 4), dtype=np.uint8)
    pixels[..., 2] = 255  # opaque blue
    pixels[..., 3] = 255
    return _png(path, Image.fromarray(pixels, mode="RGBA"))


def palette(path: Path) -> str:
    img = Image.new("P", (20, 20))
    img.putpalette([255, 0, 0] + [0, 0, 0] * 255)  # index 0 is red
    return _png(path, img)


def sixteen_bit(path: Path) -> str:
    pixels = np.linspace(0, 255, 30 * 30).reshape(30, 30).astype(np.uint16)
    img = Image.fromarray(pixels)
    assert img.mode == "I;16"
    return _png(path, img)


def jpeg(path: Path) -> str:
    return str(write_image(path, seed=3, size=(50, 30), fmt="JPEG"))


def gray_jpeg(path: Path) -> str:
    Image.fromarray(np.full((64, 64), 100, dtype=np.uint8), mode="L").save(path, format="JPEG")
    return str(path)


@pytest.mark.parametrize(
    "make, suffix",
    [(grayscale, ".png"), (rgba, ".png"), (palette, ".png"), (sixteen_bit, ".png"), (jpeg, ".jpg"), (gray_jpeg, ".jpg")],
    ids=["L", "RGBA", "P", "I;16", "jpeg", "grayscale-jpeg"],
)
def test_decode_returns_square_rgb_uint8(tmp_path, make, suffix):
    path = make(tmp_path / f"image{suffix}")
    out = decode(path, SIZE)
    assert out.shape == (SIZE, SIZE, 3)
    assert out.dtype == np.uint8


def test_decode_colours(tmp_path):
    assert np.all(decode(palette(tmp_path / "p.png"), SIZE) == [255, 0, 0])
    assert np.all(decode(rgba(tmp_path / "a.png"), SIZE) == [0, 0, 255])
    gray = decode(grayscale(tmp_path / "l.png"), SIZE).astype(int)
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])
    assert gray[:, 0].mean() < gray[:, -1].mean()  # the ramp still goes dark to light


def test_decode_resizes_up_and_down(tmp_path):
    small = write_image(tmp_path / "small.png", seed=1, size=(4, 6))
    large = write_image(tmp_path / "large.jpg", seed=2, size=(300, 200), fmt="JPEG")
    assert decode(str(small), 32).shape == (32, 32, 3)
    assert decode(str(large), 8).shape == (8, 8, 3)


def _half_black_half_white(path: Path, orientation: int | None, size=(20, 10)) -> str:
    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    pixels[:, size[0] // 2 :] = 255  # left half black, right half white (as stored)
    img = Image.fromarray(pixels)
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    img.save(path, format="JPEG", quality=95, exif=exif)
    return str(path)


@pytest.mark.parametrize(
    "orientation, white",
    [(None, "right"), (1, "right"), (3, "left"), (6, "bottom"), (8, "top")],
    ids=["no-exif", "upright", "rotate-180", "rotate-90-cw", "rotate-90-ccw"],
)
def test_decode_applies_exif_orientation(tmp_path, orientation, white):
    out = decode(_half_black_half_white(tmp_path / "o.jpg", orientation), SIZE).mean(axis=2)
    halves = {"left": out[:, :6], "right": out[:, 10:], "top": out[:6], "bottom": out[10:]}
    opposite = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}[white]
    assert halves[white].mean() > 200
    assert halves[opposite].mean() < 50


# --- load_images and its cache -----------------------------------------------------------------


@pytest.fixture
def with_bad_images(tmp_path):
    """2 classes x 6 good PNGs, plus a zero-byte .png and a truncated JPEG."""
    root = tmp_path / "train"
    make_dataset(root, classes=("cats", "dogs"), per_class=6)
    empty = root / "cats" / "empty.png"
    empty.write_bytes(b"")
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    truncated = root / "dogs" / "truncated.jpg"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return root, {str(empty), str(truncated)}


def test_decoding_writes_straight_to_disk_and_drops_bad_images_without_a_copy(tmp_path):
    """600 images at 64 px (7.4 MB decoded), two unreadable among them: the rows kept are the good
    images in order, and Python's allocations at their peak stay far below the data set (decoding
    in memory, they were 1.03x of it, and 2.06x with a bad file). Measured: about 1 MB, the same
    for 400, 800 and 1,600 images."""
    import tracemalloc

    paths = [str(write_image(tmp_path / f"{i:03d}.png", seed=i, size=(40, 40))) for i in range(600)]
    for i in (0, 217):
        Path(paths[i]).write_bytes(b"not an image")
    size, target = 64, tmp_path / "decoded.npy"
    images_module.decode_all(paths[:3], size, tmp_path / "warm-up.npy")  # first-use imports are not the data
    tracemalloc.start()
    bad = images_module.decode_all(paths, size, target)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    data_set = len(paths) * size * size * 3
    assert sorted(bad) == [0, 217] and all(reason.startswith("unreadable image") for reason in bad.values())
    assert peak < data_set / 4, (peak, data_set)
    array = np.load(target, mmap_mode="r")
    good = [p for i, p in enumerate(paths) if i not in bad]
    assert array.shape == (598, size, size, 3)
    assert target.stat().st_size == 128 + 598 * size * size * 3  # cut to the rows kept, header included
    for row in (0, 215, 216, 597):  # either side of the second bad file
        assert np.array_equal(array[row], decode(good[row], size))


def test_an_npy_file_is_cut_to_its_first_rows_in_place(tmp_path):
    path = tmp_path / "a.npy"
    data = np.random.default_rng(1).integers(0, 256, (12345, 2, 3), dtype=np.uint8)
    written = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=data.shape)
    written[:] = data
    written.flush()
    del written
    images_module._keep_first_rows(path, 7)
    assert np.array_equal(np.load(path), data[:7])  # a 4-digit count where 5 were: the header is padded


def npy_files(cache_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (cache_dir / "images").glob("*.npy")}


def test_load_images_of_a_clean_set(train_dir, tmp_path):
    index = index_of(train_dir)
    cleaned, array = load_images(index, SIZE, tmp_path / "cache")
    assert cleaned.paths == index.paths
    assert cleaned.skipped == ()
    assert array.shape == (60, SIZE, SIZE, 3)
    assert array.dtype == np.uint8
    for i in (0, 17, 59):
        assert np.array_equal(array[i], decode(cleaned.paths[i], SIZE))
    assert cache_path(tmp_path / "cache", index, SIZE).exists()
    assert list(npy_files(tmp_path / "cache")) == [f"{index.fingerprint}-{SIZE}px.npy"]


def test_load_images_skips_bad_files(with_bad_images, tmp_path):
    root, bad = with_bad_images
    index = index_of(root)
    assert bad <= set(index.paths)  # by suffix they look like images
    label = dict(zip(index.paths, index.targets.tolist()))

    cleaned, array = load_images(index, SIZE, tmp_path / "cache", on_bad_image="skip")

    assert len(cleaned.paths) == len(index.paths) - 2 == 12
    assert array.shape == (12, SIZE, SIZE, 3)
    assert not bad & set(cleaned.paths)
    skipped = dict(cleaned.skipped)
    assert set(skipped) == bad
    assert all(reason.startswith("unreadable image") for reason in skipped.values())
    for i, path in enumerate(cleaned.paths):  # rows line up with the returned index
        assert np.array_equal(array[i], decode(path, SIZE))
        assert cleaned.targets[i] == label[path]
    assert cleaned.summary()["skipped"] == 2


@pytest.mark.parametrize("which", ["empty.png", "truncated.jpg"])
def test_load_images_raises_on_bad_files_when_asked(with_bad_images, tmp_path, which):
    root, bad = with_bad_images
    for path in bad:  # leave only one bad file, so the message must name that one
        if not path.endswith(which):
            Path(path).unlink()
    index = index_of(root)
    with pytest.raises(DataError) as caught:
        load_images(index, SIZE, tmp_path / "cache", on_bad_image="error")
    message = str(caught.value)
    (bad_path,) = [p for p in bad if p.endswith(which)]
    assert message.startswith(bad_path)
    assert "on_bad_image" in message


def test_second_call_reuses_the_cache(with_bad_images, tmp_path, monkeypatch):
    root, bad = with_bad_images
    cache = tmp_path / "cache"
    first_index, first = load_images(index_of(root), SIZE, cache)
    written = npy_files(cache)
    assert len(written) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cached array should have been reused")

    monkeypatch.setattr(images_module, "decode_all", no_decoding)
    second_index, second = load_images(index_of(root), SIZE, cache)

    assert npy_files(cache) == written  # same file, same mtime_ns: not rewritten
    assert second_index.paths == first_index.paths
    assert second_index.skipped == first_index.skipped
    assert second_index.targets.tolist() == first_index.targets.tolist()
    assert second_index.splits.tolist() == first_index.splits.tolist()
    assert second_index.fingerprint == first_index.fingerprint
    assert np.array_equal(np.asarray(second), np.asarray(first))

    # the bad files are remembered: the "error" policy still applies to a cached set
    with pytest.raises(DataError, match="on_bad_image"):
        load_images(index_of(root), SIZE, cache, on_bad_image="error")


def test_each_size_has_its_own_cache_file(train_dir, tmp_path):
    index = index_of(train_dir)
    _, a = load_images(index, 8, tmp_path / "cache")
    _, b = load_images(index, 12, tmp_path / "cache")
    assert a.shape[1:3] == (8, 8) and b.shape[1:3] == (12, 12)
    assert len(npy_files(tmp_path / "cache")) == 2


def test_a_changed_data_set_is_decoded_again(train_dir, tmp_path):
    cache = tmp_path / "cache"
    load_images(index_of(train_dir), SIZE, cache)
    write_image(train_dir / "cats" / "extra.png", seed=4242)
    index, array = load_images(index_of(train_dir), SIZE, cache)
    assert array.shape[0] == 61
    assert len(npy_files(cache)) == 2
    position = index.paths.index(str(train_dir / "cats" / "extra.png"))
    assert np.array_equal(array[position], decode(index.paths[position], SIZE))


# --- regressions found by review ----------------------------------------------------------------


def test_every_class_keeps_a_training_and_a_validation_image(tmp_path):
    root = tmp_path / "train"
    make_dataset(root, classes=("big",), per_class=20)
    for name in ("img0.png", "img1.png"):
        write_image(root / "solo" / name, seed=len(name))
    index = index_of(root)
    solo = index.classes.index("solo")
    assert sorted(index.splits[index.targets == solo].tolist()) == ["train", "validation"]


def test_images_in_hidden_folders_are_ignored(tmp_path):
    root = tmp_path / "train"
    make_dataset(root, classes=("a", "b"), per_class=3)
    write_image(root / "a" / ".ipynb_checkpoints" / "x.png", seed=9)
    assert not any(".ipynb_checkpoints" in p for p in index_of(root).paths)


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 32, dtype=np.uint16), (32, 1))
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(path)  # uint16 arrays open as mode I;16
    decoded = decode(str(path), 32)[..., 0].astype(int)
    assert decoded[0, 0] == 0 and decoded[0, -1] >= 250
    assert 100 < decoded[0, 16] < 160  # the middle of the ramp stays grey


def test_cmyk_and_very_large_images_decode(tmp_path):
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(cmyk)  # pure red in CMYK
    red = decode(str(cmyk), 16)
    assert red.shape == (16, 16, 3) and red[..., 0].min() > 200 and red[..., 1:].max() < 60
    big = tmp_path / "big.png"
    Image.new("RGB", (12000, 9000), (10, 200, 30)).save(big, compress_level=1)  # 108 Mpx: past PIL's default limit
    with pytest.raises(ImageTooLarge, match="12000×9000 pixels"):
        decode(str(big), 32)  # data.max_image_pixels' default is PIL's
    decoded = decode(str(big), 32, max_pixels=120_000_000)  # a scan, with the cap raised in the spec
    assert decoded.shape == (32, 32, 3) and tuple(decoded[16, 16]) == (10, 200, 30)
