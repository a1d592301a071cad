"""CPU latency per image, measured once per architecture and shared by every trial that builds it.

Trials that differ only in how they train (learning rate, optimizer, batch size, dropout,
unfreeze) run the same network at inference, so they share one measurement: the leaderboard
then ranks architectures by cost instead of by how busy the machine was when each trial ended.
Measurements live in the cache folder, one small file each, keyed by machine and thread count
as well, because latency is a property of the hardware too.
"""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from .files import write_atomic


def architecture_key(*, backbone: str, cut: str, head_pooling: str, head_units, image_size: int, task: str,
                     outputs: int, threads: int) -> str:
    """What decides the inference graph and where it runs; nothing about how it was trained."""
    fields = [backbone, cut, head_pooling, list(head_units), image_size, task, outputs, threads, socket.gethostname()]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:16]


def measured_once(cache_dir: Path, key: str, measure: Callable[[], float]) -> float:
    """The latency stored for `key`, or `measure()`'s, stored for the next trial; the lock makes
    concurrent trials of one architecture wait for a single measurement instead of racing."""
    folder = Path(cache_dir) / "latency"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.json"
    with FileLock(str(path) + ".lock"):
        if path.is_file():
            return json.loads(path.read_text())["latency_ms"]
        value = measure()
        write_atomic(path, json.dumps({"latency_ms": value}))
        return value


def backbone_latency_ms(entry, image_size: int) -> float:
    """`sweeper backbones --measure`: the CPU latency of one image through the entry with average
    pooling (batch 1, on the threads the caller gave TensorFlow), from random weights, which do
    not change the time. Imports Keras."""
    import keras

    from .backbones import build_backbone
    from .model import Preprocess, inference_latency_ms

    image = keras.Input((image_size, image_size, 3))
    features = build_backbone(entry, image_size, None)(Preprocess(entry.preprocess)(image))
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    try:
        return inference_latency_ms(keras.Model(image, pooled))
    finally:
        keras.backend.clear_session()  # the next entry starts from nothing held

