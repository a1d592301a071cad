"""The frozen-prefix cache: frozen layers give the same output in every epoch of every trial, so
it is computed once, kept on disk, and only the layers after it are trained.

The model is split at its frozen frontier: every tensor that a frozen layer produces and a
trainable layer consumes. With `unfreeze: 0` that is the pooled backbone output; with
`unfreeze: N` it is the activations at the deepest frozen layers, several tensors where the
boundary falls inside a residual block. The trained part is made of the very layers of the
whole model (shared, not copied), so the whole model's weights, and its checkpoint, are exactly
those of end-to-end training.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np
from filelock import FileLock

BATCH = 64
CHUNK = 8 * BATCH  # images per forward pass from the memory-mapped pixels, which may exceed memory


@dataclass(frozen=True)
class Split:
    """A model cut at its frozen frontier."""

    prefix: keras.Model  # raw pixels -> frontier tensors (preprocessing and frozen layers, inference mode)
    trained: keras.Model  # frontier tensors -> the model's output, sharing the whole model's layers
    boundary: tuple[str, ...]  # the frontier tensors by name: part of the cache key

    def inputs(self, features: list[np.ndarray], rows: np.ndarray):
        """What `trained` takes for these rows of the cached features (read into memory)."""
        selected = [f[rows] for f in features]
        return selected[0] if len(selected) == 1 else selected


def split_model(model: keras.Model) -> Split | None:
    """Split a model built by `model.build_model`; None when nothing before the head is frozen."""
    layer_names = [layer.name for layer in model.layers]
    if any(name.startswith("augment_") for name in layer_names):
        return None  # random augmentation makes every epoch's input different
    base = backbone_layer(model)
    frontier = _frontier(base)
    if any(_is_input(t) for t in frontier):
        return None  # a trainable layer reads the images themselves: nothing to cache
    after = model.layers[model.layers.index(base) + 1:]
    image = keras.Input(model.inputs[0].shape[1:], name="image")
    pixels = model.get_layer("preprocess")(image)
    if len(frontier) == 1 and frontier[0] is base.outputs[0]:
        # All frozen: the weightless pooling layer joins the prefix, so the cache holds vectors.
        pool, after = after[0], after[1:]
        prefix = keras.Model(image, pool(base(pixels, training=False)), name="prefix")
        inputs = [keras.Input(prefix.output.shape[1:], name="features")]
        x = inputs[0]
        boundary = (f"{base.name}:{pool.name}:{type(pool).__name__}",)
    else:
        one = len(frontier) == 1  # a single tensor, not a list of one: Keras treats them differently
        frozen = keras.Model(base.inputs[0], frontier[0] if one else frontier, name=f"{base.name}_frozen")
        live = keras.Model(frontier[0] if one else frontier, base.outputs[0], name=f"{base.name}_trained")
        prefix = keras.Model(image, frozen(pixels, training=False), name="prefix")
        inputs = [keras.Input(t.shape[1:], name=f"frontier_{i}") for i, t in enumerate(frontier)]
        x = live(inputs[0] if one else inputs, training=False)  # BatchNorm in inference mode, as in the whole model
        boundary = tuple(_tensor_name(t) for t in frontier)
    for layer in after:  # the head is a chain of single-input layers
        x = layer(x)
    trained = keras.Model(inputs[0] if len(inputs) == 1 else inputs, x, name="trained")
    return Split(prefix=prefix, trained=trained, boundary=boundary)


def cache_key(*, backbone: str, weights: str, cut: str, boundary: tuple[str, ...], image_size: int,
              preprocess: str, fingerprint: str) -> str:
    """Changes whenever any input of the frozen computation changes.

    One entry holds every image of the data set, so the split is not part of the key: the same
    features serve training, validation and test.
    """
    if weights not in ("imagenet", "none") and Path(weights).is_file():
        stat = Path(weights).stat()
        weights = f"{Path(weights).name}:{stat.st_size}:{stat.st_mtime_ns}"
    parts = {"backbone": backbone, "weights": weights, "cut": cut, "boundary": list(boundary),
             "image_size": image_size, "preprocess": preprocess, "data": fingerprint, "keras": keras.__version__}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def frozen_features(prefix: keras.Model, pixels: np.ndarray, cache_dir: Path, key: str,
                    progress: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
    """The prefix's outputs for every image, memory-mapped from the cache.

    Computed once: concurrent trials wait on a lock rather than compute the same entry twice,
    and the entry appears under its final name only when complete. `progress(done, total)` is
    called after each chunk of images.
    """
    folder = Path(cache_dir) / "features" / key
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if not folder.is_dir():
            tmp = folder.with_name(f"{key}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)  # left by a run that was killed mid-way
            tmp.mkdir()
            outputs = [np.lib.format.open_memmap(tmp / f"{i}.npy", mode="w+", dtype=np.float32,
                                                 shape=(len(pixels), *t.shape[1:]))
                       for i, t in enumerate(prefix.outputs)]
            for start in range(0, len(pixels), CHUNK):
                chunk = np.asarray(pixels[start:start + CHUNK], np.float32)
                results = prefix.predict(chunk, batch_size=BATCH, verbose=0)
                for out, result in zip(outputs, results if isinstance(results, list) else [results]):
                    out[start:start + len(chunk)] = result
                if progress:
                    progress(start + len(chunk), len(pixels))
            for out in outputs:
                out.flush()
            del outputs
            os.replace(tmp, folder)
    count = len(list(folder.glob("*.npy")))
    return [np.load(folder / f"{i}.npy", mmap_mode="r") for i in range(count)]


def backbone_layer(model) -> keras.Model:
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def _frontier(base: keras.Model) -> list:
    """Tensors of `base` that no trainable weight influences but a layer that one influences reads.

    A tensor is live when the layer producing it has trainable weights or reads a live tensor.
    The frontier is every non-live tensor read by a live layer; with nothing live, the outputs.
    """
    live: dict[int, bool] = {}

    def is_live(tensor) -> bool:
        if id(tensor) not in live:
            node = _node(tensor)
            live[id(tensor)] = not node.is_input and (
                bool(node.operation.trainable_weights) or any(is_live(t) for t in node.input_tensors)
            )
        return live[id(tensor)]

    frontier: dict[int, object] = {}
    visited: set[int] = set()
    stack = [t for t in base.outputs if is_live(t)]
    if not stack:
        return list(base.outputs)
    while stack:
        tensor = stack.pop()
        if id(tensor) in visited:
            continue
        visited.add(id(tensor))
        for parent in _node(tensor).input_tensors:
            if is_live(parent):
                stack.append(parent)
            else:
                frontier.setdefault(id(parent), parent)
    return sorted(frontier.values(), key=_tensor_name)  # a stable order: the cache files are numbered


def _node(tensor):
    operation, node_index, _ = tensor._keras_history
    return operation._inbound_nodes[node_index]


def _is_input(tensor) -> bool:
    return _node(tensor).is_input


def _tensor_name(tensor) -> str:
    operation, node_index, tensor_index = tensor._keras_history
    return f"{operation.name}:{node_index}:{tensor_index}"
