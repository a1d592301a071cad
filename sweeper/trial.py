"""One trial: build the model, train it epoch by epoch, report every epoch to Ray Tune.

The checkpoint sent with a report is always the best epoch so far, so the checkpoint Tune
keeps for a trial is its best epoch, not its last. TensorFlow is imported inside the trial
function, never when the driver imports this module.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .data import DatasetIndex

@dataclass(frozen=True)
class TrialContext:
    """What every trial shares; put in Ray's object store once by `tune.with_parameters`."""

    index: DatasetIndex
    task: str
    objective: str
    mode: str
    max_epochs: int
    weights: str  # "imagenet" or "none"
    weights_dir: str | None
    cache_dir: str
    cpus: int
    seed: int
    feature_cache: bool = True  # False trains every trial on images, for comparison
    progress: object = None  # a `progress.ProgressBoard` actor, shown by the driver


def run_trial(config: dict, context: TrialContext) -> None:
    """The Ray Tune function trainable."""
    init_tensorflow(context.cpus)
    import keras

    from . import feature_cache, images
    from .model import TrialConfig, build_trial_model, compile_model, count_params

    trial_config = TrialConfig.from_tune(config)
    keras.backend.clear_session(free_memory=True)  # workers are reused: drop the previous trial's graph
    keras.utils.set_random_seed(_trial_seed(context.seed, trial_config))

    index, pixels = images.load_images(context.index, trial_config.image_size, Path(context.cache_dir))
    train_idx, val_idx = index.indices("train"), index.indices("validation")
    y_train, y_val = index.targets[train_idx], index.targets[val_idx]

    target_stats = (float(y_train.mean()), float(y_train.std())) if context.task == "regression" else None
    n_classes = len(index.classes)
    model, weights_used = build_trial_model(
        trial_config, task=context.task, n_classes=n_classes,
        weights=context.weights, weights_dir=context.weights_dir, target_stats=target_stats,
    )
    sizes = count_params(model)

    # Frozen layers: train what follows them on their cached output. `split.trained` shares the
    # model's layers, so `model` holds the trained weights and is what the checkpoint saves.
    split = feature_cache.split_model(model) if context.feature_cache else None
    if split is None:
        trained, x_train, x_val = model, pixels[train_idx], pixels[val_idx]
    else:
        key = feature_cache.cache_key(
            backbone=trial_config.backbone, weights=str(weights_used), cut=trial_config.cut,
            boundary=split.boundary, image_size=trial_config.image_size,
            preprocess=model.get_layer("preprocess").mode, fingerprint=index.fingerprint,
        )
        label = (f"frozen features: {trial_config.backbone} {trial_config.cut} unfreeze {trial_config.unfreeze} "
                 f"at {trial_config.image_size} px")
        features = feature_cache.frozen_features(
            split.prefix, pixels, Path(context.cache_dir), key, progress=_progress(context.progress, label)
        )
        trained = split.trained
        x_train, x_val = split.inputs(features, train_idx), split.inputs(features, val_idx)
        compile_model(trained, trial_config, task=context.task, n_classes=n_classes)

    # One `fit` for every epoch: data pipelines and compiled functions are made once per trial.
    trained.fit(
        x_train, y_train, batch_size=trial_config.batch_size, epochs=context.max_epochs, shuffle=True, verbose=0,
        validation_data=(x_val, y_val), validation_batch_size=max(trial_config.batch_size, 64),
        callbacks=[keras.callbacks.LambdaCallback(
            on_epoch_end=EpochReporter(model, trial_config, context, target_stats, sizes).on_epoch_end)],
    )


class EpochReporter:
    """Reports every epoch to Tune, with a checkpoint of the whole model whenever the objective improves."""

    def __init__(self, model, trial_config, context: TrialContext, target_stats, sizes: dict):
        self.model, self.trial_config, self.context = model, trial_config, context
        self.target_stats, self.sizes = target_stats, sizes
        self.best, self.best_epoch = None, 0

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        from ray import tune

        from . import checkpoint

        epoch += 1  # Keras counts from 0
        metrics = {key: float(value) for key, value in logs.items()}
        if not math.isfinite(metrics["loss"]):
            raise FloatingPointError(f"training diverged: loss is {metrics['loss']} at epoch {epoch}")
        objective = self.context.objective
        value = metrics[objective]
        improved = self.best is None or (value > self.best if self.context.mode == "max" else value < self.best)
        if improved:
            self.best, self.best_epoch = value, epoch
        report = {**metrics, "epoch": epoch, f"best_{objective}": self.best, "best_epoch": self.best_epoch,
                  **self.sizes}
        with tempfile.TemporaryDirectory(prefix="sweeper-ckpt-") as folder:
            kept = None
            if improved:  # Tune copies the folder into the experiment before report() returns
                checkpoint.save(Path(folder), self.model, self.trial_config, epoch, metrics, self.target_stats)
                kept = tune.Checkpoint.from_directory(folder)
            tune.report(report, checkpoint=kept)


def _progress(board, label: str):
    """A `progress(done, total)` that posts to the driver's progress board, if there is one."""
    if board is None:
        return None
    return lambda done, total: board.update.remote(label, done, total)


def init_tensorflow(cpus: int):
    """Import TF with thread pools sized to the trial's CPUs, so concurrent trials do not fight."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(cpus)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(cpus, 2)))
    except RuntimeError:
        pass  # already set by an earlier trial in this reused worker
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)  # lets fractional-GPU trials share one
        except RuntimeError:
            pass
    return tf


def _trial_seed(seed: int, trial_config) -> int:
    """From the sweep's seed and the configuration, so that a rerun trains every trial the same way."""
    digest = hashlib.sha1(repr((seed, trial_config)).encode()).hexdigest()
    return int(digest[:8], 16) % 2**31
