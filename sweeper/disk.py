"""What a sweep's caches take on disk, estimated before it starts and checked against the free space.

Decoded images are exact (N x size x size x 3 bytes per image size). Frozen features depend on
where each configuration's frozen frontier falls, so their shapes are read off the backbones,
built without weights, in a Ray worker (the driver never imports TensorFlow); the estimate is the
sum of the largest entries the sweep's trials could create, an upper bound. 100,000 images of
ResNet50 cut at conv2_block3_out are 1.2 TB of features: the refusal comes before the first
trial, not hours into the sweep.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import SweeperError
from .files import write_atomic
from .hyperparameters import FULL
from .space import Range, Space, values_of
from .units import format_size


@dataclass(frozen=True)
class FeatureEntry:
    """One frozen-features cache entry a trial may create: what it is, and its bytes per image."""

    backbone: str
    cut: str
    image_size: int
    unfreeze: int
    bytes_per_image: int


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def decoded_bytes(images: int, sizes: list[int]) -> int:
    return sum(images * size * size * 3 for size in sizes)


def check_free(cache_dir: Path, needed: dict[str, int]) -> None:
    """Refuse, in one line with both numbers, when the disk of `cache_dir` cannot hold `needed`
    ({what: bytes} of cache not yet written)."""
    total = sum(needed.values())
    free = free_bytes(cache_dir)
    if total > free:
        parts = ", ".join(f"{what} {format_size(n)}" for what, n in needed.items() if n)
        raise SweeperError(
            f"{cache_dir}: the sweep's cache needs {format_size(total)} ({parts}) but the disk has "
            f"{format_size(free)} free; free some space (`sweeper cache prune`), shrink the space "
            "(fewer image sizes, later cuts), or pass --cache-dir on a larger disk")


class FeatureEstimate:
    """The frozen-features entries a sweep's space can create, and an upper bound on their bytes.

    Nothing is frozen, so nothing is cached, when the weights are random, the cache is off, or
    every configuration augments. The shapes are read in a Ray worker (building a backbone needs
    TensorFlow: seconds), started as soon as Ray is up so that it overlaps the decoding, and kept
    in the cache folder, so the next sweep of the space reads them.
    """

    def __init__(self, space: Space, *, sizes: list[int], trials: int, weights: str, use_feature_cache: bool,
                 spatial_dtype: str, cache_dir: Path):
        self.trials, self._pending = trials, None
        always_augments = not isinstance(space.augment, Range) and set(values_of(space.augment)) == {True}
        candidates = _candidates(space, sizes)
        self._entries: list[FeatureEntry] | None = []
        if weights == "none" or not use_feature_cache or always_augments or not candidates:
            return
        self._memo = Path(cache_dir) / "shapes" / f"{_memo_key(candidates, spatial_dtype)}.json"
        try:
            self._entries = [FeatureEntry(**e) for e in json.loads(self._memo.read_text())]
        except (OSError, ValueError, TypeError):
            import ray

            self._entries = None
            self._pending = ray.remote(num_cpus=0)(_entries_remote).remote(candidates, spatial_dtype)

    def entries(self) -> list[FeatureEntry]:
        if self._entries is None:
            import ray

            self._entries = ray.get(self._pending)
            self._memo.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self._memo, json.dumps([asdict(e) for e in self._entries]))
        return self._entries

    def bytes_at_most(self, images: int) -> int:
        """The largest entries, one per trial, for this many images."""
        largest = sorted((e.bytes_per_image for e in self.entries()), reverse=True)[:self.trials]
        return sum(largest) * images


def _memo_key(candidates, spatial_dtype: str) -> str:
    """Shapes depend on the candidates, the dtype and the Keras that builds the backbones."""
    from importlib.metadata import version

    text = json.dumps([candidates, spatial_dtype, version("keras")])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _candidates(space: Space, sizes: list[int]) -> list[tuple[str, str, int, tuple[int, ...], tuple[str, ...]]]:
    """(backbone, cut, image size, unfreeze values, head poolings) of every pretrained backbone."""
    from .backbones import REGISTRY

    unfreeze = space.unfreeze
    unfreezes = (tuple(range(int(unfreeze.low), int(unfreeze.high) + 1)) if isinstance(unfreeze, Range)
                 else tuple(int(u) for u in values_of(unfreeze)))
    poolings = tuple(values_of(space.head_pooling))
    found = []
    for name in values_of(space.backbone):
        if not REGISTRY[name].pretrained:
            continue
        cut = space.cut_for(name)
        cuts = values_of(cut) if not isinstance(cut, Range) else (FULL,)
        found += [(name, c, size, unfreezes, poolings) for c in cuts for size in sizes]
    return found


def _entries_remote(candidates, spatial_dtype: str) -> list[FeatureEntry]:
    from .feature_cache import frozen_entries

    return [FeatureEntry(backbone, cut, size, unfreeze, per_image)
            for backbone, cut, size, unfreezes, poolings in candidates
            for unfreeze, per_image in frozen_entries(backbone, cut, size, unfreezes, poolings, spatial_dtype)]
