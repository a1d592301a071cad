"""The sweep's trials as an Optuna study in `<sweep>/optuna.journal`, for optuna-dashboard.

Optuna's JournalStorage keeps a study as a file of JSON lines (no pickle), appended to as each
trial ends, so `optuna-dashboard results/<sweep>/optuna.journal` shows the sweep live: every
trial's parameters (as the search sampled them), its best value, its objective after each epoch,
and whether it completed, was stopped by ASHA (pruned) or failed (an infeasible trial, which broke
the spec's constraints, fails with the reason in its `infeasible` attribute). The searcher's own study stays
in memory, inside Tune's saved state; this one is written by the driver beside the sweep.
"""

from __future__ import annotations

import math
from pathlib import Path

from ray import tune

from .constraints import INFEASIBLE
from .hyperparameters import CONFIG_KEYS
from .objective import Objective
from .space import Space


class OptunaJournal(tune.Callback):
    def __init__(self, path: Path, *, study_name: str, space: Space, objective: str, mode: str, max_epochs: int,
                 replayed_key: str):
        self.path, self.study_name, self.space = Path(path), study_name, space
        self.objective, self.mode, self.max_epochs, self.replayed_key = objective, mode, max_epochs, replayed_key
        self.values: dict[str, dict[int, float]] = {}  # trial_id -> {epoch: objective}
        self._study = None
        self._written: set[str] = set()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        value = result.get(self.objective)
        if isinstance(result.get("epoch"), int) and isinstance(value, (int, float)) and math.isfinite(value):
            self.values.setdefault(trial.trial_id, {})[result["epoch"]] = float(value)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._add(trial, failed=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._add(trial, failed=True)

    def _add(self, trial, *, failed: bool) -> None:
        import optuna

        from .analysis import TrialRecorder
        from .search_space import DefineByRun, quiet_optuna

        study = self._open()
        if trial.trial_id in self._written or (trial.last_result or {}).get(self.replayed_key):
            return
        recorder = TrialRecorder({k: trial.config.get(k) for k in CONFIG_KEYS})
        DefineByRun(self.space)(recorder)
        values = self.values.get(trial.trial_id, {})
        infeasible = (trial.last_result or {}).get(INFEASIBLE)
        best = (max if self.mode == "max" else min)(values.values()) if values else None
        if failed or best is None:
            state = optuna.trial.TrialState.FAIL
        elif max(values) >= self.max_epochs:
            state = optuna.trial.TrialState.COMPLETE
        else:
            state = optuna.trial.TrialState.PRUNED  # stopped at an ASHA rung (or by the time limit)
        with quiet_optuna():
            study.add_trial(optuna.trial.create_trial(
                params=recorder.params, distributions=recorder.distributions, state=state,
                value=best if state == optuna.trial.TrialState.COMPLETE else None,
                intermediate_values=values,
                user_attrs={"trial_id": trial.trial_id, **({INFEASIBLE: infeasible} if infeasible else {})}))
        self._written.add(trial.trial_id)

    def _open(self):
        """The study in the journal file, created on first use; a resumed sweep's adds to its own."""
        if self._study is None:
            import optuna
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            from .search_space import quiet_optuna

            storage = JournalStorage(JournalFileBackend(str(self.path)))
            with quiet_optuna():
                self._study = optuna.create_study(storage=storage, study_name=self.study_name, load_if_exists=True,
                                                  direction=Objective(self.objective, self.mode).direction)
            self._written = {t.user_attrs.get("trial_id") for t in self._study.get_trials(deepcopy=False)}
        return self._study
