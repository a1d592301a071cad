"""The data set index: which images there are, their labels or targets, their split, a fingerprint.

Three layouts (see DataSpec): one folder per class; a CSV of paths and labels or numeric
targets; labels in file names (`label_pattern`). Splits come from a hash of each image's path relative to its folder, not from a shuffle: they
are identical across runs and machines, and an image keeps its split when others are added.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError, clip, quote
from .spec import DataSpec

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class DatasetIndex:
    paths: tuple[str, ...]  # absolute
    targets: np.ndarray  # class indices (int64), or values for regression (float32)
    splits: np.ndarray  # one of SPLITS per image
    classes: tuple[str, ...]  # empty for regression
    skipped: tuple[tuple[str, str], ...] = field(default=())  # (path, reason)
    max_image_pixels: int = DataSpec.max_image_pixels  # larger images are skipped as too large

    @cached_property
    def fingerprint(self) -> str:
        """Changes when any image is added, removed, rewritten, relabelled or moves split."""
        digest = hashlib.sha256()
        for path, target, split in zip(self.paths, self.targets.tolist(), self.splits.tolist()):
            stat = Path(path).stat()
            digest.update(json.dumps([path, stat.st_size, stat.st_mtime_ns, target, split]).encode())
        return digest.hexdigest()[:16]

    @cached_property
    def folder(self) -> str:
        """The folder every image is under: how the cache names the data set."""
        return os.path.commonpath(self.paths) if self.paths else ""

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.splits == split)

    def without(self, bad: dict[int, str]) -> DatasetIndex:
        """The index without the images at these positions, which are recorded as skipped."""
        keep = np.array([i not in bad for i in range(len(self.paths))], dtype=bool)
        skipped = self.skipped + tuple((self.paths[i], reason) for i, reason in sorted(bad.items()))
        return replace(
            self,
            paths=tuple(p for p, k in zip(self.paths, keep) if k),
            targets=self.targets[keep],
            splits=self.splits[keep],
            skipped=skipped,
        )

    @property
    def task(self) -> str:
        return "classification" if self.classes else "regression"

    def summary(self) -> dict:
        """Images per split and class, or target statistics per split for regression."""
        present = [split for split in SPLITS if np.any(self.splits == split)]
        if self.classes:
            counts = {
                split: {c: int(np.sum((self.splits == split) & (self.targets == i))) for i, c in enumerate(self.classes)}
                for split in present
            }
        else:
            counts = {split: _stats(self.targets[self.splits == split]) for split in present}
            # What a model must beat: always predicting the training mean.
            train_mean = self.targets[self.splits == "train"].mean()
            for split in present:
                residual = self.targets[self.splits == split] - train_mean
                counts[split]["rmse_of_train_mean"] = round(float(np.sqrt(np.mean(residual**2))), 4)
        return {
            "task": self.task,
            "images": len(self.paths),
            "classes": list(self.classes),
            "per_split": counts,
            "skipped": len(self.skipped),
            "skipped_files": [{"path": p, "reason": r} for p, r in self.skipped[:1000]],
            "fingerprint": self.fingerprint,
        }


def split_of(relative_path: str, validation_split: float, test_split: float) -> str:
    """A deterministic split from the path alone: [0, test) test, [test, test+val) validation."""
    u = _unit_hash(relative_path)
    if u < test_split:
        return "test"
    if u < test_split + validation_split:
        return "validation"
    return "train"


def _unit_hash(text: str) -> float:
    # surrogateescape: a file name that is not UTF-8 (latin-1, from a Windows zip) hashes as its bytes
    return int(hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:12], 16) / 16**12


def _stats(values: np.ndarray) -> dict:
    return {"images": int(len(values)), "mean": round(float(values.mean()), 4), "std": round(float(values.std()), 4),
            "min": float(values.min()), "max": float(values.max())}


# One entry per image: (absolute path, path relative to its source, label or target as read).
Entries = list[tuple[str, str, str]]
Skipped = list[tuple[str, str]]


def build_index(data: DataSpec, task: str) -> DatasetIndex:
    """List the images of a data set in any of the three layouts, and give every image its split."""
    regression = task == "regression"
    if regression and data.layout == "folders":
        raise DataError(
            f"{data.train}: task regression needs numeric targets: give them in a CSV (data.csv) "
            "or in file names (data.label_pattern); a folder per class only gives class labels"
        )
    skipped: Skipped = []
    sources: dict[str, Entries] = {"train": _read_source(data, data.csv or data.train, skipped, main=True)}
    for split in ("validation", "test"):
        if getattr(data, split) is not None:
            sources[split] = _read_source(data, getattr(data, split), skipped, main=False)

    classes: list[str] = []
    if not regression:
        classes = sorted({label for _, _, label in sources["train"]}, key=_natural)
        if len(classes) < 2:
            raise DataError(f"{data.csv or data.train}: only one class ({quote(classes[0])}); classification needs at least two")
        for split, entries in sources.items():
            unknown = sorted({label for _, _, label in entries} - set(classes))
            if unknown:
                raise DataError(
                    f"{getattr(data, split)}: class {quote(unknown[0])} does not occur in the training data "
                    f"({data.csv or data.train})"
                )

    val_share = 0.0 if data.validation else data.validation_split
    test_share = 0.0 if data.test else data.test_split
    paths, relatives, targets, splits = [], [], [], []
    first_source: dict[str, str] = {}
    where = {"train": data.csv or data.train, "validation": data.validation, "test": data.test}
    for source, entries in sources.items():
        for path, relative, label in entries:
            if path in first_source:  # the same image on both sides would inflate validation scores
                raise DataError(f"{path}: in both the {first_source[path]} data ({where[first_source[path]]}) "
                                f"and the {source} data ({where[source]})")
            first_source[path] = source
            paths.append(path)
            relatives.append(relative)
            targets.append(_number(label, path) if regression else classes.index(label))
            splits.append(split_of(relative, val_share, test_share) if source == "train" else source)
    splits = np.array(splits, dtype=object)
    targets = np.array(targets, dtype=np.float32 if regression else np.int64)
    if not regression and val_share:
        _ensure_each_class_in(splits, targets, relatives, classes, "validation")
    for split in ("train", "validation"):
        if not np.any(splits == split):
            raise DataError(f"{data.csv or data.train}: no images fall in the {split} split; add images or change validation_split")
    return DatasetIndex(tuple(paths), targets, splits.astype(str), tuple(classes), tuple(skipped),
                        max_image_pixels=data.max_image_pixels)


def _read_source(data: DataSpec, location: Path, skipped: Skipped, main: bool) -> Entries:
    if data.csv:
        return _read_csv(location, data)
    if data.label_pattern:
        return _scan_label_pattern(location, data.label_pattern, skipped)
    return _scan_class_folders(location, skipped, main)


def _image_files(folder: Path, skipped: Skipped) -> list[Path]:
    """Image files below a folder, sorted; hidden files and folders are ignored, other files listed as skipped."""
    files = sorted(
        p for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    skipped += [(str(p), "not an image file") for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    return [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]


def _scan_class_folders(folder: Path, skipped: Skipped, main: bool) -> Entries:
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{folder}: no class folders; expected one sub-folder per class, e.g. {folder}/cats/")
    entries: Entries = []
    for class_dir in class_dirs:
        found = _image_files(class_dir, skipped)
        if not found and main:
            raise DataError(f"{class_dir}: class folder holds no images")
        entries += [(str(p), p.relative_to(folder).as_posix(), class_dir.name) for p in found]
    if not entries:
        raise DataError(f"{folder}: holds no images in its class folders")
    return entries


def _scan_label_pattern(folder: Path, pattern: str, skipped: Skipped) -> Entries:
    regex = re.compile(pattern)
    files = _image_files(folder, skipped)
    entries: Entries = []
    for path in files:
        match = regex.search(path.name)
        if match and match.group("label"):
            entries.append((str(path), path.relative_to(folder).as_posix(), match.group("label")))
        else:
            skipped.append((str(path), "file name does not match data.label_pattern"))
    if not entries:
        examples = ", ".join(p.name for p in files[:3]) or "no image files"
        raise DataError(f"{folder}: data.label_pattern {quote(pattern)} matches no file name (e.g. {clip(examples)})")
    return entries


def _read_csv(csv_path: Path, data: DataSpec) -> Entries:
    """Rows of (path, label or target). Paths are relative to `data.images` and may not leave it."""
    root = (data.images or csv_path.parent).resolve()
    try:
        # Blank lines are kept (and skipped below) so that reported line numbers match the file.
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True, skip_blank_lines=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{csv_path}: not a readable CSV file ({str(exc).splitlines()[0]})") from None
    for column in (data.path_column, data.target_column):
        if column not in table.columns:
            key = "path_column" if column == data.path_column else "target_column"
            raise DataError(
                f"{csv_path}: no column {column!r} (data.{key}); the columns are: {clip(', '.join(map(str, table.columns)))}"
            )
    _refuse_duplicate_columns(csv_path)
    if table.empty:
        raise DataError(f"{csv_path}: the CSV has no rows")
    entries: Entries = []
    first_row: dict[str, int] = {}
    for number, (relative, label) in enumerate(zip(table[data.path_column], table[data.target_column]), start=2):
        where = f"{csv_path}, line {number}"
        relative = relative.strip()
        if not relative and not label.strip():
            continue  # a blank line
        if not relative:
            raise DataError(f"{where}: empty {data.path_column!r}")
        if "\x00" in relative:
            raise DataError(f"{where}: {quote(relative)} holds a NUL byte, which no file name can")
        if Path(relative).is_absolute() or re.match(r"^[A-Za-z]:[\\/]", relative):
            raise DataError(f"{where}: {quote(relative)} is an absolute path; paths must be relative to {root}")
        path = (root / relative).resolve()
        if not path.is_relative_to(root):
            raise DataError(f"{where}: {quote(relative)} points outside the images folder {root}")
        key = path.relative_to(root).as_posix()
        if key in first_row:
            raise DataError(f"{where}: {quote(relative)} is listed twice (first on line {first_row[key]})")
        first_row[key] = number
        try:
            found = path.is_file()
        except OSError as exc:  # a name too long for the file system, and the like
            raise DataError(f"{where}: {quote(relative)} cannot be a file here ({exc.strerror})") from None
        if not found:
            raise DataError(f"{where}: image file not found: {clip(str(path), 300)}")
        if not label.strip():
            raise DataError(f"{where}: empty {data.target_column!r} for {quote(relative)}")
        entries.append((str(path), key, label.strip()))
    if not entries:
        raise DataError(f"{csv_path}: the CSV has no rows (only a header and blank lines)")
    return entries


def _refuse_duplicate_columns(csv_path: Path) -> None:
    """pandas renames a repeated column `label.1` silently; which one was meant is the user's to say."""
    import csv

    with open(csv_path, newline="", encoding="utf-8", errors="replace") as f:
        header = next(csv.reader(f), [])
    names = [name.strip() for name in header]
    repeated = next((name for name in names if names.count(name) > 1), None)
    if repeated is not None:
        raise DataError(f"{csv_path}: column {quote(repeated)} appears twice in the header")


def _number(value: str, path: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not np.isfinite(number):
        raise DataError(f"{path}: target {quote(value)} is not a number (task regression needs numeric targets)")
    return number


def _natural(label: str):
    """Class order: numerically when labels are numbers ("2" before "10"), else alphabetically."""
    return (0, int(label), label) if label.isascii() and label.isdecimal() else (1, 0, label)


def _number_like(label: str) -> bool:
    try:
        float(label)
    except ValueError:
        return False
    return True


def _ensure_each_class_in(splits, targets, relatives, classes, split: str) -> None:
    """Every class needs images on both sides: move its lowest-hash (or highest-hash) image over.

    A small class can miss a split by chance; moving the extreme-hash image keeps this deterministic.
    """
    for c, name in enumerate(classes):
        members = np.flatnonzero(targets == c)
        if len(members) < 2:
            numeric = len(classes) > 2 and all(_number_like(c) for c in classes)
            hint = "; the labels are all numbers: for numeric targets, set `task: regression`" if numeric else ""
            raise DataError(f"class {quote(name)}: needs at least 2 images, one to train on and one to validate on"
                            + hint)
        if not np.any(splits[members] == split):
            chosen = min((i for i in members if splits[i] == "train"), key=lambda i: _unit_hash(relatives[i]))
            splits[chosen] = split
        if not np.any(splits[members] == "train"):
            chosen = max((i for i in members if splits[i] == split), key=lambda i: _unit_hash(relatives[i]))
            splits[chosen] = "train"
