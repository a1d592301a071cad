"""The hyperparameters a sweep searches, declared once: names, defaults, spec keys, allowed values.

Spec parsing (`spec.py`), the space and its search (`space.py`, `search_space.py`), the trial's
configuration (`model.TrialConfig`), the leaderboard, the live view, the report and the model
card all read this table. It imports nothing else of sweeper, and nothing heavy, so every
module (a Ray worker, `sweeper leaderboard`) can read it without importing Optuna or Keras.

Adding a hyperparameter: an entry here, a field in `space.Space` and `model.TrialConfig`
(tests/test_structure.py fails until both agree with this table), what it does in `model.py` or
the trial, and a line in docs/spec.md (tests/test_spec_reference.py checks that one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OPTIMIZERS = ("rmsprop", "adam", "sgd", "adagrad")  # model.make_optimizer builds each
POOLINGS = ("avg", "flatten")
SCHEDULES = ("constant", "cosine")  # training.learning_rate_at computes each
FULL = "full"  # the cut that keeps the whole backbone


@dataclass(frozen=True)
class Hyperparameter:
    name: str  # the trial configuration's key, and the leaderboard's column
    default: Any  # the value when the spec leaves it out
    spec_key: str  # where the spec's `space` sets it
    label: str  # its short header in the terminal tables
    type: type = str  # what a spec value must be: str (one of `values`), int, float or bool
    values: tuple = ()  # the allowed values of a str hyperparameter
    low: float | None = None  # the bounds of a number, inclusive
    high: float | None = None
    task: str | None = None  # the only task it applies to; None: every task
    shown: bool = True  # always in the terminal tables and a trial's summary; False: only when set


HYPERPARAMETERS = (  # in leaderboard order; new ones go last, so the CSV's columns keep their places
    Hyperparameter("backbone", "mobilenet_v2_1.0", "backbone", "backbone"),  # values: backbones.REGISTRY
    Hyperparameter("cut", FULL, "cut", "cut"),  # values: the backbone's named cuts
    Hyperparameter("unfreeze", 0, "unfreeze", "unfreeze", int, low=0),
    Hyperparameter("head_pooling", "avg", "head.pooling", "head", values=POOLINGS),
    Hyperparameter("head_units", (), "head.units", "head"),  # a list of layer sizes
    Hyperparameter("head_dropout", 0.2, "head.dropout", "head", float, low=0.0, high=0.99),
    Hyperparameter("optimizer", "adam", "optimizer", "optimizer", values=OPTIMIZERS),
    Hyperparameter("learning_rate", 1e-3, "learning_rate", "lr", float, low=1e-9, high=10.0),
    Hyperparameter("batch_size", 32, "batch_size", "batch", int, low=1, high=4096),
    Hyperparameter("augment", False, "augment", "aug", bool, shown=False),
    Hyperparameter("image_size", 160, "image_size", "px", int, low=8, high=1024),
    Hyperparameter("schedule", "constant", "schedule", "sched", values=SCHEDULES, shown=False),
    Hyperparameter("warmup_epochs", 0, "warmup_epochs", "warmup", int, low=0, shown=False),
    Hyperparameter("weight_decay", 0.0, "weight_decay", "wd", float, low=0.0, high=1.0, shown=False),
    Hyperparameter("label_smoothing", 0.0, "label_smoothing", "smooth", float, low=0.0, high=0.5,
                   task="classification", shown=False),
    # `unfreeze: {blocks: N}`: the top N blocks of the kept backbone train whole; above 0 it takes
    # the place of `unfreeze`'s layer count.
    Hyperparameter("unfreeze_blocks", 0, "unfreeze.blocks", "blocks", int, low=0, shown=False),
)

CONFIG_KEYS = tuple(h.name for h in HYPERPARAMETERS)
BY_NAME = {h.name: h for h in HYPERPARAMETERS}
DEFAULTS = {h.name: h.default for h in HYPERPARAMETERS}
SPEC_KEYS = {h.name: f"space.{h.spec_key}" for h in HYPERPARAMETERS}
HEAD = ("head_pooling", "head_units", "head_dropout")  # shown together, in one `head` column
