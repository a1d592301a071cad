"""The spec's `space` as an Optuna define-by-run function, for Ray Tune's OptunaSearch.

Define-by-run lets `cut` depend on the backbone that was drawn: each backbone gets its own
Optuna parameter (`cut@inception_v3`), and the trial receives the drawn value as `cut`.
Fixed values never reach Optuna; they are returned as constants. `grid_space` lists the same
parameters for Optuna's GridSampler (`budget.search: grid`); `sampler_for` picks the sampler.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna

from .spec import Choice, Fixed, Param, Range, Space, Spec, encode_units

# The trial's configuration keys, in leaderboard order.
CONFIG_KEYS = (
    "backbone", "cut", "unfreeze", "head_pooling", "head_units", "head_dropout",
    "optimizer", "learning_rate", "batch_size", "augment", "image_size",
)


class DefineByRun:
    """Callable(optuna.Trial) -> constants. A class rather than a closure so it pickles with the searcher."""

    def __init__(self, space: Space):
        self.space = space

    def __call__(self, trial) -> dict[str, Any]:
        constants: dict[str, Any] = {}
        config = {}
        for key in CONFIG_KEYS:
            if key == "cut":
                param, name = self.space.cut_for(config["backbone"]), f"cut@{config['backbone']}"
            else:
                param, name = getattr(self.space, key), key
            if key == "head_units":  # Optuna's choices must be scalars: use the encoded label
                param = _encode_units_param(param)
            value = _suggest(trial, name, param)
            config[key] = value
            if isinstance(param, Fixed) or name != key:
                constants[key] = value
        return constants


def _encode_units_param(param: Param) -> Param:
    if isinstance(param, Fixed):
        return Fixed(encode_units(param.value))
    return Choice(tuple(encode_units(units) for units in param.options))


def _suggest(trial, name: str, param: Param):
    if isinstance(param, Fixed):
        return param.value
    if isinstance(param, Choice):
        return trial.suggest_categorical(name, list(param.options))
    if isinstance(param, Range):
        if param.integer:
            step = int(param.step or 1)
            return trial.suggest_int(name, int(param.low), int(param.high), step=step, log=param.log)
        return trial.suggest_float(name, param.low, param.high, step=param.step, log=param.log)
    raise TypeError(f"unknown parameter type {param!r}")


def space_size(space: Space) -> int | None:
    """How many distinct configurations the space holds; None when a float range makes it infinite."""
    def count(param: Param) -> int | None:
        if isinstance(param, Fixed):
            return 1
        if isinstance(param, Choice):
            return len(param.options)
        if param.integer:
            return int((param.high - param.low) // (param.step or 1)) + 1
        if param.step:
            return int(round((param.high - param.low) / param.step)) + 1
        return None

    total_per_backbone = []
    for backbone in (space.backbone.options if isinstance(space.backbone, Choice) else (space.backbone.value,)):
        counts = [count(getattr(space, k)) for k in CONFIG_KEYS if k not in ("backbone", "cut")]
        counts.append(count(space.cut_for(backbone)))
        if None in counts:
            return None
        product = 1
        for c in counts:
            product *= c
        total_per_backbone.append(product)
    return sum(total_per_backbone)


def trial_count(spec: Spec) -> int:
    """The trials the sweep runs: `budget.trials`, or the size of a finite space if that is smaller
    (more trials than configurations could only repeat some)."""
    size = space_size(spec.space)
    return min(spec.budget.trials, size) if size else spec.budget.trials


def grid_space(space: Space) -> dict[str, list]:
    """Every sampled parameter's values, as Optuna's GridSampler takes them. Raises ValueError,
    naming the spec key, for what a grid cannot hold: a range, or a list of cuts for a backbone."""
    grid: dict[str, list] = {}
    backbones = space.backbone.options if isinstance(space.backbone, Choice) else (space.backbone.value,)
    for key in CONFIG_KEYS:
        spec_key = "space." + key.replace("head_", "head.")
        if key == "cut":
            if any(isinstance(space.cut_for(b), (Choice, Range)) for b in backbones):
                raise ValueError(f"{spec_key}: a grid takes one cut per backbone, not a list to choose from")
            continue
        param = _encode_units_param(getattr(space, key)) if key == "head_units" else getattr(space, key)
        if isinstance(param, Range):
            raise ValueError(f"{spec_key}: a grid needs a list of values, not a range")
        if isinstance(param, Choice):
            grid[key] = list(param.options)
    return grid


def sampler_for(spec: Spec) -> optuna.samplers.BaseSampler:
    """The Optuna sampler of `budget.search`, seeded by `budget.seed`."""
    budget = spec.budget
    if budget.search == "grid":
        return AskTellGrid(grid_space(spec.space), seed=budget.seed)
    if budget.search == "random":
        return optuna.samplers.RandomSampler(seed=budget.seed)
    with warnings.catch_warnings():  # `group` (experimental) lets multivariate TPE model the conditional `cut@<backbone>`
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=budget.seed, multivariate=True, group=True, n_startup_trials=min(10, max(4, trial_count(spec) // 3))
        )


class AskTellGrid(optuna.samplers.GridSampler):
    """Optuna's GridSampler for a study driven by ask and tell, as Tune's OptunaSearch drives it.

    GridSampler stops `study.optimize` once every point is taken, and raises when there is no
    optimize loop to stop; Tune itself asks for exactly as many trials as the grid holds.
    """

    def after_trial(self, study, trial, state, values):
        pass
