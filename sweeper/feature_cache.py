"""The frozen-prefix cache: a frozen backbone gives the same features in every epoch of every
trial, so they are computed once, kept on disk, and only the head is trained on them.

The head trained here is made of the very layers of the whole model (shared, not copied), so
the whole model's weights, and its checkpoint, are exactly those of end-to-end training.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import keras
import numpy as np
from filelock import FileLock

from .data import DatasetIndex

BATCH = 64


def cache_key(*, backbone: str, weights: str, cut: str, image_size: int, fingerprint: str) -> str:
    """Changes whenever any input of the frozen computation changes."""
    if weights not in ("imagenet", "none") and Path(weights).is_file():
        stat = Path(weights).stat()
        weights = f"{Path(weights).name}:{stat.st_size}:{stat.st_mtime_ns}"
    parts = {"backbone": backbone, "weights": weights, "cut": cut, "image_size": image_size,
             "data": fingerprint, "keras": keras.__version__}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def backbone_layer(model) -> keras.Model:
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def frozen_features(model, pixels: np.ndarray, cache_dir: Path, key: str) -> np.ndarray:
    """The backbone's output for every image, memory-mapped from the cache (computed once, under a lock)."""
    path = Path(cache_dir) / "features" / f"{key}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            prefix = prefix_model(model)
            out = np.lib.format.open_memmap(path.with_suffix(".tmp.npy"), mode="w+", dtype=np.float32,
                                            shape=(len(pixels), *prefix.output.shape[1:]))
            for start in range(0, len(pixels), 8 * BATCH):  # in chunks: the pixels may be larger than memory
                chunk = np.asarray(pixels[start:start + 8 * BATCH], np.float32)
                out[start:start + len(chunk)] = prefix.predict(chunk, batch_size=BATCH, verbose=0)
            out.flush()
            del out
            os.replace(path.with_suffix(".tmp.npy"), path)
    return np.load(path, mmap_mode="r")


def prefix_model(model) -> keras.Model:
    """Preprocessing plus the frozen backbone, in inference mode: what the cache holds."""
    base = backbone_layer(model)
    inputs = keras.Input(model.inputs[0].shape[1:], name="image")
    return keras.Model(inputs, base(model.get_layer("preprocess")(inputs), training=False), name="prefix")


def head_model(model) -> keras.Model:
    """The layers after the backbone, as a model of their own that shares their weights."""
    layers = model.layers
    after = layers[layers.index(backbone_layer(model)) + 1:]
    inputs = keras.Input(backbone_layer(model).output.shape[1:], name="features")
    x = inputs
    for layer in after:
        x = layer(x)
    return keras.Model(inputs, x, name="head")
