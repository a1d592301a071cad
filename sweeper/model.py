"""The model builder: backbone (cut, partly unfrozen) plus head, compiled for the task.

The model takes raw RGB images with values 0-255 and does its own augmentation and
preprocessing, so the exported model needs nothing but pixels. This module imports Keras:
the driver never imports it, only trials, export and tests do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import keras
import numpy as np

from . import metrics, weight_files
from .backbones import build_backbone, get_backbone, hub_scaling
from .errors import SweeperError
from .hyperparameters import CONFIG_KEYS, DEFAULTS, FULL
from .space import decode_units


@dataclass(frozen=True)
class TrialConfig:
    """One point of the search space, as the trial receives it."""

    backbone: str
    cut: str = DEFAULTS["cut"]
    unfreeze: int = DEFAULTS["unfreeze"]
    head_pooling: str = DEFAULTS["head_pooling"]
    head_units: tuple[int, ...] = DEFAULTS["head_units"]
    head_dropout: float = DEFAULTS["head_dropout"]
    optimizer: str = DEFAULTS["optimizer"]
    learning_rate: float = DEFAULTS["learning_rate"]
    batch_size: int = DEFAULTS["batch_size"]
    augment: bool = DEFAULTS["augment"]
    image_size: int = DEFAULTS["image_size"]
    schedule: str = DEFAULTS["schedule"]
    warmup_epochs: int = DEFAULTS["warmup_epochs"]
    weight_decay: float = DEFAULTS["weight_decay"]
    label_smoothing: float = DEFAULTS["label_smoothing"]
    unfreeze_blocks: int = DEFAULTS["unfreeze_blocks"]

    @classmethod
    def from_tune(cls, config: dict) -> TrialConfig:
        values = {k: config[k] for k in CONFIG_KEYS if k in config}
        if isinstance(values.get("head_units"), str):
            values["head_units"] = decode_units(values["head_units"])
        return cls(**values)


def build_trial_model(
    config: TrialConfig, *, task: str, n_classes: int, weights: str, weights_dir=None, target_stats=None
):
    """Resolve the weights ("imagenet" or "none") the way the design says, then build the model.

    Returns the model and the weights it was built from (a file, "imagenet", or None for random).
    Weights no searched folder holds are downloaded by Keras into its cache first (usually done
    before the sweep started; this is a node that lacks them); a failed download is one line that
    says where sweeper looked. Errors of the build itself pass through as they are.
    """
    entry = get_backbone(config.backbone)
    resolved = weight_files.resolve(entry, config.image_size, weights, weights_dir)
    if resolved == "imagenet":
        failed = weight_files.fetch(entry, config.image_size)
        if failed:
            message = weight_files.missing_message(entry, config.image_size, weights_dir)
            raise SweeperError(f"{message}; the download failed too: {failed}")
        resolved = weight_files.resolve(entry, config.image_size, weights, weights_dir)  # now in Keras' cache
    model = build_model(config, task=task, n_classes=n_classes, weights=resolved, target_stats=target_stats)
    return model, resolved


def output_units(task: str, n_classes: int) -> int:
    return 1 if task == "regression" or n_classes == 2 else n_classes


def build_model(config: TrialConfig, *, task: str, n_classes: int, weights, target_stats=None):
    """The whole trainable model. `weights` is what `weight_files.resolve` returned (path, "imagenet" or None).

    For regression, `target_stats` = (mean, std) of the training targets: the output layer predicts
    standardised targets and a fixed rescaling maps them back, so every learning rate starts from
    the mean instead of from zero.
    """
    entry = get_backbone(config.backbone)
    base = build_backbone(entry, config.image_size, weights)
    if config.cut not in (FULL, entry.output_layer):
        base = keras.Model(base.inputs, base.get_layer(config.cut).output, name=f"{base.name}_to_{config.cut}")
    # Random weights have nothing worth keeping: such a backbone is trained whole, BatchNorm included.
    from_scratch = weights is None
    if from_scratch:
        set_trainable(base, None)
    elif config.unfreeze_blocks:
        set_trainable_blocks(base, entry, config.unfreeze_blocks)
    else:
        set_trainable(base, config.unfreeze)

    inputs = keras.Input((config.image_size, config.image_size, 3), name="image")
    x = inputs
    if config.augment:
        x = keras.layers.RandomFlip("horizontal", name="augment_flip")(x)
        x = keras.layers.RandomRotation(0.1, name="augment_rotate")(x)
        x = keras.layers.RandomZoom(0.1, name="augment_zoom")(x)
    scaling = dict(zip(("scale", "offset"), hub_scaling(entry.hub))) if entry.hub else {}
    x = Preprocess(entry.preprocess, **scaling, name="preprocess")(x)
    # training=False keeps BatchNorm in inference mode even where a pretrained backbone is fine-tuned.
    x = base(x, training=None if from_scratch else False)
    # A transformer's output is a sequence of tokens, (batch, tokens, width): pooled over the tokens.
    average = keras.layers.GlobalAveragePooling1D if len(x.shape) == 3 else keras.layers.GlobalAveragePooling2D
    x = average(name="pool")(x) if config.head_pooling == "avg" else keras.layers.Flatten(name="pool")(x)
    x = keras.layers.Dropout(config.head_dropout, name="dropout_0")(x)
    for i, units in enumerate(config.head_units, start=1):
        x = keras.layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
        x = keras.layers.Dropout(config.head_dropout, name=f"dropout_{i}")(x)
    n_out = output_units(task, n_classes)
    activation = None if task == "regression" else ("sigmoid" if n_out == 1 else "softmax")
    # float32 whatever the model's precision (precision.py): the softmax and the loss lose nothing.
    outputs = keras.layers.Dense(n_out, activation=activation, name="output", dtype="float32")(x)
    if task == "regression":
        mean, std = target_stats or (0.0, 1.0)
        outputs = keras.layers.Rescaling(scale=float(std) or 1.0, offset=float(mean), name="target_scale",
                                         dtype="float32")(outputs)
    # Keras names take no "/", which a KerasHub preset folder has (hub:models/my_preset).
    model = keras.Model(inputs, outputs, name="sweeper_" + re.sub(r"[^A-Za-z0-9_.-]", "_", config.backbone))
    compile_model(model, config, task=task, n_classes=n_classes)
    return model


def compile_model(model, config: TrialConfig, *, task: str, n_classes: int) -> None:
    """The task's loss and metrics, and the configuration's optimizer (a new one per call)."""
    n_out = output_units(task, n_classes)
    model.compile(
        optimizer=make_optimizer(config.optimizer, config.learning_rate, config.weight_decay),
        loss=_loss(task, n_out, config.label_smoothing),
        metrics=metrics.for_task(task, n_classes),
    )


def set_trainable(base, unfreeze: int | None) -> None:
    """Train the top `unfreeze` layers of the kept backbone, BatchNorm excepted; None trains every layer."""
    base.trainable = True
    if unfreeze is None:
        return
    layers = [layer for layer in base.layers if not isinstance(layer, keras.layers.InputLayer)]
    first_trainable = max(len(layers) - unfreeze, 0)
    for i, layer in enumerate(layers):
        layer.trainable = i >= first_trainable and not isinstance(layer, keras.layers.BatchNormalization)


def set_trainable_blocks(base, entry, blocks: int) -> None:
    """Train the top `blocks` blocks of the kept backbone whole, BatchNorm excepted (`unfreeze: {blocks: N}`).

    The blocks come from the entry's layer names (`Backbone.blocks`). The trained part starts where
    the layers before it hand it only whole blocks' outputs, never a tensor from inside a block: a
    residual block's shortcut trains with the rest of it.
    """
    operations = [op for op in base.operations if not isinstance(op, keras.layers.InputLayer)]
    first = _first_trained(operations, block_starts([op.name for op in operations], entry), blocks)
    base.trainable = True
    for i, op in enumerate(operations):
        if isinstance(op, keras.layers.Layer):
            op.trainable = i >= first and not isinstance(op, keras.layers.BatchNormalization)


def block_starts(names: list[str], entry) -> list[int]:
    """Where each block begins, in the backbone's operations (topological order), from their names."""
    pattern = re.compile(entry.blocks)
    if entry.blocks_end:  # each match is a block's last layer; what follows it starts the next block
        ends = [i for i, name in enumerate(names) if pattern.fullmatch(name)]
        return [0, *(i + 1 for i in ends[:-1])]  # what follows the last one belongs to the last block
    starts, current = [0], None
    for i, name in enumerate(names):
        match = pattern.match(name)
        if match and match.group(1) != current:  # names it does not match stay in the block before them
            if current is not None:
                starts.append(i)
            current = match.group(1)
    return starts


def _first_trained(operations, starts: list[int], blocks: int) -> int:
    """The first trained operation for the top `blocks` blocks: the start of the first of them, moved
    earlier while the trained part would read a tensor that is not a block's output (a shortcut
    layer listed before the block's first named layer)."""
    from .private_apis import inbound_node, operation_inputs

    if blocks >= len(starts):
        return 0
    position = {id(op): i for i, op in enumerate(operations)}
    outputs = {i - 1 for i in starts if i > 0}  # the last operation of each block
    reads = []  # the positions of the operations each operation reads (-1: the backbone's input)
    for op in operations:
        reads.append([position.get(id(inbound_node(t).operation), -1) for t in operation_inputs(op)])
    first = starts[-blocks]
    while first > 0 and any(0 <= r < first and r not in outputs for i in range(first, len(operations)) for r in reads[i]):
        first -= 1
    return first


def make_optimizer(name: str, learning_rate: float, weight_decay: float = 0.0):
    """One of `hyperparameters.OPTIMIZERS`. Keras applies `weight_decay` decoupled from the gradient
    (w -= learning_rate * weight_decay * w each step), so `adam` with it is AdamW."""
    decay = {"weight_decay": weight_decay} if weight_decay else {}
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, **decay)
    cls = {"rmsprop": keras.optimizers.RMSprop, "adam": keras.optimizers.Adam, "adagrad": keras.optimizers.Adagrad}[name]
    return cls(learning_rate, **decay)


def _loss(task: str, n_out: int, label_smoothing: float = 0.0):
    if task == "regression":
        return "mean_squared_error"
    if n_out == 1:
        return keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing) if label_smoothing else "binary_crossentropy"
    return SmoothedSparseCrossentropy(label_smoothing) if label_smoothing else "sparse_categorical_crossentropy"


@keras.saving.register_keras_serializable(package="sweeper")
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Categorical cross-entropy with label smoothing on integer labels (Keras' sparse loss has no
    smoothing, and its smoothed loss wants one-hot labels)."""

    def __init__(self, label_smoothing: float = 0.0, name: str = "smoothed_sparse_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        ops = keras.ops
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        one_hot = ops.one_hot(labels, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(one_hot, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def count_params(model) -> dict[str, float]:
    total = int(model.count_params())
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    return {"params": total, "trainable_params": trainable, "size_mb": round(total * 4 / 2**20, 3)}


@keras.saving.register_keras_serializable(package="sweeper")
class Preprocess(keras.layers.Layer):
    """Scales 0-255 RGB the way the backbone was trained (keras.applications' modes; "affine" is
    x * scale + offset, each a number or one per channel, as a KerasHub image converter does)."""

    def __init__(self, mode: str, scale=None, offset=None, **kwargs):
        super().__init__(**kwargs)
        self.mode, self.scale, self.offset = mode, scale, offset

    def call(self, x):
        ops = keras.ops
        x = ops.cast(x, "float32")
        if self.mode == "affine":
            x = x * ops.array(self.scale, "float32") if self.scale is not None else x
            return x + ops.array(self.offset, "float32") if self.offset is not None else x
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "caffe":
            return ops.flip(x, axis=-1) - ops.array([103.939, 116.779, 123.68])
        if self.mode == "torch":
            return (x / 255.0 - ops.array([0.485, 0.456, 0.406])) / ops.array([0.229, 0.224, 0.225])
        return x

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "scale": self.scale, "offset": self.offset}
