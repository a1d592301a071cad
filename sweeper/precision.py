"""The compute precision a trial's model is built in (`budget.precision`).

Keras reads its dtype policy from a global setting when each layer is made, so a model is built
inside `building_in(precision)`, which sets the policy and restores the one it found: a worker
that runs trials of several precisions, or exports afterwards, never inherits one by accident.
Under the mixed policies the variables stay float32 (what checkpoints and exported models hold)
and `model.build_model` keeps the output layer, and so the loss, in float32. Keras wraps the
optimizer of a `mixed_float16` model in a LossScaleOptimizer itself (its `compile`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

FLOAT32 = "float32"
KERAS_POLICY = {"float32": "float32", "mixed_float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


@contextmanager
def building_in(precision: str) -> Iterator[None]:
    """Layers made inside compute in `precision` (a `spec.PRECISIONS` word)."""
    import keras

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(KERAS_POLICY[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def of_model(model) -> str:
    """The `budget.precision` word a model was built in."""
    name = model.dtype_policy.name
    return next((word for word, policy in KERAS_POLICY.items() if policy == name), name)
