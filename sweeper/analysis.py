"""The numbers behind `sweeper report`: what a sweep's rows and result files say, without a chart.

Per-trial learning curves, ASHA's rungs and how many trials reached each, the fANOVA importance of
each hyperparameter and the accuracy/latency Pareto front. `report` draws them; kept apart so that
each is tested on plain rows and read without matplotlib. The rungs come from `plan.rung_epochs`,
the formula checked against Ray's ASHAScheduler, so the report and `--dry-run` cannot disagree.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import results
from .objective import Objective, nondominated
from .plan import rung_epochs
from .spec import Budget, Space
from .status import FINISHED, ORDER

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution


History = list[tuple[int, float]]  # (epoch, objective) pairs, by epoch


def load_histories(sweep_dir: Path, rows: list[dict], objective: str) -> dict[str, History]:
    """Each trial's objective per epoch, from `trial_<id>/result.json`; trials that reported nothing are left out."""
    histories: dict[str, History] = {}
    for row in rows:
        by_epoch: dict[int, float] = {}
        for result in results.read_results(results.trial_folder(sweep_dir, row["trial_id"])):
            value = result.get(objective)
            if isinstance(value, (int, float)) and isinstance(result.get("epoch"), int):
                by_epoch[result["epoch"]] = float(value)  # a trial restored after a failure repeats epochs: last wins
        if by_epoch:
            histories[row["trial_id"]] = sorted(by_epoch.items())
    return histories


def number(row: dict, key: str) -> float | None:
    """A number from a row, or None when it is missing, NaN or not a number (a bool is not one)."""
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def status_counts(rows: list[dict]) -> dict[str, int]:
    """How many trials have each status, the usual ones first (in status.ORDER), then any others; none at 0."""
    counts = Counter(r.get("status", "") for r in rows)
    order = [*ORDER, *sorted(set(counts) - set(ORDER))]
    return {status: counts[status] for status in order if counts[status]}


def rungs(budget: Budget) -> list[int]:
    """ASHA's rung epochs, then max_epochs, where every trial that was not stopped ends."""
    return [*rung_epochs(budget.grace_epochs, budget.max_epochs, budget.reduction_factor), budget.max_epochs]


def reaching(rows: list[dict], epochs: list[int]) -> list[int]:
    """For each epoch, how many trials trained at least that many epochs."""
    return [sum((r.get("epochs") or 0) >= epoch for r in rows) for epoch in epochs]


class TrialRecorder:
    """Stands in for an optuna.Trial: answers DefineByRun with a finished trial's values, noting each distribution.

    The search named its parameters `key` or `key@backbone` (a per-backbone `cut`); the row holds `key`.
    """

    def __init__(self, row: dict):
        self.row = row
        self.params: dict[str, Any] = {}
        self.distributions: dict[str, BaseDistribution] = {}

    def suggest_categorical(self, name: str, choices: list) -> Any:
        from optuna.distributions import CategoricalDistribution

        return self._record(name, CategoricalDistribution(choices))

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> Any:
        from optuna.distributions import IntDistribution

        return self._record(name, IntDistribution(low, high, log=log, step=step))

    def suggest_float(self, name: str, low: float, high: float, step: float | None = None, log: bool = False) -> Any:
        from optuna.distributions import FloatDistribution

        return self._record(name, FloatDistribution(low, high, log=log, step=step))

    def _record(self, name: str, distribution: BaseDistribution) -> Any:
        value = self.row.get(name.split("@")[0])
        self.params[name], self.distributions[name] = value, distribution
        return value


def importances(rows: list[dict], space: Space, objective: str, mode: str) -> tuple[dict[str, float], int, str]:
    """fANOVA importance of each varying parameter over the finished trials, most important first.

    Returns (importances, trials used, why there are none: "" when there are).
    """
    import optuna

    from .search_space import DefineByRun, quiet_optuna  # imports optuna: only when importances are asked for

    finished = [r for r in rows if r.get("status") in FINISHED and number(r, objective) is not None]
    if len(finished) < 2:
        return {}, len(finished), f"needs at least 2 finished trials; this sweep has {len(finished)}"
    define = DefineByRun(space)
    with quiet_optuna():  # no "new study created" line on the console
        study = optuna.create_study(direction=Objective(objective, mode).direction)
        for row in finished:
            recorder = TrialRecorder(row)
            define(recorder)
            try:
                study.add_trial(optuna.trial.create_trial(
                    params=recorder.params, distributions=recorder.distributions, value=number(row, objective)))
            except ValueError:  # a value outside the spec's space (the spec was edited after the sweep)
                continue
        trials = study.get_trials(deepcopy=False)
        if len(trials) < 2:
            return {}, len(trials), f"needs at least 2 finished trials in the search space; found {len(trials)}"
        shared = set.intersection(*(set(t.params) for t in trials))
        varying = sorted(name for name in shared if len({repr(t.params[name]) for t in trials}) > 1)
        if not varying:
            return {}, len(trials), f"no hyperparameter varies across the {len(trials)} finished trials"
        if len({t.value for t in trials}) == 1:
            return {}, len(trials), f"all {len(trials)} finished trials scored the same {objective}"
        found = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), params=varying)
    return {name: float(value) for name, value in found.items()}, len(trials), ""


def pareto_front(points: list[tuple[str, float, float]], mode: str) -> list[str]:
    """The ids of the (id, cost, objective) points no other point beats, cheapest first."""
    sign = Objective("", mode).sign
    front = nondominated([(p[0], (-p[1], sign * p[2])) for p in points])
    return [p[0] for p in sorted((p for p in points if p[0] in front), key=lambda p: (p[1], sign * p[2]))]
