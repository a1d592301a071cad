"""The data set index: which images there are, their labels, their split, and a fingerprint.

Splits come from a hash of each image's path relative to its folder, not from a shuffle: they
are identical across runs and machines, and an image keeps its split when others are added.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from .errors import DataError
from .spec import DataSpec

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class DatasetIndex:
    paths: tuple[str, ...]  # absolute
    targets: np.ndarray  # class indices
    splits: np.ndarray  # one of SPLITS per image
    classes: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = field(default=())  # (path, reason)

    @cached_property
    def fingerprint(self) -> str:
        """Changes when any image is added, removed, rewritten, relabelled or moves split."""
        digest = hashlib.sha256()
        for path, target, split in zip(self.paths, self.targets.tolist(), self.splits.tolist()):
            stat = Path(path).stat()
            digest.update(json.dumps([path, stat.st_size, stat.st_mtime_ns, target, split]).encode())
        return digest.hexdigest()[:16]

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

    def summary(self) -> dict:
        counts = {
            split: {c: int(np.sum((self.splits == split) & (self.targets == i))) for i, c in enumerate(self.classes)}
            for split in SPLITS
            if np.any(self.splits == split)
        }
        return {
            "images": len(self.paths),
            "classes": list(self.classes),
            "per_split": counts,
            "skipped": len(self.skipped),
            "skipped_examples": [{"path": p, "reason": r} for p, r in self.skipped[:10]],
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
    return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16) / 16**12


def build_index(data: DataSpec, task: str) -> DatasetIndex:
    """List the images of a folder-per-class data set and assign every image its split."""
    if task != "classification":
        raise DataError(
            f"{data.train}: task regression needs numeric targets, but a folder per class only gives class labels"
        )
    classes, train, skipped = _scan_classes(data.train)
    sources = {"train": train}
    for split in ("validation", "test"):
        folder = getattr(data, split)
        if folder is not None:
            extra_classes, sources[split], more_skipped = _scan_classes(folder, allow_missing=True)
            unknown = sorted(set(extra_classes) - set(classes))
            if unknown:
                raise DataError(f"{folder}: class folder {unknown[0]!r} does not exist in the training folder {data.train}")
            skipped += more_skipped

    paths, relatives, targets, splits = [], [], [], []
    val_share = 0.0 if data.validation else data.validation_split
    test_share = 0.0 if data.test else data.test_split
    for source, images in sources.items():
        for relative, label in images:
            folder = getattr(data, source)
            paths.append(str(folder / relative))
            relatives.append(relative)
            targets.append(classes.index(label))
            splits.append(split_of(relative, val_share, test_share) if source == "train" else source)
    splits = np.array(splits, dtype=object)
    targets = np.array(targets, dtype=np.int64)
    if val_share:
        _ensure_each_class_in(splits, targets, relatives, len(classes), "validation")
    return DatasetIndex(tuple(paths), targets, splits.astype(str), tuple(classes), tuple(skipped))


def _scan_classes(folder: Path, allow_missing: bool = False):
    """(sorted class names, [(path relative to folder, class)], [(skipped path, reason)])."""
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{folder}: no class folders; expected one sub-folder per class, e.g. {folder}/cats/")
    images, skipped = [], []
    for class_dir in class_dirs:
        files = sorted(
            p for p in class_dir.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(class_dir).parts)
        )
        found = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        skipped += [(str(p), "not an image file") for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
        if not found and not allow_missing:
            raise DataError(f"{class_dir}: class folder holds no images")
        images += [(p.relative_to(folder).as_posix(), class_dir.name) for p in found]
    classes = [d.name for d in class_dirs]
    if not images:
        raise DataError(f"{folder}: holds no images in its class folders")
    if len(classes) < 2 and not allow_missing:
        raise DataError(f"{folder}: only one class folder ({classes[0]}); classification needs at least two")
    return classes, images, skipped


def _ensure_each_class_in(splits, targets, relatives, n_classes: int, split: str) -> None:
    """Every class needs images on both sides: move its lowest-hash (or highest-hash) image over.

    A small class can miss a split by chance; moving the extreme-hash image keeps this deterministic.
    """
    for c in range(n_classes):
        members = np.flatnonzero(targets == c)
        if len(members) < 2:
            raise DataError(f"class {relatives[members[0]].split('/')[0]!r}: needs at least 2 images, one to validate on")
        if not np.any(splits[members] == split):
            chosen = min((i for i in members if splits[i] == "train"), key=lambda i: _unit_hash(relatives[i]))
            splits[chosen] = split
        if not np.any(splits[members] == "train"):
            chosen = max((i for i in members if splits[i] == split), key=lambda i: _unit_hash(relatives[i]))
            splits[chosen] = "train"
