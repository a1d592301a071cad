"""One trial: build the model, train it epoch by epoch, report every epoch to Ray Tune.

The checkpoint sent with a report is always the best epoch so far, so the checkpoint Tune
keeps for a trial is its best epoch, not its last. TensorFlow is imported inside the trial
function, never when the driver imports this module.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from . import environment, gpus, nodes
from .backbones import declared
from .constraints import INFEASIBLE, Constraints
from .costs import architecture_costs
from .data import DatasetIndex
from .objective import Objective
from .units import plural

_WORKER_STARTED = time.time()  # about when this worker process started: Ray imports this module early
_trials_in_worker = 0

@dataclass(frozen=True)
class TrialContext:
    """What every trial shares; put in Ray's object store once by `tune.with_parameters`."""

    index: DatasetIndex
    task: str
    objective: str
    mode: str
    max_epochs: int
    weights: str  # "imagenet" or "none"
    weights_dirs: tuple[str, ...]  # the folders searched for weight files, as the driver resolved them
    cache_dir: str
    cpus: int
    seed: int
    concurrent_trials: int = 1  # with the machine's memory, sets how much of its inputs a trial holds
    memory_budget: int | None = None  # bytes a trial may hold (SWEEPER_MEMORY_BUDGET); None: from the machine
    feature_cache: bool = True  # False trains every trial on images, for comparison
    spatial_features: str = "float32"  # how cached activations inside a backbone are stored (float16 halves them)
    precision: str = "float32"  # budget.precision: what the trial's model computes in
    required_paths: tuple[tuple[str, str], ...] = ()  # (what, path) its node must see (nodes.py)
    backbones: dict = field(default_factory=dict)  # the spec's own models, {name: backbones.Backbone}
    progress: object = None  # a `progress.ProgressBoard` actor, shown by the driver
    constraints: Constraints = field(default_factory=Constraints)  # the spec's: checked before a trial trains
    measure_tflite: bool = False  # Spec.measures_tflite
    # On `sweeper resume`: trials the leaderboard saw end, {trial_id: {"error": message}} or
    # {trial_id: {"result": last result}}. Tune's saved state can lag behind the leaderboard by a
    # moment, and then offers such a trial to run again.
    ended: dict[str, dict] = field(default_factory=dict)


def run_trial(config: dict, context: TrialContext) -> None:
    """The Ray Tune function trainable."""
    with declared(context.backbones):
        try:
            _train(config, context)
        except Exception as exc:
            share = gpus.assigned_share()
            if share and gpus.is_out_of_memory(exc):  # the driver retries one that shared its GPU alone
                raise gpus.out_of_memory(share, exc) from exc
            raise


def _train(config: dict, context: TrialContext) -> None:
    global _trials_in_worker
    # A worker's first trial also waited for the worker itself to start.
    started = _WORKER_STARTED if _trials_in_worker == 0 else time.time()
    _trials_in_worker += 1
    _release_freed_memory()
    share = gpus.assigned_share()
    gpu_memory = gpus.limit_memory(init_tensorflow(context.cpus, gpu_share=share), share)
    import numpy as np
    from ray import tune

    from . import feature_cache, images, warm_models
    from .model import TrialConfig
    from .training import Rows, hold, learning_rate_at, memory_budget, nbytes

    nodes.check_trial_node(context.required_paths)  # a node that joined the cluster without the shared paths
    trial_config = TrialConfig.from_tune(config)
    seed = _trial_seed(context.seed, trial_config)
    diverged = _diverged_before()
    if diverged.is_file():  # a retry (budget.max_failures) would diverge again, the same way
        raise TrialDiverged(diverged.read_text())
    trial_id = tune.get_context().get_trial_id()
    if trial_id in context.ended:  # it ended before the driver was killed: never train it twice
        ended = context.ended[trial_id]
        if "error" in ended:
            raise TrialEndedBefore(ended["error"])
        tune.report({**ended["result"], REPLAYED: True})  # what Tune and the searcher missed; no training
        return

    # An architecture's costs are measured before its first trial trains: a trial of one known to
    # break a constraint ends before it loads a single image.
    costs = _architecture_costs(trial_config, context)
    if costs is not None and context.constraints.broken(costs):
        return _report_infeasible(costs, context)
    index, pixels = images.load_images(context.index, trial_config.image_size, Path(context.cache_dir))
    train_idx, val_idx = index.indices("train"), index.indices("validation")
    y_train, y_val = index.targets[train_idx], index.targets[val_idx]
    target_stats = (float(y_train.mean()), float(y_train.std())) if context.task == "regression" else None

    warm = warm_models.prepare(
        trial_config, seed=seed, task=context.task, n_classes=len(index.classes), weights=context.weights,
        weights_dir=context.weights_dirs, target_stats=target_stats, use_feature_cache=context.feature_cache,
        precision=context.precision,
    )
    if costs is None:  # the first trial of its architecture measures it, before any frozen features
        costs = _architecture_costs(trial_config, context, model=_as_deployed(warm.model, trial_config, context,
                                                                              target_stats))
        if context.constraints.broken(costs):
            return _report_infeasible(costs, context)
    # Frozen layers: train what follows them on their cached output. `split.trained` shares the
    # model's layers, so `warm.model` holds the trained weights and is what the checkpoint saves.
    split = warm.split
    if split is None:  # read from the cache's file as needed
        x_train, x_val = Rows(pixels, train_idx), Rows(pixels, val_idx)
    else:
        key = feature_cache.key_for(
            warm.model, split, backbone=trial_config.backbone, cut=trial_config.cut,
            image_size=trial_config.image_size, weights_used=warm.weights_used, fingerprint=index.fingerprint,
            spatial_dtype=context.spatial_features,
        )
        unfreeze = (plural(trial_config.unfreeze_blocks, "block") if trial_config.unfreeze_blocks
                    else str(trial_config.unfreeze))
        label = (f"frozen features: {trial_config.backbone} {trial_config.cut} unfreeze {unfreeze} "
                 f"at {trial_config.image_size} px")
        about = {"data": context.index.folder, "backbone": trial_config.backbone, "cut": trial_config.cut,
                 "unfreeze": unfreeze, "image_size": trial_config.image_size}
        features = feature_cache.frozen_features(
            split.prefix, pixels, Path(context.cache_dir), key, progress=_progress(context.progress, label), about=about,
            spatial_dtype=context.spatial_features,
        )
        x_train, x_val = split.inputs(features, train_idx), split.inputs(features, val_idx)

    # Held as tensors when both splits fit the trial's share of memory (once per trial, not once
    # per epoch); otherwise streamed from the cache's file every epoch.
    held = nbytes(x_train) + nbytes(x_val) <= memory_budget(context.concurrent_trials, context.memory_budget)
    if held:
        (x_train, y_train), (x_val, y_val) = hold(x_train, y_train), hold(x_val, y_val)
    on_gpu = {"gpus": share, "gpu_memory": gpu_memory} if share else {}
    reporter = EpochReporter(warm.model, trial_config, context, target_stats,
                             {**warm.sizes, **costs, "inputs_held": held, **on_gpu},
                             started=started, worker_trials=_trials_in_worker)
    first = 1 + _resume_from_checkpoint(warm.model, reporter)
    for epoch in range(first, context.max_epochs + 1):
        order = np.random.default_rng((seed, epoch))  # per epoch: a resumed trial shuffles as it would have
        learning_rate = learning_rate_at(epoch, learning_rate=trial_config.learning_rate, schedule=trial_config.schedule,
                                         warmup_epochs=trial_config.warmup_epochs, max_epochs=context.max_epochs)
        logs = warm.loop.train_epoch(x_train, y_train, batch_size=trial_config.batch_size, rng=order,
                                     learning_rate=learning_rate)
        logs["lr"] = learning_rate
        validation = warm.loop.evaluate(x_val, y_val, batch_size=max(trial_config.batch_size, 64))
        logs.update({f"val_{name}": value for name, value in validation.items()})
        if not all(math.isfinite(logs[key]) for key in ("loss", context.objective) if key in logs):
            _diverged(f"the loss became {logs['loss']} at epoch {epoch} "
                      f"(learning rate {learning_rate:g}, {trial_config.optimizer})")
        reporter.report(epoch, logs)


class TrialDiverged(RuntimeError):
    """The loss became NaN or infinite: the trial ends as `diverged` instead of training on garbage."""


REPLAYED = "replayed"  # marks the result a resumed sweep reports again for a trial that had ended


class TrialEndedBefore(RuntimeError):
    """Raised again, on resume, for a trial that had failed before the driver was killed."""


def _resume_from_checkpoint(model, reporter: EpochReporter) -> int:
    """On a resumed sweep, load the trial's kept checkpoint (its best epoch); returns that epoch, or 0.

    Tune resumes the trial at the checkpoint's epoch too, so the epochs after it are trained
    again; the optimizer starts afresh from the checkpoint's weights.
    """
    from ray import tune

    from . import checkpoint

    kept = tune.get_checkpoint()
    if kept is None:
        return 0
    with kept.as_directory() as folder:
        meta, weights = checkpoint.read(Path(folder))
    model.set_weights(weights)
    reporter.best, reporter.best_epoch = meta["metrics"][reporter.context.objective], meta["epoch"]
    return int(meta["epoch"])


def _diverged_before() -> Path:
    from ray import tune

    return Path(tune.get_context().get_trial_dir()) / "diverged.txt"


def _diverged(message: str):
    """End the trial as diverged, leaving a note so that Tune's retry of it ends at once."""
    _diverged_before().write_text(message)
    raise TrialDiverged(message)


def _as_deployed(model, trial_config, context: TrialContext, target_stats):
    """The model whose costs (latency, size) a deployment has: the trial's own, or under a mixed
    precision its float32 twin, as export writes it (random weights: costs do not depend on them)."""
    from . import precision
    from .model import build_model

    if precision.of_model(model) == precision.FLOAT32:
        return model
    return build_model(trial_config, task=context.task, n_classes=len(context.index.classes), weights=None,
                       target_stats=target_stats)


def _architecture_costs(config, context: TrialContext, model=None) -> dict | None:
    return architecture_costs(config, task=context.task, outputs=len(context.index.classes) or 1,
                              threads=context.cpus, cache_dir=Path(context.cache_dir),
                              tflite=context.measure_tflite, model=model)


def _report_infeasible(costs: dict, context: TrialContext) -> None:
    """The one result of a trial whose architecture breaks a constraint: its costs and why, no value.
    The objective is NaN, as Tune wants it in every result; nothing ranks a NaN."""
    from ray import tune

    tune.report({**costs, context.objective: float("nan"), "epoch": 0, INFEASIBLE: context.constraints.why(costs)})


class EpochReporter:
    """Reports every epoch to Tune, with a checkpoint of the whole model whenever the objective improves."""

    def __init__(self, model, trial_config, context: TrialContext, target_stats, sizes: dict, *,
                 started: float, worker_trials: int):
        self.model, self.trial_config, self.context = model, trial_config, context
        self.target_stats, self.sizes = target_stats, sizes
        self.best, self.best_epoch = None, 0
        self.started, self.startup_s = started, None
        self.worker_trials = worker_trials  # trials this worker has started, this one included

    def report(self, epoch: int, metrics: dict[str, float]) -> None:
        from ray import tune

        from . import checkpoint

        objective = self.context.objective
        value = metrics[objective]
        improved = Objective(objective, self.context.mode).better(value, than=self.best)
        if improved:
            self.best, self.best_epoch = value, epoch
        if self.startup_s is None:  # from the trial's (or its fresh worker's) start to its first report
            self.startup_s = round(time.time() - self.started, 3)
        report = {**metrics, "epoch": epoch, f"best_{objective}": self.best, "best_epoch": self.best_epoch,
                  "startup_s": self.startup_s, "worker_rss_mb": _resident_mb(),
                  "worker_trials": self.worker_trials, "node_id": _node_id(), **self.sizes}
        with tempfile.TemporaryDirectory(prefix="sweeper-ckpt-") as folder:
            kept = None
            if improved:  # Tune copies the folder into the experiment before report() returns
                checkpoint.save(Path(folder), self.model, self.trial_config, epoch, metrics, self.target_stats)
                kept = tune.Checkpoint.from_directory(folder)
            tune.report(report, checkpoint=kept)


def _node_id() -> str:
    """The Ray node this epoch ran on: on a cluster, nodes can share a host name and address."""
    import ray

    return ray.get_runtime_context().get_node_id()


def _release_freed_memory() -> None:
    """Hand the memory the last trial freed back to the system (glibc keeps it otherwise).

    Without this a reused worker's resident memory creeps up by about 9 MB per trial although
    nothing leaks: freed blocks stay in malloc's heap, fragmented.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc


def _resident_mb() -> float | None:
    """This worker's resident memory, to show whether it grows over trials (Linux; None elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def _progress(board, label: str):
    """A `progress(done, total)` that posts to the driver's progress board, if there is one."""
    if board is None:
        return None
    return lambda done, total: board.update.remote(label, done, total)


def warm_up_worker() -> None:
    """Ray's `worker_process_setup_hook` for a sweep: import TensorFlow and Keras as each worker starts.

    The import takes about 7 s of CPU on 2 cores, once per worker (Tune reuses workers between
    trials). Ray starts a trial's worker only when Tune asks for it, and a worker that ran a task
    never hosts an actor, so no earlier process can take this import off the first trials' path.
    Thread pools are sized later, by `init_tensorflow`: importing does not fix them.
    """
    if os.environ.get(environment.COLD_WORKER):  # the progress board
        return
    environment.set_defaults(environment.WORKER)  # before TensorFlow is imported
    from . import warm_models  # noqa: F401  (imports tensorflow, keras and sweeper's model code)


def init_tensorflow(cpus: int, gpu_share: float = 1.0):
    """Import TF with thread pools sized to the trial's CPUs, so concurrent trials do not fight, and
    its GPU memory held to `gpu_share` of a GPU (gpus.limit_memory)."""
    environment.set_defaults(environment.WORKER)  # before TensorFlow is imported
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(cpus)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(cpus, 2)))
    except RuntimeError:
        pass  # already set by an earlier trial in this reused worker
    gpus.limit_memory(tf, gpu_share)
    return tf


# Hyperparameters added after sweeps were first saved: left out of the seed while at their
# defaults, so a trial of such a sweep, resumed, keeps the seed (and shuffles) it started with.
_SEED_SKIPS_DEFAULT = ("schedule", "warmup_epochs", "weight_decay", "label_smoothing", "unfreeze_blocks")


def _trial_seed(seed: int, trial_config) -> int:
    """From the sweep's seed and the configuration, so that a rerun trains every trial the same way."""
    shown = ", ".join(f"{f.name}={getattr(trial_config, f.name)!r}" for f in fields(trial_config)
                      if not (f.name in _SEED_SKIPS_DEFAULT and getattr(trial_config, f.name) == f.default))
    # repr((seed, trial_config)) as it read before those were added
    digest = hashlib.sha1(f"({seed!r}, TrialConfig({shown}))".encode()).hexdigest()
    return int(digest[:8], 16) % 2**31
