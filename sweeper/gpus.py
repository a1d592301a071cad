"""GPUs: how many trials share one, and how much of its memory each may take (`budget.gpus_per_trial`).

TensorFlow takes nearly all of a GPU's memory when it starts, so trials that share a GPU would
fail one another (ray #13680). A trial with a share of a GPU is therefore held to that share of
its memory (TensorFlow's per-process memory limit); one with whole GPUs grows into them as it needs.

`auto` packs by measurement: before the first trial, one task on a GPU builds each architecture
of the space (backbone, cut, image size, batch size, trained or frozen) and runs a few steps of
it, recording TensorFlow's peak memory; from that peak, each architecture's trials get the share
of a GPU that as many of them as fit can run side by side. Peaks are kept in the cache, by GPU
model and precision, so the next sweep measures only what is new.

A trial that runs out of GPU memory while sharing a GPU ends with `GpuOutOfMemory`; the sweep's
callback then gives its retry a whole GPU (sweep_callbacks.py), and its row says so.
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .units import plural

AUTO = "auto"
USABLE = 0.95  # of a GPU's memory handed to trials
# Per process, outside TensorFlow's allocator: the CUDA context and the cuDNN and cuBLAS handles.
# A typical figure for recent GPUs, not measured here (no GPU); bench_gpu.py prints the real one.
CONTEXT_MB = 600
# A peak measured over a few steps, times this: fragmentation and allocations later in a trial.
MARGIN = 1.25
MEASURE_STEPS = 2  # training steps per architecture: the first builds every buffer, the second reuses them
PEAKS_FILE = "gpu_memory.json"  # in the cache folder: {gpu model: {precision: {architecture: peak MB}}}


class GpuOutOfMemory(RuntimeError):
    """A trial ran out of GPU memory; with a share of a GPU, its retry gets a whole one."""


@dataclass(frozen=True)
class Device:
    name: str
    memory_mb: int


def devices() -> list[Device]:
    """This machine's NVIDIA GPUs, as `nvidia-smi` lists them; [] where it is not installed."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    found = []
    for line in out.stdout.strip().splitlines() if out.returncode == 0 else []:
        name, _, memory = line.rpartition(",")
        if memory.strip().isdigit():
            found.append(Device(name.strip(), int(memory)))
    return found


# --- the arithmetic ------------------------------------------------------------------------------


def trials_per_gpu(peak_mb: float | None, memory_mb: int, cap: int) -> int:
    """How many trials of an architecture with this measured peak fit side by side on one GPU (at
    most `cap`); 1 for one whose peak is unknown or did not fit at all."""
    if peak_mb is None:
        return 1
    return max(1, min(cap, int(memory_mb * USABLE // (peak_mb * MARGIN + CONTEXT_MB))))


def share_of(trials: int) -> float:
    """The GPU share each of `trials` trials asks Ray for: rounded down to Ray's 4 decimals, so they fit."""
    return math.floor(10_000 / trials) / 10_000


def memory_limit_mb(share: float, memory_mb: int) -> int | None:
    """TensorFlow's memory limit for a process holding `share` of a GPU; None for whole GPUs (memory growth)."""
    if share >= 1:
        return None
    return max(256, int(share * memory_mb * USABLE - CONTEXT_MB))


def share_cap(concurrent_trials: int, gpus: float) -> int:
    """Trials that may share one GPU: no more than spreads the concurrent trials over every GPU
    (Ray fills one GPU before the next, so a smaller share would leave GPUs idle)."""
    return max(1, math.ceil(concurrent_trials / max(1.0, gpus)))


# --- architectures -------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Architecture:
    """What a trial's GPU memory depends on."""

    backbone: str
    cut: str
    image_size: int
    batch_size: int
    trains: bool  # trains part of the backbone (gradients, optimizer slots), or only a head on cached features

    @property
    def key(self) -> str:
        return f"{self.backbone} {self.cut} {self.image_size}px batch {self.batch_size} " + \
            ("trained" if self.trains else "frozen")


def architectures(space, weights: str) -> list[Architecture]:
    """Every memory-relevant architecture of a space; of a range (image size, batch size), its largest."""
    from itertools import product

    from .space import Range, values_of

    def largest_or_each(param) -> tuple:
        return (int(param.high),) if isinstance(param, Range) else tuple(values_of(param))

    def ends(param) -> tuple:
        return (param.low, param.high) if isinstance(param, Range) else tuple(values_of(param))

    trains = {True} if weights == "none" else {
        layers != 0 or blocks != 0 for layers in ends(space.unfreeze) for blocks in ends(space.unfreeze_blocks)}
    found = set()
    for backbone in values_of(space.backbone):
        for cut, size, batch, trained in product(values_of(space.cut_for(backbone)), largest_or_each(space.image_size),
                                                 largest_or_each(space.batch_size), trains):
            found.add(Architecture(backbone, cut, int(size), int(batch), trained))
    return sorted(found)


def architecture_of(config: dict, weights: str) -> Architecture:
    """A trial's architecture, from its Tune config (keys a space leaves fixed take their defaults)."""
    from .hyperparameters import DEFAULTS

    value = {k: config.get(k, DEFAULTS[k]) for k in ("cut", "image_size", "batch_size", "unfreeze", "unfreeze_blocks")}
    trains = weights == "none" or value["unfreeze"] != 0 or value["unfreeze_blocks"] != 0
    return Architecture(config["backbone"], value["cut"], int(value["image_size"]), int(value["batch_size"]), trains)


# --- the packing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Packing:
    """Each architecture's share of a GPU, from its measured peak memory."""

    gpu: str  # the GPU model measured on
    memory_mb: int
    cpus_per_trial: float
    weights: str
    peaks_mb: dict[str, float | None] = field(default_factory=dict)  # by Architecture.key; None: did not fit
    shares: dict[str, float] = field(default_factory=dict)
    note: str = ""  # why every trial takes a whole GPU, when the measurement could not run

    @classmethod
    def from_peaks(cls, peaks_mb: dict[str, float | None], *, gpu: str, memory_mb: int, cap: int,
                   cpus_per_trial: float, weights: str) -> Packing:
        shares = {key: share_of(trials_per_gpu(peak, memory_mb, cap)) for key, peak in peaks_mb.items()}
        return cls(gpu, memory_mb, cpus_per_trial, weights, dict(peaks_mb), shares)

    def share_for(self, config: dict) -> float:
        """A trial's share: its architecture's, or the smallest measured one that is at least as large
        (a range of image or batch sizes was measured at its largest); a whole GPU when none is."""
        wanted = architecture_of(config, self.weights)
        larger = [a for a in map(_parse_key, self.shares)
                  if (a.backbone, a.cut, a.trains) == (wanted.backbone, wanted.cut, wanted.trains)
                  and a.image_size >= wanted.image_size and a.batch_size >= wanted.batch_size]
        return self.shares[min(larger).key] if larger else 1.0

    def resources(self, config: dict):
        """Tune's resources for a trial of `config` (`tune.with_resources` calls it per trial)."""
        from ray.tune.execution.placement_groups import PlacementGroupFactory

        return PlacementGroupFactory([{"CPU": self.cpus_per_trial, "GPU": self.share_for(config)}])

    def lines(self) -> list[str]:
        if self.note:
            return [f"gpus_per_trial auto: {self.note}; each trial takes a whole GPU"]
        out = [f"gpus_per_trial auto, on {self.gpu} ({self.memory_mb:,} MB): peak memory measured per architecture"]
        for key, peak in self.peaks_mb.items():
            share = self.shares[key]
            sharing = f"{round(1 / share)} per GPU" if share < 1 else "1 per GPU"
            measured = f"peak {peak:,.0f} MB" if peak is not None else "did not fit in a whole GPU's memory"
            out.append(f"  {key}: {measured} -> {sharing} (share {share:g})")
        return out

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Packing:
        return cls(**data)


def _parse_key(key: str) -> Architecture:
    words = key.rsplit(" ", 5)  # backbone, cut, "224px", "batch", 32, trained|frozen
    return Architecture(words[0], words[1], int(words[2].removesuffix("px")), int(words[4]), words[5] == "trained")


def fixed_share(budget) -> float:
    """A trial's GPUs when the spec gives a number; 0 for `auto`, which `Packing` resolves per trial."""
    return 0.0 if budget.gpus_per_trial == AUTO else float(budget.gpus_per_trial)


# --- in a trial ------------------------------------------------------------------------------------


def assigned_share() -> float:
    """The GPUs Ray gave this trial: a share of one, whole ones, or 0."""
    import ray

    return float(ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0))


_memory_set: list[str] = []  # what this process set: TensorFlow fixes it once it has started


def limit_memory(tf, share: float) -> str:
    """Hold this process to its share of the GPU (or let it grow into whole GPUs) before TensorFlow
    first uses it; returns what is set, in words. Ray reuses a worker only for trials with the same
    resources, so what its first trial set holds for the next."""
    if _memory_set:
        return _memory_set[0]
    physical = tf.config.list_physical_devices("GPU")
    if not physical:
        return "no GPU visible to TensorFlow"
    found = devices()
    limit = memory_limit_mb(share, found[0].memory_mb) if found and 0 < share < 1 else None
    try:
        if limit is None:
            for gpu in physical:
                tf.config.experimental.set_memory_growth(gpu, True)
            _memory_set.append("memory growth")
        else:
            config = [tf.config.LogicalDeviceConfiguration(memory_limit=limit)]
            tf.config.set_logical_device_configuration(physical[0], config)
            _memory_set.append(f"memory limit {limit:,} MB")
    except RuntimeError:  # TensorFlow had started before sweeper could set it
        _memory_set.append("as TensorFlow started")
    return _memory_set[0]


def is_out_of_memory(exc: BaseException) -> bool:
    """TensorFlow's out-of-memory error (or CUDA's), anywhere in the exception's chain."""
    while exc is not None:
        if type(exc).__name__ == "ResourceExhaustedError" or "CUDA_ERROR_OUT_OF_MEMORY" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def out_of_memory(share: float, exc: BaseException) -> GpuOutOfMemory:
    what = f"{share:g} of a GPU" if share < 1 else plural(float(share), "whole GPU")
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return GpuOutOfMemory(f"out of GPU memory with {what}: {first}")


# --- the measurement (on a GPU) ---------------------------------------------------------------------


def measure(found: list[Architecture], *, task: str, n_classes: int, precision: str, cache_dir: str,
            backbones: dict) -> dict:
    """Peak TensorFlow memory of each architecture on this process's GPU, in MB; run as a Ray task
    holding one whole GPU. Peaks already in the cache for this GPU model and precision are reused.
    Returns {"gpu", "memory_mb", "peaks_mb"}, or {"error"} where TensorFlow sees no GPU."""
    from filelock import FileLock

    from . import environment
    from .backbones import declared

    environment.set_defaults(environment.WORKER)  # before TensorFlow is imported
    import tensorflow as tf

    limit_memory(tf, 1.0)  # a whole GPU: memory growth, so that the peak is the model's own
    if not tf.config.list_physical_devices("GPU"):
        return {"error": "TensorFlow sees no GPU on the node the measurement ran on (a CPU-only TensorFlow?)"}
    device = (devices() or [Device("an unknown GPU", 0)])[0]
    path = Path(cache_dir) / PEAKS_FILE
    with FileLock(str(path) + ".lock"):
        known = json.loads(path.read_text()) if path.is_file() else {}
    recorded = known.get(device.name, {}).get(precision, {})
    peaks = {a.key: recorded[a.key] for a in found if a.key in recorded}
    with declared(backbones):
        for architecture in found:
            if architecture.key not in peaks:
                peaks[architecture.key] = _peak_mb(tf, architecture, task=task, n_classes=n_classes,
                                                   precision=precision)
    with FileLock(str(path) + ".lock"):
        known = json.loads(path.read_text()) if path.is_file() else {}
        known.setdefault(device.name, {}).setdefault(precision, {}).update(peaks)
        path.write_text(json.dumps(known, indent=1))
    return {"gpu": device.name, "memory_mb": device.memory_mb, "peaks_mb": peaks}


def _peak_mb(tf, architecture: Architecture, *, task: str, n_classes: int, precision: str) -> float | None:
    """Random weights (the memory does not depend on their values). A trained architecture trains
    its whole backbone (an upper bound for any unfreeze depth); a frozen one runs the forward pass
    that computes cached features, in the feature cache's batches."""
    import keras
    import numpy as np

    from . import feature_cache
    from .model import TrialConfig, build_model
    from .precision import building_in
    from .training import EpochLoop

    keras.backend.clear_session(free_memory=True)
    config = TrialConfig(backbone=architecture.backbone, cut=architecture.cut, image_size=architecture.image_size,
                         batch_size=architecture.batch_size)
    rows = architecture.batch_size * MEASURE_STEPS if architecture.trains else feature_cache.CHUNK
    x = np.random.default_rng(0).uniform(0, 255, (rows, config.image_size, config.image_size, 3)).astype(np.float32)
    y = np.zeros(rows, np.float32 if task == "regression" else np.int32)
    try:
        with building_in(precision):
            model = build_model(config, task=task, n_classes=n_classes, weights=None)
        tf.config.experimental.reset_memory_stats("GPU:0")
        if architecture.trains:
            EpochLoop(model).train_epoch(x, y, batch_size=architecture.batch_size, rng=np.random.default_rng(0))
        else:
            model.predict(x, batch_size=feature_cache.CHUNK, verbose=0)
        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    except tf.errors.ResourceExhaustedError:
        return None
    finally:
        keras.backend.clear_session(free_memory=True)


# --- what `sweeper run --dry-run` says -----------------------------------------------------------------


def dry_run_lines(spec, cache_dir: Path) -> list[str]:
    """The precision and the packing a sweep of `spec` will use, as far as this machine can tell."""
    budget = spec.budget
    lines = [f"precision: {budget.precision}" + ("" if budget.precision == "float32" else
             " (variables, the head's output, the loss and exported models stay float32)")]
    if budget.gpus_per_trial == AUTO:
        lines += _auto_lines(spec, Path(cache_dir))
    elif not budget.gpus_per_trial:
        lines.append("GPUs: none (budget.gpus_per_trial 0): trials run on CPUs")
    elif budget.gpus_per_trial < 1:
        trials = math.floor(1 / budget.gpus_per_trial)
        found = devices()
        limit = f" ({memory_limit_mb(budget.gpus_per_trial, found[0].memory_mb):,} MB of {found[0].name})" \
            if found else ""
        lines.append(f"GPUs: {budget.gpus_per_trial:g} of a GPU per trial: {plural(trials, 'trial')} per GPU, each "
                     f"held to its share of the GPU's memory{limit}")
    else:
        lines.append(f"GPUs: {plural(float(budget.gpus_per_trial), 'whole GPU')} per "
                     "trial (memory growth)")
    return lines


def _auto_lines(spec, cache_dir: Path) -> list[str]:
    found = architectures(spec.space, spec.weights)
    local = devices()
    path = cache_dir / PEAKS_FILE
    known = json.loads(path.read_text()) if path.is_file() else {}
    if local:
        recorded = known.get(local[0].name, {}).get(spec.budget.precision, {})
        if all(a.key in recorded for a in found):
            cap = share_cap(spec.budget.concurrent_trials, len(local))
            packing = Packing.from_peaks({a.key: recorded[a.key] for a in found}, gpu=local[0].name,
                                         memory_mb=local[0].memory_mb, cap=cap,
                                         cpus_per_trial=spec.budget.cpus_per_trial, weights=spec.weights)
            return [line.replace("measured", "measured before (cache)", 1) for line in packing.lines()]
    where = "this machine's GPU" if local else "a GPU of the Ray cluster (this machine has none)"
    whose = plural(len(found), "architecture's", "architectures'")
    return [f"GPUs: auto: {whose} peak memory is measured on {where} as the sweep starts; each "
            "gets the share of a GPU that fits the most trials (no GPU in the cluster: trials run on CPUs)"]
