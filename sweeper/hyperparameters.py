"""The hyperparameters a sweep searches, declared once: names, defaults, spec keys, allowed values.

Spec parsing (`spec.py`), the space and its search (`space.py`, `search_space.py`), the trial's
configuration (`model.TrialConfig`), the leaderboard, the live view, the report and the model
card all read this table. It imports nothing else of sweeper, and nothing heavy, so every
module (a Ray worker, `sweeper leaderboard`) can read it without importing Optuna or Keras.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OPTIMIZERS = ("rmsprop", "adam", "sgd", "adagrad")  # model.make_optimizer builds each
POOLINGS = ("avg", "flatten")
FULL = "full"  # the cut that keeps the whole backbone


@dataclass(frozen=True)
class Hyperparameter:
    name: str  # the trial configuration's key, and the leaderboard's column
    default: Any  # the value when the spec leaves it out
    spec_key: str  # where the spec's `space` sets it


HYPERPARAMETERS = (  # in leaderboard order
    Hyperparameter("backbone", "mobilenet_v2_1.0", "backbone"),
    Hyperparameter("cut", FULL, "cut"),
    Hyperparameter("unfreeze", 0, "unfreeze"),
    Hyperparameter("head_pooling", "avg", "head.pooling"),
    Hyperparameter("head_units", (), "head.units"),
    Hyperparameter("head_dropout", 0.2, "head.dropout"),
    Hyperparameter("optimizer", "adam", "optimizer"),
    Hyperparameter("learning_rate", 1e-3, "learning_rate"),
    Hyperparameter("batch_size", 32, "batch_size"),
    Hyperparameter("augment", False, "augment"),
    Hyperparameter("image_size", 160, "image_size"),
)

CONFIG_KEYS = tuple(h.name for h in HYPERPARAMETERS)
DEFAULTS = {h.name: h.default for h in HYPERPARAMETERS}
SPEC_KEYS = {h.name: f"space.{h.spec_key}" for h in HYPERPARAMETERS}
