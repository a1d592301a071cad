"""The spec's `space` as an Optuna define-by-run function, for Ray Tune's OptunaSearch.

Define-by-run lets `cut` depend on the backbone that was drawn: each backbone gets its own
Optuna parameter (`cut@inception_v3`), and the trial receives the drawn value as `cut`.
Fixed values never reach Optuna; they are returned as constants. `space.grid_space` lists the
same parameters for Optuna's GridSampler (`budget.search: grid`); `sampler_for` picks the sampler.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import optuna

from .hyperparameters import CONFIG_KEYS
from .space import Choice, Fixed, Param, Range, Space, encode_units_param, grid_space, trial_count
from .spec import Spec


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
                param = encode_units_param(param)
            value = _suggest(trial, name, param)
            config[key] = value
            if isinstance(param, Fixed) or name != key:
                constants[key] = value
        return constants


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


def sampler_for(spec: Spec) -> optuna.samplers.BaseSampler:
    """The Optuna sampler of `budget.search`, seeded by `budget.seed`."""
    budget = spec.budget
    if budget.search == "grid":
        return AskTellGrid(grid_space(spec.space), seed=budget.seed)
    if budget.search == "random":
        return optuna.samplers.RandomSampler(seed=budget.seed)
    with warnings.catch_warnings():  # `group` (experimental) lets multivariate TPE model the conditional `cut@<backbone>`
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=budget.seed, multivariate=True, group=True,
                                          n_startup_trials=startup_trials(spec),
                                          constant_liar=_constant_liar and budget.concurrent_trials > 1)


# Optuna's constant liar: TPE counts the trials still running as bad ones, so that concurrent
# trials are not proposed in the same region. Replayed on the 54-configuration grids of
# benchmarks/README.md (2 trials at a time, 100 replays each), it narrowed the gap to the grid's
# best from 0.86 to 0.77 points on cats_vs_dogs and from 3.83 % to 3.24 % of the RMSE on BCCD.
_constant_liar = True


@contextmanager
def constant_liar(enabled: bool) -> Iterator[None]:
    """TPE with or without the constant liar inside the block (for comparisons); the setting is restored after."""
    global _constant_liar
    before, _constant_liar = _constant_liar, enabled
    try:
        yield
    finally:
        _constant_liar = before


def startup_trials(spec: Spec) -> int:
    """TPE's random start-up: the trials it draws before it models anything."""
    return min(10, max(4, trial_count(spec) // 3))


class AskTellGrid(optuna.samplers.GridSampler):
    """Optuna's GridSampler for a study driven by ask and tell, as Tune's OptunaSearch drives it.

    GridSampler stops `study.optimize` once every point is taken, and raises when there is no
    optimize loop to stop; Tune itself asks for exactly as many trials as the grid holds.
    """

    def after_trial(self, study, trial, state, values):
        pass


@contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's INFO lines ("A new study created in memory", one per trial) kept off the console
    while a sweep or a report uses it; the caller's log level is restored after."""
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)
