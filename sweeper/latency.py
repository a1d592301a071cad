"""CPU latency per image, measured once per architecture and shared by every trial that builds it.

Trials that differ only in how they train (learning rate, optimizer, batch size, dropout,
unfreeze) run the same network at inference, so they share one measurement: the leaderboard
then ranks architectures by cost instead of by how busy the machine was when each trial ended.
Measurements live in the cache folder, one small file each, keyed by machine, thread count and
the TensorFlow and Keras versions as well, because latency is a property of those too.

A measurement is a median with its spread (the interquartile range of the timed runs), taken
after warm-up runs. A round whose spread is a large share of its median was disturbed (another
process, the first allocations), so it is taken again, up to MAX_ROUNDS, and the round with the
lowest median stands: load only ever adds time. A single unchecked median once recorded
mobilenet_v2_0.35 at 7.40 ms, slower than mobilenet_v2_0.5 (3.5 ms), and later sweeps reused it.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
from filelock import FileLock

from .files import write_atomic

METHOD = 2  # how latency is measured; raised when that changes, so older figures are not reused
WARMUP = 5  # runs before the timed ones: tracing and first allocations are not latency
RUNS = 30
MAX_ROUNDS = 3
NOISY = 0.25  # a round whose interquartile range exceeds this share of its median is taken again


@dataclass(frozen=True)
class Latency:
    ms: float  # the median of the timed runs
    spread_ms: float  # their interquartile range
    runs: int
    rounds: int  # 1 unless a noisy round was taken again


def measure(time_runs: Callable[[], list[float]], max_rounds: int = MAX_ROUNDS) -> Latency:
    """Rounds of `time_runs()` (seconds per run) until one is quiet; the lowest median stands."""
    rounds = []
    for _ in range(max_rounds):
        times = np.asarray(time_runs(), dtype=np.float64) * 1000
        low, median, high = np.percentile(times, [25, 50, 75])
        rounds.append((float(median), float(high - low), len(times)))
        if high - low <= NOISY * median:
            break
    median, spread, runs = min(rounds)
    return Latency(ms=round(median, 3), spread_ms=round(spread, 3), runs=runs, rounds=len(rounds))


def architecture_key(*, backbone: str, cut: str, head_pooling: str, head_units, image_size: int, task: str,
                     outputs: int, threads: int) -> str:
    """What decides the inference graph and where it runs; nothing about how it was trained."""
    fields = [backbone, cut, head_pooling, list(head_units), image_size, task, outputs, threads, socket.gethostname(),
              _version("tensorflow-cpu") or _version("tensorflow"), _version("keras"), METHOD]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:16]


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def remembered(cache_dir: Path, key: str, kind: str, compute: Callable[[], dict]) -> dict:
    """`compute()`'s record of `kind` for the architecture `key`, computed once per cache folder: the
    lock makes concurrent trials of one architecture wait for a single measurement instead of racing.
    Kinds: "" (TensorFlow latency, a `Latency`), "tflite" (LiteRT latency), "sizes" (parameters)."""
    path = _record(cache_dir, key, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.is_file():
            return json.loads(path.read_text())
        value = compute()
        write_atomic(path, json.dumps(value))
        return value


def recorded(cache_dir: Path, key: str, kind: str = "") -> dict | None:
    """What `remembered` stored for the architecture, or None: read without a lock, as records are
    written whole (write_atomic) and never changed."""
    path = _record(cache_dir, key, kind)
    return json.loads(path.read_text()) if path.is_file() else None


def _record(cache_dir: Path, key: str, kind: str) -> Path:
    return Path(cache_dir) / "latency" / (f"{key}-{kind}.json" if kind else f"{key}.json")


def inference_latency(model):
    """The model's time for one image (batch 1, CPU) as `latency.measure` takes it: warm-up runs,
    then rounds of timed predictions. Returns a `latency.Latency`."""
    import tensorflow as tf

    predict = tf.function(lambda x: model(x, training=False))
    image = tf.zeros((1, *model.inputs[0].shape[1:]), tf.float32)
    for _ in range(WARMUP):
        predict(image)

    def time_runs() -> list[float]:
        times = []
        for _ in range(RUNS):
            started = time.perf_counter()
            predict(image).numpy()
            times.append(time.perf_counter() - started)
        return times

    return measure(time_runs)


def tflite_latency(model) -> Latency:
    """The time for one image through the model converted as the export converts it (float TFLite),
    run by LiteRT on 1 thread, the way a phone app runs it. The conversion takes about 7 s on 2 cores
    whatever the model's size (measured on MobileNetV2 at 32-96 px), so callers cache the figure."""
    import tempfile

    import keras
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    shape = (1, *model.inputs[0].shape[1:])
    archive = keras.export.ExportArchive()  # as the export writes it: from a SavedModel signature
    archive.track(model)
    archive.add_endpoint("tflite", tf.function(lambda x: model(x, training=False),
                                               input_signature=[tf.TensorSpec(shape, tf.float32)]))
    with tempfile.TemporaryDirectory(prefix="sweeper-tflite-") as folder:
        archive.write_out(folder, verbose=False)
        converted = tf.lite.TFLiteConverter.from_saved_model(folder, signature_keys=["tflite"]).convert()
    interpreter = Interpreter(model_content=converted, num_threads=1)
    interpreter.allocate_tensors()
    image = interpreter.get_input_details()[0]["index"]
    interpreter.set_tensor(image, np.zeros(shape, np.float32))
    for _ in range(WARMUP):
        interpreter.invoke()

    def time_runs() -> list[float]:
        times = []
        for _ in range(RUNS):
            started = time.perf_counter()
            interpreter.invoke()
            times.append(time.perf_counter() - started)
        return times

    return measure(time_runs)


def backbone_latency(entry, image_size: int) -> Latency:
    """`sweeper backbones --measure`: the CPU latency of one image through the entry with average
    pooling (batch 1, on the threads the caller gave TensorFlow), from random weights, which do
    not change the time. Imports Keras."""
    import keras

    from .backbones import build_backbone
    from .model import Preprocess

    image = keras.Input((image_size, image_size, 3))
    features = build_backbone(entry, image_size, None)(Preprocess(entry.preprocess)(image))
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    try:
        return inference_latency(keras.Model(image, pooled))
    finally:
        keras.backend.clear_session()  # the next entry starts from nothing held

