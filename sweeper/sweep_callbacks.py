"""What Tune calls while a sweep runs: the stoppers (stop_at, the failure guard, the time
limit's bookkeeping) and the callback that keeps the leaderboard files current.

StopAt and FailureGuard are pickled into Tune's saved state; `driver` re-exports them under
the module name sweeps saved before this module existed.
"""

from __future__ import annotations

import time
from pathlib import Path

from ray import tune

from . import leaderboard, private_apis
from .constraints import INFEASIBLE
from .objective import Objective
from .resumable import move_trial_folder_aside
from .spec import Spec
from .status import ENDED, FAILED, TrialStatus


class StopAt(tune.Stopper):
    """Ends the whole sweep once any trial reaches the target value of the objective."""

    def __init__(self, metric: str, mode: str, target: float):
        self.metric, self.mode, self.target, self.reached = metric, mode, target, False

    def __call__(self, trial_id, result) -> bool:
        value = result.get(self.metric)
        if value is not None and Objective(self.metric, self.mode).reached(value, self.target):
            self.reached = True
        return False

    def stop_all(self) -> bool:
        return self.reached


class EarlyEnd:
    """Whether the sweep ended before its budget on purpose: a stopper's (stop_at, the failure
    guard) or the time limit; not an interruption."""

    def __init__(self, stoppers: list[tune.Stopper], time_limit: float | None):
        self.stoppers, self.time_limit, self.started = stoppers, time_limit, time.time()

    def __call__(self) -> bool:
        timed_out = self.time_limit is not None and time.time() - self.started >= self.time_limit
        return timed_out or any(stopper.stop_all() for stopper in self.stoppers)


class FailureGuard(tune.Callback, tune.Stopper):
    """Stops a sweep whose first `limit` trials all failed before reporting anything, instead of
    failing through the whole budget (bad weights, data the model cannot take, a space that diverges)."""

    def __init__(self, limit: int, saved: list[dict] = ()):
        # A resumed sweep counts the trials of its earlier sessions too.
        self.limit = limit
        self.failed = sum(r["status"] in FAILED for r in saved)
        self.reported = any(r.get("epochs") for r in saved)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.reported = True

    def on_trial_error(self, iteration, trials, trial, **info):
        self.failed += 1

    def __call__(self, trial_id, result) -> bool:
        return False

    def stop_all(self) -> bool:
        return not self.reported and self.failed >= self.limit


class AloneAfterGpuOutOfMemory(tune.Callback):
    """Gives a trial that ran out of GPU memory while sharing a GPU a whole one for its retry
    (budget.max_failures), so that no other trial's memory competes with it (gpus.py)."""

    def on_trial_recover(self, iteration, trials, trial, **info):
        if retried_alone(_error_message(trial)):
            private_apis.set_trial_resources(trial, {**private_apis.trial_resources(trial), "GPU": 1})


def retried_alone(message: str) -> str:
    """The note a trial's row carries when it was retried alone after running out of GPU memory;
    "" for any other error."""
    said = message.partition("GpuOutOfMemory: ")[2].partition(":")[0]  # "out of GPU memory with 0.5 of a GPU"
    return f"{said}; retried alone on a whole GPU" if said.endswith(" of a GPU") else ""


class LeaderboardCallback(tune.Callback):
    """Rewrites the leaderboard files whenever a trial starts, reports or ends. `rows` is {trial_id: row}.

    A resumed sweep starts from its `saved` rows: ended trials keep theirs, whatever Tune's saved
    state (which can lag a moment behind) says of them. The `view` (the live view) is told each
    event once the rows are current, so it always draws what the files hold.
    """

    def __init__(self, sweep_dir: Path, spec: Spec, saved: list[dict] | None, experiment: str, early_end: EarlyEnd,
                 triage: dict[tuple, float] | None = None):
        self.sweep_dir, self.spec, self.experiment, self.early_end = sweep_dir, spec, experiment, early_end
        self.triage = triage  # {(backbone, cut, image_size): score}, from triage.py
        self.rows: dict[str, dict] = {r["trial_id"]: r for r in saved or []}
        self.ended_before = {trial_id for trial_id, r in self.rows.items() if r["status"] in ENDED}
        self.reconciled = saved is None
        self.view: tune.Callback | None = None

    def on_step_begin(self, iteration, trials, **info):
        if not self.reconciled:  # the first step of a resumed sweep: Tune has restored its trials
            self.reconciled = True
            self._forget_unknown({trial.trial_id for trial in trials})

    def _forget_unknown(self, known: set[str]) -> None:
        """Drop the running trials Tune's saved state does not know: started just before the driver
        was killed, after the last save. Their configurations are proposed again, as new trials;
        their folders are moved aside, not deleted. An ended trial's row is never dropped."""
        for trial_id in set(self.rows) - known - self.ended_before:
            del self.rows[trial_id]
            move_trial_folder_aside(self.experiment, trial_id)
        self._write()

    def on_trial_start(self, iteration, trials, trial, **info):
        if trial.trial_id not in self.ended_before:
            self._update(trial, TrialStatus.RUNNING, trial.last_result or {})
        self._tell("on_trial_start", iteration, trials, trial, **info)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if trial.trial_id not in self.ended_before:
            self._update(trial, TrialStatus.RUNNING, result)
        self._tell("on_trial_result", iteration, trials, trial, result, **info)

    def on_trial_complete(self, iteration, trials, trial, **info):
        if trial.trial_id not in self.ended_before:
            result = trial.last_result or {}
            if result.get(INFEASIBLE):
                self._update(trial, TrialStatus.INFEASIBLE, result, result[INFEASIBLE])
            else:
                ran_all = result.get("epoch", 0) >= self.spec.budget.max_epochs
                self._update(trial, TrialStatus.COMPLETED if ran_all else TrialStatus.STOPPED, result)
        self._tell("on_trial_complete", iteration, trials, trial, **info)

    def on_trial_recover(self, iteration, trials, trial, **info):
        note = retried_alone(_error_message(trial))
        if note and trial.trial_id not in self.ended_before:
            self.rows.setdefault(trial.trial_id, {})["retried"] = note
            self._update(trial, TrialStatus.RUNNING, trial.last_result or {})

    def on_trial_error(self, iteration, trials, trial, **info):
        if trial.trial_id not in self.ended_before:
            message = _error_message(trial)
            diverged = "TrialDiverged: " in message
            self._update(trial, TrialStatus.DIVERGED if diverged else TrialStatus.ERROR, trial.last_result or {},
                         message.split("TrialDiverged: ", 1)[-1] if diverged else message)
        self._tell("on_trial_error", iteration, trials, trial, **info)

    def on_step_end(self, iteration, trials, **info):
        self._tell("on_step_end", iteration, trials, **info)

    def on_experiment_end(self, trials, **info):
        # A sweep that ends early (stop_at, the failure guard, the time limit) terminates its running
        # trials without telling on_trial_complete. Otherwise (Ctrl+C) they stay `running`, to resume.
        if self.early_end():
            for trial in trials:
                if self.rows.get(trial.trial_id, {}).get("status") == TrialStatus.RUNNING and trial.status == "TERMINATED":
                    self._update(trial, TrialStatus.STOPPED, trial.last_result or {})
        self._tell("on_experiment_end", trials, **info)

    def _tell(self, event: str, *args, **kwargs) -> None:
        if self.view is not None:
            getattr(self.view, event)(*args, **kwargs)

    def _update(self, trial, status, result, error=""):
        retried = self.rows.get(trial.trial_id, {}).get("retried")  # kept for the rest of the trial's life
        self.rows[trial.trial_id] = leaderboard.make_row(
            trial_id=trial.trial_id, status=status, config=trial.config, result=result,
            objective=self.spec.objective, error=error,
        )
        if retried:
            self.rows[trial.trial_id]["retried"] = retried
        if self.triage:
            config = trial.config
            self.rows[trial.trial_id]["triage"] = self.triage.get((config.get("backbone"), config.get("cut"),
                                                                   config.get("image_size")))
        self._write()

    def _write(self) -> None:
        rows = leaderboard.mark_pareto(leaderboard.ranked(self.rows.values(), self.spec.objective, self.spec.mode),
                                       self.spec.objectives, self.spec.modes)
        leaderboard.write(self.sweep_dir, rows, self.spec.objective)


def _error_message(trial) -> str:
    """The last line of the trial's traceback: the exception and its message."""
    path = getattr(trial, "error_file", None)
    if path and Path(path).is_file():
        text = Path(path).read_text()
        if "The actor died unexpectedly" in text and "OutOfMemoryError" not in text:  # Ray's words run long
            return ("the trial's worker process died: killed by the system (often the out-of-memory killer) "
                    "or its node was lost")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return lines[-1][:500]
    return "the trial failed (no error message was recorded)"
