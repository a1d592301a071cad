"""The search space as data: each hyperparameter fixed, a choice, or a range, and what follows
from that alone (how many configurations, the grid). No Optuna here: `search_space.py` adapts
the space to Optuna's samplers.

The parameter types were defined in `spec.py` before; `spec` still re-exports them, because Ray
pickles them (inside Optuna's searcher) under that module's name, and a sweep saved then must
still resume.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from .hyperparameters import CONFIG_KEYS, DEFAULTS, FULL, SPEC_KEYS


@dataclass(frozen=True)
class Fixed:
    value: Any


@dataclass(frozen=True)
class Choice:
    options: tuple


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    log: bool = False
    step: float | None = None
    integer: bool = False


Param = Fixed | Choice | Range


def values_of(param: Param) -> tuple:
    """The values a fixed or choice parameter can take (a range has no finite list)."""
    if isinstance(param, Fixed):
        return (param.value,)
    if isinstance(param, Choice):
        return param.options
    raise TypeError("a range has no finite list of values")


@dataclass(frozen=True)
class Space:
    """Each hyperparameter of `hyperparameters.HYPERPARAMETERS`, with its defaults."""

    backbone: Param = Fixed(DEFAULTS["backbone"])
    cut: dict[str, Param] = field(default_factory=dict)  # per backbone; missing = Fixed(FULL)
    unfreeze: Param = Fixed(DEFAULTS["unfreeze"])
    head_pooling: Param = Fixed(DEFAULTS["head_pooling"])
    head_units: Param = Fixed(DEFAULTS["head_units"])
    head_dropout: Param = Fixed(DEFAULTS["head_dropout"])
    optimizer: Param = Fixed(DEFAULTS["optimizer"])
    learning_rate: Param = Fixed(DEFAULTS["learning_rate"])
    batch_size: Param = Fixed(DEFAULTS["batch_size"])
    augment: Param = Fixed(DEFAULTS["augment"])
    image_size: Param = Fixed(DEFAULTS["image_size"])
    schedule: Param = Fixed(DEFAULTS["schedule"])
    warmup_epochs: Param = Fixed(DEFAULTS["warmup_epochs"])
    weight_decay: Param = Fixed(DEFAULTS["weight_decay"])
    label_smoothing: Param = Fixed(DEFAULTS["label_smoothing"])
    unfreeze_blocks: Param = Fixed(DEFAULTS["unfreeze_blocks"])

    def cut_for(self, backbone: str) -> Param:
        return self.cut.get(backbone, Fixed(FULL))


def backbones_of(space: Space) -> tuple:
    """The backbones a space may draw."""
    return values_of(space.backbone)


def encode_units(units: tuple[int, ...]) -> str:
    """Hidden layers as a compact, reversible label: () -> "[]", (256, 32) -> "[256, 32]"."""
    return json.dumps(list(units))


def decode_units(text: str) -> tuple[int, ...]:
    return tuple(json.loads(text))


def encode_units_param(param: Param) -> Param:
    if isinstance(param, Fixed):
        return Fixed(encode_units(param.value))
    return Choice(tuple(encode_units(units) for units in param.options))


def space_size(space: Space) -> int | None:
    """How many distinct configurations the space holds; None when a float range makes it infinite."""
    def count(param: Param) -> int | None:
        if isinstance(param, Fixed):
            return 1
        if isinstance(param, Choice):
            return len(param.options)
        if param.integer:
            return int((param.high - param.low) // (param.step or 1)) + 1
        if param.step:  # as Optuna: a high that is not on the step's grid is lowered onto it
            return math.floor((param.high - param.low) / param.step + 1e-9) + 1
        return None

    total_per_backbone = []
    for backbone in backbones_of(space):
        counts = [count(getattr(space, k)) for k in CONFIG_KEYS if k not in ("backbone", "cut")]
        counts.append(count(space.cut_for(backbone)))
        if None in counts:
            return None
        product = 1
        for c in counts:
            product *= c
        total_per_backbone.append(product)
    return sum(total_per_backbone)


def trial_count(spec) -> int:
    """The trials the sweep runs: `budget.trials`, or the size of a finite space if that is smaller
    (more trials than configurations could only repeat some)."""
    size = space_size(spec.space)
    return min(spec.budget.trials, size) if size else spec.budget.trials


def grid_space(space: Space) -> dict[str, list]:
    """Every sampled parameter's values, as Optuna's GridSampler takes them. Raises ValueError,
    naming the spec key, for what a grid cannot hold: a range, or a list of cuts for a backbone."""
    grid: dict[str, list] = {}
    backbones = backbones_of(space)
    for key in CONFIG_KEYS:
        spec_key = SPEC_KEYS[key]
        if key == "cut":
            if any(isinstance(space.cut_for(b), (Choice, Range)) for b in backbones):
                raise ValueError(f"{spec_key}: a grid takes one cut per backbone, not a list to choose from")
            continue
        param = encode_units_param(getattr(space, key)) if key == "head_units" else getattr(space, key)
        if isinstance(param, Range):
            raise ValueError(f"{spec_key}: a grid needs a list of values, not a range")
        if isinstance(param, Choice):
            grid[key] = list(param.options)
    return grid


def fixed_values(space: Space) -> dict[str, Any]:
    """The hyperparameters every trial of the space shares, with their value; the others vary.

    A cut is fixed only when every backbone keeps the same one: `mixed7` for one backbone and
    `full` for another differ between trials. What the terminal shows once, rather than on every row.
    """
    fixed = {key: param.value for key in CONFIG_KEYS if key != "cut"
             and isinstance(param := getattr(space, key), Fixed)}
    if "head_units" in fixed:  # as trials' configurations carry it
        fixed["head_units"] = encode_units(fixed["head_units"])
    cuts = {space.cut_for(backbone) for backbone in backbones_of(space)}
    if len(cuts) == 1 and isinstance(cut := cuts.pop(), Fixed):
        fixed["cut"] = cut.value
    return {key: fixed[key] for key in CONFIG_KEYS if key in fixed}
