"""What a sweep's caches take on disk, estimated before it starts and checked against the free space.

Decoded images are exact (N x size x size x 3 bytes per image size). Frozen features depend on
where each configuration's frozen frontier falls: a whole frozen backbone, average-pooled, gives
one vector of its cut's channels per image, which the registry declares; any other frontier's
shapes are read off the backbones, built without weights, in a Python process of their own (the
driver never imports TensorFlow). The estimate is the sum of the largest entries the sweep's
trials could create, an upper bound. 100,000 images of ResNet50 cut at conv2_block3_out are
1.2 TB of features: the refusal comes before the first trial, not hours into the sweep.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from . import environment
from .backbones import Backbone, declared, get_backbone
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
    unfreeze_blocks: int = 0


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
    every configuration augments. When every configuration freezes its whole backbone and
    average-pools it (the common recipe), the registry gives the sizes. Otherwise the shapes are
    read in a process of their own (building a backbone needs TensorFlow: 10 s of CPU on 2 cores,
    measured), started before Ray so that it overlaps Ray's start and the decoding, and kept in
    the cache folder, so the next sweep of the space reads them. Use it as a context manager:
    leaving it ends that process if it is still running.
    """

    def __init__(self, space: Space, *, sizes: list[int], trials: int, weights: str, use_feature_cache: bool,
                 spatial_dtype: str, cache_dir: Path):
        self.trials, self._pending = trials, None
        always_augments = not isinstance(space.augment, Range) and set(values_of(space.augment)) == {True}
        candidates = _candidates(space, sizes)
        self._entries: list[FeatureEntry] | None = []
        if weights == "none" or not use_feature_cache or always_augments or not candidates:
            return
        if all(tuple(unfreezes) == ((0, 0),) and tuple(poolings) == ("avg",) for *_, unfreezes, poolings in candidates):
            self._entries = [FeatureEntry(backbone, cut, size, 0, 4 * get_backbone(backbone).channels_at(cut))
                             for backbone, cut, size, _, _ in candidates]
            return
        own = [get_backbone(b) for b in dict.fromkeys(c[0] for c in candidates) if get_backbone(b).own]
        self._memo = Path(cache_dir) / "shapes" / f"{_memo_key(candidates, spatial_dtype, own)}.json"
        try:
            self._entries = [FeatureEntry(**e) for e in json.loads(self._memo.read_text())]
        except (OSError, ValueError, TypeError):
            self._entries = None
            self._pending = _start_reading(candidates, spatial_dtype, own)

    def __enter__(self) -> FeatureEstimate:
        return self

    def __exit__(self, *exc) -> None:
        if self._pending is not None and self._pending.poll() is None:  # the sweep stopped before it
            self._pending.kill()
            self._pending.wait()

    def entries(self) -> list[FeatureEntry]:
        if self._entries is None:
            self._entries = _finish_reading(self._pending)
            self._memo.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self._memo, json.dumps([asdict(e) for e in self._entries]))
        return self._entries

    def bytes_at_most(self, images: int) -> int:
        """The largest entries, one per trial, for this many images."""
        largest = sorted((e.bytes_per_image for e in self.entries()), reverse=True)[:self.trials]
        return sum(largest) * images


def _memo_key(candidates, spatial_dtype: str, own: list[Backbone]) -> str:
    """Shapes depend on the candidates, the dtype, the Keras that builds the backbones, and the
    files of the spec's own models."""
    from importlib.metadata import version

    text = json.dumps([candidates, spatial_dtype, version("keras"), [b.identity() for b in own]])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _candidates(space: Space, sizes: list[int]) -> list[tuple[str, str, int, tuple, tuple[str, ...]]]:
    """(backbone, cut, image size, (unfreeze, unfreeze_blocks) values, head poolings) of every
    pretrained backbone; a number of blocks above 0 takes the place of the number of layers."""
    layers, blocks = _integers(space.unfreeze), _integers(space.unfreeze_blocks)
    unfreezes = (*((u, 0) for u in layers if 0 in blocks), *((0, b) for b in blocks if b > 0))
    poolings = tuple(values_of(space.head_pooling))
    found = []
    for name in values_of(space.backbone):
        if not get_backbone(name).pretrained:
            continue
        cut = space.cut_for(name)
        cuts = values_of(cut) if not isinstance(cut, Range) else (FULL,)
        found += [(name, c, size, unfreezes, poolings) for c in cuts for size in sizes]
    return found


def _integers(param) -> tuple[int, ...]:
    return tuple(range(int(param.low), int(param.high) + 1)) if isinstance(param, Range) else \
        tuple(int(v) for v in values_of(param))


def _start_reading(candidates, spatial_dtype: str, own: list[Backbone]) -> subprocess.Popen:
    """`python -m sweeper.disk`, with a worker's TensorFlow settings, reading these candidates' shapes."""
    arguments = json.dumps([candidates, spatial_dtype, [b.to_dict() for b in own]])
    return subprocess.Popen([sys.executable, "-m", __name__, arguments],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**environment.WORKER, **os.environ})


def _finish_reading(process: subprocess.Popen) -> list[FeatureEntry]:
    out, err = process.communicate()
    if process.returncode != 0:
        last = (err.strip().splitlines() or [f"exit status {process.returncode}"])[-1]
        raise SweeperError(f"reading the shapes of the frozen features failed: {last}")
    return [FeatureEntry(**e) for e in json.loads(out.strip().splitlines()[-1])]


def _read_entries(candidates, spatial_dtype: str, own: list[dict]) -> list[FeatureEntry]:
    from .feature_cache import frozen_entries

    with declared({entry["name"]: Backbone.from_dict(entry) for entry in own}):
        return [FeatureEntry(backbone, cut, size, layers, per_image, blocks)
                for backbone, cut, size, unfreezes, poolings in candidates
                for (layers, blocks), per_image in frozen_entries(backbone, cut, size, unfreezes, poolings,
                                                                  spatial_dtype)]


if __name__ == "__main__":  # the process `_start_reading` starts; its last line out is the answer
    print(json.dumps([asdict(e) for e in _read_entries(*json.loads(sys.argv[1]))]))
