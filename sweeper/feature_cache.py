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
import math
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from filelock import FileLock

from . import cache, precision
from .private_apis import inbound_node, keras_history
from .results import alive

BATCH = 64  # images per forward pass on CPUs
# Images per claim: small enough that concurrent trials share an entry evenly. On a GPU a claim
# is one forward pass: large batches keep it busy.
CHUNK = 4 * BATCH


@dataclass(frozen=True)
class Split:
    """A model cut at its frozen frontier."""

    prefix: keras.Model  # raw pixels -> frontier tensors (preprocessing and frozen layers, inference mode)
    trained: keras.Model  # frontier tensors -> the model's output, sharing the whole model's layers
    boundary: tuple[str, ...]  # the frontier tensors by name: part of the cache key

    def inputs(self, features: list[np.ndarray], rows: np.ndarray):
        """What `trained` takes for these rows of the cached features: read from the cache's files
        as the training loop needs them (`training.Rows`), not copied into memory here."""
        from .training import Rows

        selected = [Rows(f, rows) for f in features]
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


def frozen_entries(backbone: str, cut: str, image_size: int, unfreezes, poolings,
                   spatial_dtype: str = "float32") -> list[tuple[tuple[int, int], int]]:
    """((unfreeze, unfreeze_blocks), bytes per image) of each distinct entry these configurations
    cache, for `unfreezes` (unfreeze, unfreeze_blocks) pairs: the backbone is built without weights
    and split as `split_model` splits it."""
    from .backbones import build_backbone, get_backbone
    from .hyperparameters import FULL
    from .model import set_trainable, set_trainable_blocks

    entry = get_backbone(backbone)
    base = build_backbone(entry, image_size, None)
    if cut not in (FULL, entry.output_layer):
        base = keras.Model(base.inputs, base.get_layer(cut).output)
    found: dict[tuple, tuple[int, int]] = {}
    for unfreeze in unfreezes:
        layers, blocks = unfreeze
        set_trainable_blocks(base, entry, blocks) if blocks else set_trainable(base, layers)
        frontier = _frontier(base)
        if any(_is_input(t) for t in frontier):
            continue  # trains on the images themselves: nothing cached
        if len(frontier) == 1 and frontier[0] is base.outputs[0]:  # all frozen: the pooled output
            shape = base.outputs[0].shape[1:]  # (height, width, channels), or (tokens, width)
            for pooling in poolings:
                found.setdefault((pooling,), (tuple(unfreeze), 4 * (shape[-1] if pooling == "avg" else math.prod(shape))))
        else:
            size = sum(np.dtype(spatial_dtype if len(t.shape) > 2 else np.float32).itemsize * math.prod(t.shape[1:])
                       for t in frontier)
            found.setdefault(tuple(_tensor_name(t) for t in frontier), (tuple(unfreeze), size))
    keras.backend.clear_session()
    return list(found.values())


def cache_key(*, backbone: str, weights: str, cut: str, boundary: tuple[str, ...], image_size: int,
              preprocess: str, fingerprint: str, spatial_dtype: str = "float32",
              computed_in: str = precision.FLOAT32) -> str:
    """Changes whenever any input of the frozen computation changes.

    One entry holds every image of the data set, so the split is not part of the key: the same
    features serve training, validation and test.
    """
    if weights not in ("imagenet", "none") and Path(weights).is_file():
        stat = Path(weights).stat()
        weights = f"{Path(weights).name}:{stat.st_size}:{stat.st_mtime_ns}"
    parts = {"backbone": backbone, "weights": weights, "cut": cut, "boundary": list(boundary),
             "image_size": image_size, "preprocess": preprocess, "data": fingerprint, "keras": keras.__version__}
    if spatial_dtype != "float32":  # keys of float32 entries are as they were before float16 existed
        parts["spatial_dtype"] = spatial_dtype
    if computed_in != precision.FLOAT32:  # budget.precision: the features differ in their last digits
        parts["precision"] = computed_in
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def key_for(model: keras.Model, split: Split, *, backbone: str, cut: str, image_size: int, weights_used,
            fingerprint: str, spatial_dtype: str) -> str:
    """The cache key of a model built by `model.build_model` and split by `split_model`: what trials
    and triage (which computes the features of `unfreeze: 0` trials ahead of them) both use."""
    return cache_key(backbone=backbone, weights=str(weights_used), cut=cut, boundary=split.boundary,
                     image_size=image_size, preprocess=model.get_layer("preprocess").mode, fingerprint=fingerprint,
                     spatial_dtype=spatial_dtype, computed_in=precision.of_model(split.prefix))


def frozen_features(prefix: keras.Model, pixels: np.ndarray, cache_dir: Path, key: str,
                    progress: Callable[[int, int], None] | None = None, again: bool = True,
                    about: dict | None = None, spatial_dtype: str = "float32") -> list[np.ndarray]:
    """The prefix's outputs for every image, memory-mapped from the cache; `about` (backbone, cut,
    ...) goes into the entry's manifest, for `sweeper cache list`. Spatial outputs (activations
    inside the backbone, not pooled vectors) are stored as `spatial_dtype`: part of the key.

    Computed once, and shared: trials that need the same entry at the same time split its chunks
    between them (each claims a chunk with a file only one can create), so every core works on
    it instead of one trial computing while the others wait. The entry appears under its final
    name only when complete. `progress(done, total)` is called as chunks finish.
    """
    folder = Path(cache_dir) / "features" / key
    parts = folder.with_name(f"{key}.parts")
    chunks = range(math.ceil(len(pixels) / CHUNK))
    while not folder.is_dir():
        parts.mkdir(parents=True, exist_ok=True)
        pending = [i for i in chunks if not (parts / f"{i}.done").exists()]
        if not pending:
            with FileLock(str(folder) + ".lock"):
                if not folder.is_dir():
                    cache.write_manifest(folder, {"kind": "features", "images": len(pixels), **(about or {})})
                    _assemble(parts, len(chunks), folder)
            break
        computed = False
        for i in pending:
            if folder.is_dir():
                break  # published by another trial meanwhile
            if _claim(parts, i):
                _compute_chunk(prefix, pixels, parts, i, spatial_dtype)
                computed = True
                if progress:
                    done = sum((parts / f"{j}.done").exists() for j in chunks)
                    progress(min(done * CHUNK, len(pixels)), len(pixels))
        if not computed:
            time.sleep(0.05)  # the pending chunks are being computed by other trials
    shutil.rmtree(parts, ignore_errors=True)  # normally gone already; a late caller may have recreated it
    with FileLock(str(folder) + ".lock"):  # `sweeper cache prune` removes entries under it
        features = _open_entry(folder, len(pixels))
        if features is not None:
            cache.hold(folder)
        elif again:  # a damaged entry (truncated, another size), or pruned a moment ago: computed anew, once
            shutil.rmtree(folder, ignore_errors=True)
    if features is None and again:
        return frozen_features(prefix, pixels, cache_dir, key, progress, again=False, about=about,
                               spatial_dtype=spatial_dtype)
    prefix.predict_function = None  # its traced graph is not needed again: do not keep it in memory
    if features is None:
        raise RuntimeError(f"{folder}: the feature cache entry is damaged again after being computed anew")
    return features


def _open_entry(folder: Path, rows: int) -> list[np.ndarray] | None:
    """An entry's arrays, memory-mapped; None when any is unreadable or has not `rows` rows."""
    try:
        count = len(list(folder.glob("*.npy")))
        arrays = [np.load(folder / f"{i}.npy", mmap_mode="r") for i in range(count)]
    except (OSError, ValueError):
        return None
    return arrays if arrays and all(len(a) == rows for a in arrays) else None


def _claim(parts: Path, chunk: int) -> bool:
    """True for the one caller that gets to compute this chunk (or takes over an abandoned claim)."""
    if (parts / f"{chunk}.done").exists():
        return False
    claim = parts / f"{chunk}.claim"
    try:
        fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileNotFoundError:
        return False  # the entry was just published and its parts removed
    except FileExistsError:
        if _abandoned(claim):
            claim.unlink(missing_ok=True)
            return _claim(parts, chunk)
        return False
    with os.fdopen(fd, "w") as file:
        file.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    return True


CLAIM_STALE_S = 600.0  # a chunk takes seconds (at most ~30 s measured, InceptionV3 at 299 px on one core)


def _abandoned(claim: Path) -> bool:
    """Whether a claim's trial is gone: dead on this host, or silent for CLAIM_STALE_S (empty: killed
    as it claimed; another node's in a shared cache; a pid reused by another process)."""
    try:
        age = time.time() - claim.stat().st_mtime
        text = claim.read_text()
    except OSError:
        return False
    try:
        owner = json.loads(text) if text else {}
    except ValueError:
        owner = {}
    if isinstance(owner, int):  # claims written before the host was recorded
        owner = {"host": socket.gethostname(), "pid": owner}
    here = isinstance(owner, dict) and owner.get("host") == socket.gethostname()
    if here and isinstance(owner.get("pid"), int) and not alive(owner["pid"]):
        return True
    return age > CLAIM_STALE_S


def _compute_chunk(prefix: keras.Model, pixels: np.ndarray, parts: Path, chunk: int, spatial_dtype: str) -> None:
    rows = slice(chunk * CHUNK, (chunk + 1) * CHUNK)
    import tensorflow as tf

    batch = CHUNK if tf.config.list_logical_devices("GPU") else BATCH
    results = prefix.predict(np.asarray(pixels[rows], np.float32), batch_size=batch, verbose=0)
    for j, result in enumerate(results if isinstance(results, list) else [results]):
        # Pooled vectors as float32 whatever the model computed in; activations as asked.
        result = result.astype(spatial_dtype if result.ndim > 2 else np.float32)
        # A unique temp name: after a takeover, two callers may compute the same chunk (same values).
        tmp = parts / f"{chunk}.{j}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.npy"
        np.save(tmp, result)
        os.replace(tmp, parts / f"{chunk}.{j}.npy")
    (parts / f"{chunk}.done").touch()


def _assemble(parts: Path, n_chunks: int, folder: Path) -> None:
    """Concatenate the chunks into one file per prefix output, then publish it atomically."""
    tmp = folder.with_name(f"{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # left by a run that was killed mid-way
    tmp.mkdir()
    n_outputs = len(list(parts.glob("0.*.npy")))
    for j in range(n_outputs):
        pieces = [np.load(parts / f"{i}.{j}.npy", mmap_mode="r") for i in range(n_chunks)]
        out = np.lib.format.open_memmap(tmp / f"{j}.npy", mode="w+", dtype=pieces[0].dtype,
                                        shape=(sum(len(p) for p in pieces), *pieces[0].shape[1:]))
        start = 0
        for piece in pieces:
            out[start:start + len(piece)] = piece
            start += len(piece)
        out.flush()
        del out
    os.replace(tmp, folder)
    shutil.rmtree(parts, ignore_errors=True)


def backbone_layer(model) -> keras.Model:
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def _frontier(base: keras.Model) -> list:
    """Tensors of `base` that no trainable weight influences but a layer that one influences reads.

    A tensor is live when the layer producing it has trainable weights or reads a live tensor.
    The frontier is every non-live tensor read by a live layer; with nothing live, the outputs.
    """
    live: dict[int, bool] = {}

    def is_live(tensor) -> bool:
        # Depth first without recursion: a chain of a thousand layers (EfficientNetB4 and up) is
        # deeper than Python's recursion limit.
        stack = [tensor]
        while stack:
            t = stack[-1]
            if id(t) in live:
                stack.pop()
                continue
            node = inbound_node(t)
            # an operation that is not a layer (ConvNeXt's residual add) has no weights
            if node.is_input or getattr(node.operation, "trainable_weights", None):
                live[id(t)] = not node.is_input
            elif unknown := [p for p in node.input_tensors if id(p) not in live]:
                stack.extend(unknown)
                continue
            else:
                live[id(t)] = any(live[id(p)] for p in node.input_tensors)
            stack.pop()
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
        for parent in inbound_node(tensor).input_tensors:
            if is_live(parent):
                stack.append(parent)
            else:
                frontier.setdefault(id(parent), parent)
    return sorted(frontier.values(), key=_tensor_name)  # a stable order: the cache files are numbered


def _is_input(tensor) -> bool:
    return inbound_node(tensor).is_input


def _tensor_name(tensor) -> str:
    operation, node_index, tensor_index = keras_history(tensor)
    return f"{operation.name}:{node_index}:{tensor_index}"
