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


def run_trial(config: dict, context: TrialContext) -> None:
    """The Ray Tune function trainable."""
    from ray import tune

    init_tensorflow(context.cpus)
    import keras

    from . import checkpoint, feature_cache, images
    from .model import TrialConfig, build_trial_model, compile_model, count_params

    trial_config = TrialConfig.from_tune(config)
    keras.backend.clear_session()  # workers are reused: drop the previous trial's graph
    keras.utils.set_random_seed(_trial_seed(context.seed, trial_config))

    index, pixels = images.load_images(context.index, trial_config.image_size, Path(context.cache_dir))
    train_idx, val_idx = index.indices("train"), index.indices("validation")
    x_train, y_train = pixels[train_idx], index.targets[train_idx]
    x_val, y_val = pixels[val_idx], index.targets[val_idx]

    target_stats = (float(y_train.mean()), float(y_train.std())) if context.task == "regression" else None
    n_classes = len(index.classes)
    model, weights_used = build_trial_model(
        trial_config, task=context.task, n_classes=n_classes,
        weights=context.weights, weights_dir=context.weights_dir, target_stats=target_stats,
    )
    sizes = count_params(model)

    # A frozen pretrained backbone: train the head on cached features. `model` shares the head's
    # layers, so it holds the trained weights and is what the checkpoint saves.
    trained = model
    if weights_used is not None and trial_config.unfreeze == 0 and not trial_config.augment:
        key = feature_cache.cache_key(
            backbone=trial_config.backbone, weights=weights_used, cut=trial_config.cut,
            image_size=trial_config.image_size, fingerprint=index.fingerprint,
        )
        features = feature_cache.frozen_features(model, pixels, Path(context.cache_dir), key)
        x_train, x_val = features[train_idx], features[val_idx]
        trained = feature_cache.head_model(model)
        compile_model(trained, trial_config, task=context.task, n_classes=n_classes)

    better = (lambda a, b: a > b) if context.mode == "max" else (lambda a, b: a < b)
    best, best_epoch = None, 0
    for epoch in range(1, context.max_epochs + 1):
        history = trained.fit(
            x_train, y_train, batch_size=trial_config.batch_size, epochs=1, shuffle=True, verbose=0,
            validation_data=(x_val, y_val), validation_batch_size=max(trial_config.batch_size, 64),
        )
        metrics = {key: float(values[-1]) for key, values in history.history.items()}
        if not math.isfinite(metrics["loss"]):
            raise FloatingPointError(f"training diverged: loss is {metrics['loss']} at epoch {epoch}")
        value = metrics[context.objective]
        improved = best is None or better(value, best)
        if improved:
            best, best_epoch = value, epoch
        report = {**metrics, "epoch": epoch, f"best_{context.objective}": best, "best_epoch": best_epoch, **sizes}
        with tempfile.TemporaryDirectory(prefix="sweeper-ckpt-") as folder:
            kept = None
            if improved:  # Tune copies the folder into the experiment before report() returns
                checkpoint.save(Path(folder), model, trial_config, epoch, metrics, target_stats)
                kept = tune.Checkpoint.from_directory(folder)
            tune.report(report, checkpoint=kept)


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
