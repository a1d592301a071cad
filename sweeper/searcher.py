"""The searcher Tune drives: Optuna's, through Tune's OptunaSearch, with two things Tune leaves out.

`DistinctOptunaSearch` never hands out a configuration it has handed out before. TPE on a finite
space proposes ones it has tried once it is sure of a region: on 16 configurations (four choices
of two, as tests/test_sweep.py's space), 12 trials of sweeper's TPE held 2.95 repeats on average
over 20 seeds, each a trial spent learning nothing (measured with Optuna 5.1 on a made-up
objective).

`ExtendableSearch` is Tune's SearchGenerator with the total this driver asks for rather than the
one saved with the experiment, so `sweeper resume --trials N` continues a sweep with the
searcher's history (Optuna's study and its sampler, pickled by Tune) to N trials. It also adds a
trial for each one that ended infeasible (`constraints.py`), which does not count against the
budget, up to as many as the budget's trials.

Each trial's costs are told to Optuna as constraint values (`Trial.set_constraint`): TPE ranks
the trials that broke a bound below every other, by how far they broke it.
"""

from __future__ import annotations

import optuna
from ray.tune.search import SearchGenerator
from ray.tune.search.optuna import OptunaSearch

from .constraints import INFEASIBLE, Constraints
from .trial import REPLAYED

# A repeat is told to Optuna as failed, marked REPEAT (TPE learns from complete and pruned trials
# only), and the searcher asks again; after TPE_RETRIES repeats in a row it draws uniformly at
# random, RANDOM_RETRIES times at most: with u of a space's n configurations untried, each draw
# finds one with probability u/n. Only a space of more than about RANDOM_RETRIES configurations,
# nearly exhausted, could still get a repeat (the budget never exceeds a finite space's size).
TPE_RETRIES = 10
RANDOM_RETRIES = 1000
REPEAT = "sweeper_repeat"  # the user attribute of a proposal refused as a repeat


class DistinctOptunaSearch(OptunaSearch):
    def __init__(self, *args, constraints: Constraints = Constraints(), **kwargs):
        super().__init__(*args, **kwargs)
        self.constraints = constraints

    def on_trial_result(self, trial_id: str, result: dict):
        if not result.get(INFEASIBLE):  # it has no value to report
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        ot_trial = self._ot_trials.get(trial_id)
        constraints = getattr(self, "constraints", None)  # searchers pickled before constraints have none
        if constraints and result and ot_trial is not None and trial_id not in self._completed_trials:
            for name, value in constraints.violations(result).items():
                ot_trial.set_constraint(name, value)
        if result and result.get(INFEASIBLE):  # told without a value: PRUNED, and infeasible by its constraints
            result = None
        super().on_trial_complete(trial_id, result, error)

    def suggest(self, trial_id: str):
        tried = {_key(t.params) for t in self._ot_study.get_trials(deepcopy=False) if not t.user_attrs.get(REPEAT)}
        config = super().suggest(trial_id)
        at_random = optuna.samplers.RandomSampler(seed=len(tried))
        for attempt in range(TPE_RETRIES + RANDOM_RETRIES):
            ot_trial = self._ot_trials[trial_id]
            if _key(ot_trial.params) not in tried:
                return config
            ot_trial.set_user_attr(REPEAT, True)
            self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
            del self._ot_trials[trial_id]
            config = super().suggest(trial_id) if attempt < TPE_RETRIES else self._suggest_with(at_random, trial_id)
        return config

    def _suggest_with(self, sampler, trial_id: str):
        tpe, self._ot_study.sampler = self._ot_study.sampler, sampler
        try:
            return super().suggest(trial_id)
        finally:
            self._ot_study.sampler = tpe


def _key(params: dict) -> tuple:
    return tuple(sorted(params.items()))


class ExtendableSearch(SearchGenerator):
    """SearchGenerator whose total is `total` on resume too: a larger one than the saved one
    continues a finished search (Tune restores its saved total, and `finished`, over the new)."""

    def __init__(self, searcher, total: int):
        super().__init__(searcher)
        self.wanted_total = total
        self.infeasible = 0  # trials that ended infeasible, each replaced by another

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        super().on_trial_complete(trial_id, result, error)
        if result and result.get(INFEASIBLE) and not result.get(REPLAYED) and self.infeasible < self.wanted_total:
            self.infeasible += 1
            self._total_samples += 1
            self._finished = False

    def get_state(self) -> dict:
        return {**super().get_state(), "infeasible": self.infeasible}

    def set_state(self, state: dict):
        super().set_state(state)
        self.infeasible = state.get("infeasible", 0)
        if self.wanted_total + self.infeasible > self._total_samples:
            self._total_samples, self._finished = self.wanted_total + self.infeasible, False
