"""The epoch loop: trains a compiled Keras model on arrays, one epoch per call.

Keras' `fit` costs about 0.2 s per epoch in data pipelines and callbacks even when an
epoch's compute is 20 ms, which is the normal case once frozen features are cached. So the
loop runs Keras' own `train_step` and `test_step` inside functions it compiles once per
model and reuses for every epoch and, when the worker reuses the model, every trial.

Inputs that fit the trial's memory budget (`memory_budget`) are held as tensors and trained a
whole epoch per call; larger ones are streamed: read from the cache's file (`Rows`) a batch at a
time by tf.data threads ahead of the step that uses them, so a trial's memory does not grow with
the data set. On data that fits one read window both draw the same batches from the same seeded
permutation, so they train the same weights.
"""

from __future__ import annotations

import math
import os

import numpy as np

from . import environment

# Held inputs, per machine, at most: the smaller of RESIDENT_CAP and RESIDENT_SHARE of its memory,
# split among the trials that run at once. The cap keeps a sweep's process tree within 4 GiB
# (issue 18's target) whatever the machine; 1,000 images at 224 px take 150 MB.
RESIDENT_CAP = 2**30
RESIDENT_SHARE = 1 / 8
# A streamed epoch reads rows in chunks of about CHUNK_BYTES, taken in a random order and mixed
# within windows of about WINDOW_BYTES (see `epoch_order`).
CHUNK_BYTES = 2**20
WINDOW_BYTES = 64 * 2**20
PREFETCH = 2  # batches read ahead of the training step


def memory_budget(concurrent_trials: int, override: int | None = None) -> int:
    """Bytes of inputs one trial may hold as tensors on this machine; `override` (from
    SWEEPER_MEMORY_BUDGET, e.g. 0 to stream everything) wins when given."""
    if override is not None:
        return override
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX: the cap alone
        total = 8 * RESIDENT_CAP
    return int(min(RESIDENT_CAP, total * RESIDENT_SHARE) // max(1, concurrent_trials))


def memory_budget_override() -> int | None:
    """SWEEPER_MEMORY_BUDGET as bytes ("0", "512MB", "2GiB"), or None when unset."""
    from .errors import SweeperError
    from .units import parse_size

    value = os.environ.get(environment.MEMORY_BUDGET)
    try:
        return None if value in (None, "") else parse_size(value, what=environment.MEMORY_BUDGET)
    except ValueError as exc:
        raise SweeperError(str(exc)) from None


class EpochLoop:
    """`train_epoch` and `evaluate` for one compiled model, reusable across trials."""

    def __init__(self, model):
        import tensorflow as tf

        self.model = model
        # reduce_retracing: a trial with another batch size or data size retraces once, not per shape.
        self._train_resident = tf.function(self._train_resident_fn, reduce_retracing=True)
        self._test_resident = tf.function(self._test_resident_fn, reduce_retracing=True)
        self._train_batch = tf.function(lambda x, y: model.train_step((x, y)), reduce_retracing=True)
        self._test_batch = tf.function(lambda x, y: model.test_step((x, y)), reduce_retracing=True)

    def train_epoch(self, x, y, *, batch_size: int, rng: np.random.Generator,
                    learning_rate: float | None = None) -> dict[str, float]:
        """One pass over (x, y) in a random order drawn from `rng`; returns the epoch's mean metrics.

        Tensors (from `hold`) are trained in one call; arrays and `Rows` are streamed.
        `learning_rate`, when given, is the epoch's: the optimizer's variable is assigned, so the
        compiled steps read it without being traced again.
        """
        if learning_rate is not None:
            self.model.optimizer.learning_rate = learning_rate
        self.model.reset_metrics()
        if _resident(x):
            self._train_resident(x, y, rng.permutation(_length(x)).astype(np.int32), batch_size)
        else:
            order = epoch_order(_length(x), _row_bytes(x), rng)
            for batch in _stream(x, y, order, batch_size):
                self._train_batch(*batch)
        return _metrics(self.model)

    def evaluate(self, x, y, *, batch_size: int) -> dict[str, float]:
        self.model.reset_metrics()
        if _resident(x):
            self._test_resident(x, y, batch_size)
        else:
            for batch in _stream(x, y, np.arange(_length(x)), batch_size):
                self._test_batch(*batch)
        return _metrics(self.model)

    def _train_resident_fn(self, x, y, order, batch_size):
        import tensorflow as tf

        for start in tf.range(0, tf.shape(order)[0], batch_size):
            rows = order[start:start + batch_size]
            self.model.train_step((_gather(x, rows), tf.gather(y, rows)))

    def _test_resident_fn(self, x, y, batch_size):
        import tensorflow as tf

        for start in tf.range(0, tf.shape(y)[0], batch_size):
            rows = tf.range(start, tf.minimum(start + batch_size, tf.shape(y)[0]))
            self.model.test_step((_gather(x, rows), tf.gather(y, rows)))


def learning_rate_at(epoch: int, *, learning_rate: float, schedule: str, warmup_epochs: int, max_epochs: int) -> float:
    """The learning rate of epoch `epoch` (1-based), set at the epoch's start as Keras'
    LearningRateScheduler does. A function of the epoch alone, so a resumed trial continues the curve.

    Warm-up ramps linearly to the full rate (epoch e of w trains at e / (w + 1) of it); after it,
    `cosine` decays over the remaining epochs of `max_epochs`, ASHA's stops notwithstanding.
    """
    if epoch <= warmup_epochs:
        return learning_rate * epoch / (warmup_epochs + 1)
    if schedule == "constant":
        return learning_rate
    if schedule == "cosine":
        done = (epoch - warmup_epochs - 1) / max(1, max_epochs - warmup_epochs)
        return learning_rate * 0.5 * (1 + math.cos(math.pi * done))
    raise ValueError(f"unknown schedule {schedule!r}")


class Rows:
    """Rows `index` of an array (usually the cache's memory-mapped file), read only when asked: a
    trial's split of the data without a copy of it in memory. Indexing it reads just those rows
    (a batch); `np.asarray` reads them all (when `hold` makes the inputs resident)."""

    def __init__(self, array: np.ndarray, index: np.ndarray):
        self.array, self.index = array, np.asarray(index)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def nbytes(self) -> int:
        return len(self.index) * int(np.prod(self.array.shape[1:], dtype=np.int64)) * self.array.dtype.itemsize

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.array.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    def __getitem__(self, rows) -> np.ndarray:
        return self.array[self.index[rows]]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self.array[self.index] if dtype is None else self.array[self.index].astype(dtype)


def hold(x, y):
    """(x, y) as TensorFlow tensors, read in once: a trial's epochs then reuse them instead of
    reading the arrays again every epoch. Whether they fit is the caller's call (`nbytes`)."""
    return _as_tensors(x), _as_tensors(y)


def nbytes(x) -> int:
    """The bytes of one input or a list of them (arrays, `Rows`)."""
    return sum(part.nbytes for part in x) if isinstance(x, (list, tuple)) else x.nbytes


def epoch_order(n: int, row_bytes: int, rng: np.random.Generator) -> np.ndarray:
    """A streamed epoch's order: a random permutation of range(n) that reads the file in runs.

    Rows of about CHUNK_BYTES in a row of the file make a chunk; the chunks are shuffled, and the
    rows are shuffled within each window of consecutive chunks of about WINDOW_BYTES, so a batch
    reads within one window's chunks, not all over the file. A split that fits in one window is
    shuffled whole, exactly as `rng.permutation(n)`: the order the held path uses.
    """
    window = max(1, WINDOW_BYTES // max(1, row_bytes))
    if n <= window:
        return rng.permutation(n).astype(np.int32)
    chunk = max(1, CHUNK_BYTES // max(1, row_bytes))
    starts = rng.permutation(np.arange(0, n, chunk))
    rows = np.concatenate([np.arange(start, min(start + chunk, n)) for start in starts])
    for start in range(0, n, window):
        rng.shuffle(rows[start:start + window])  # a view: shuffled in place
    return rows.astype(np.int32)


def _stream(x, y, order: np.ndarray, batch_size: int):
    """The batches (x..., y) of `order`, read from arrays or `Rows` by tf.data's threads (in order,
    PREFETCH batches ahead), so reading the file overlaps the training step."""
    import tensorflow as tf

    parts = [*x, y] if isinstance(x, (list, tuple)) else [x, y]

    def read(i):
        rows = order[i * batch_size:(i + 1) * batch_size]
        return tuple(np.asarray(part[rows]) for part in parts)

    def shaped(*tensors):
        for tensor, part in zip(tensors, parts):
            tensor.set_shape((None, *part.shape[1:]))
        # A tuple, not a list: tf.data reads a list as one tensor to stack, and the features of
        # a multi-tensor frontier differ in shape.
        inputs = tuple(tensors[:-1])
        return (inputs if len(inputs) > 1 else inputs[0]), tensors[-1]

    batches = tf.data.Dataset.range(math.ceil(len(order) / batch_size)).map(
        lambda i: shaped(*tf.numpy_function(read, [i], [tf.as_dtype(part.dtype) for part in parts])),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
    )
    return batches.prefetch(PREFETCH)


def _resident(x) -> bool:
    import tensorflow as tf

    return isinstance(x[0] if isinstance(x, (list, tuple)) else x, tf.Tensor)


def _row_bytes(x) -> int:
    return nbytes(x) // max(1, _length(x))


def _metrics(model) -> dict[str, float]:
    return {name: float(value) for name, value in model.get_metrics_result().items()}


def _length(x) -> int:
    return len(x[0]) if isinstance(x, (list, tuple)) else len(x)


def _as_tensors(x):
    import tensorflow as tf

    return [tf.constant(np.asarray(part)) for part in x] if isinstance(x, (list, tuple)) else tf.constant(np.asarray(x))


def _gather(x, rows):
    import tensorflow as tf

    return [tf.gather(part, rows) for part in x] if isinstance(x, (list, tuple)) else tf.gather(x, rows)
