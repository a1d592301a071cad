"""The epoch loop: trains a compiled Keras model on arrays, one epoch per call.

Keras' `fit` costs about 0.2 s per epoch in data pipelines and callbacks even when an
epoch's compute is 20 ms, which is the normal case once frozen features are cached. So the
loop runs Keras' own `train_step` and `test_step` inside functions it compiles once per
model and reuses for every epoch and, when the worker reuses the model, every trial.

Inputs small enough to hold as tensors (cached features) are trained a whole epoch per call;
larger ones (images) are fed a batch per call, read from the cache's file (`Rows`), so a trial's
memory does not grow with the data set. Both draw the same batches from the same seeded
permutation, so they train the same weights.
"""

from __future__ import annotations

import math

import numpy as np

RESIDENT_BYTES = 256 * 2**20  # inputs up to this size are handed to TensorFlow whole, an epoch per call


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

        `learning_rate`, when given, is the epoch's: the optimizer's variable is assigned, so the
        compiled steps read it without being traced again.
        """
        if learning_rate is not None:
            self.model.optimizer.learning_rate = learning_rate
        self.model.reset_metrics()
        order = rng.permutation(_length(x)).astype(np.int32)
        x, y, resident = hold(x, y)
        if resident:
            self._train_resident(x, y, order, batch_size)
        else:
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                self._train_batch(_take(x, rows), y[rows])
        return _metrics(self.model)

    def evaluate(self, x, y, *, batch_size: int) -> dict[str, float]:
        self.model.reset_metrics()
        x, y, resident = hold(x, y)
        if resident:
            self._test_resident(x, y, batch_size)
        else:
            for start in range(0, _length(x), batch_size):
                rows = slice(start, start + batch_size)
                self._test_batch(_take(x, rows), y[rows])
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

    def __getitem__(self, rows) -> np.ndarray:
        return self.array[self.index[rows]]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self.array[self.index] if dtype is None else self.array[self.index].astype(dtype)


def hold(x, y):
    """(x, y, resident): as TensorFlow tensors when x fits in RESIDENT_BYTES, else as they are.

    A trial holds its inputs once, so its epochs reuse the tensors instead of copying the arrays
    again every epoch; inputs already held pass through.
    """
    import tensorflow as tf

    if isinstance(x[0] if isinstance(x, (list, tuple)) else x, tf.Tensor):
        return x, y, True
    if _nbytes(x) <= RESIDENT_BYTES:
        return _as_tensors(x), _as_tensors(y), True
    return x, y, False


def _metrics(model) -> dict[str, float]:
    return {name: float(value) for name, value in model.get_metrics_result().items()}


def _length(x) -> int:
    return len(x[0]) if isinstance(x, (list, tuple)) else len(x)


def _nbytes(x) -> int:
    return sum(part.nbytes for part in x) if isinstance(x, (list, tuple)) else x.nbytes


def _take(x, rows):
    return [part[rows] for part in x] if isinstance(x, (list, tuple)) else x[rows]


def _as_tensors(x):
    import tensorflow as tf

    return [tf.constant(np.asarray(part)) for part in x] if isinstance(x, (list, tuple)) else tf.constant(np.asarray(x))


def _gather(x, rows):
    import tensorflow as tf

    return [tf.gather(part, rows) for part in x] if isinstance(x, (list, tuple)) else tf.gather(x, rows)
