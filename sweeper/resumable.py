"""What lets a sweep continue after its driver was killed.

Ray Tune saves the trials and the searcher (with Optuna's whole history) in the experiment
folder, but not the scheduler: a resumed ASHA would start with empty rungs and judge the
remaining trials against nothing. `ResumableASHA` reads its rungs back from the trials'
results. `CheckpointPruner` deletes superseded
checkpoints only once no saved state can still name them, and `KeepEndedResults` keeps the
result log of a trial that had ended when Tune's state lags behind it, and `ended_trials`
tells such a trial how it ended, so it is not trained again.
"""

from __future__ import annotations

import time
from fnmatch import fnmatch
from pathlib import Path

from ray import tune
from ray.tune.schedulers import ASHAScheduler

from .constraints import INFEASIBLE, KEYS
from .private_apis import trial_checkpoint_name, trial_staging_folder, trial_storage
from .results import RESULTS_FILE, filesystem, listing, read_results, trial_results
from .status import ENDED, FAILED, TrialStatus


def ended_trials(saved: list[dict], experiment: str, objective: str) -> dict[str, dict]:
    """What each trial that had ended tells Tune again on resume, by trial id: its error, or its
    last result (`trial.TrialContext.ended`). Tune's saved state can lag behind the leaderboard."""
    return {row["trial_id"]: _how_it_ended(row, experiment, objective) for row in saved if row["status"] in ENDED}


def _how_it_ended(row: dict, experiment: str, objective: str) -> dict:
    """What a resumed trial that had ended tells Tune again: its error, or its last result."""
    if row["status"] in FAILED:
        return {"error": row.get("error") or row["status"]}
    if row["status"] == TrialStatus.INFEASIBLE:  # told again as it was, costs and all
        return {"result": {**{k: row[k] for k in KEYS if row.get(k) is not None}, objective: float("nan"), "epoch": 0,
                           INFEASIBLE: row.get("error") or "infeasible"}}
    history = [r for r in trial_results(experiment, row["trial_id"]) if r.get(objective) is not None]
    if not history:  # ended before it reported: Tune's searcher can only count it as failed
        return {"error": f"the trial {row['status']} before it reported a value"}
    last = history[-1]
    return {"result": {k: last[k] for k in (objective, "epoch", f"best_{objective}", "best_epoch") if k in last}}


class ResumableASHA(ASHAScheduler):
    """ASHA whose rungs survive a resume: a restored trial's past results are recorded again.
    An infeasible trial's one result (no value, 0 epochs) is no rung's business."""

    def on_trial_result(self, tune_controller, trial, result):
        if result.get(INFEASIBLE):
            return self.CONTINUE  # it ends by itself, at once
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result):
        if result.get(INFEASIBLE):
            self._trial_info.pop(trial.trial_id, None)
            return
        super().on_trial_complete(tune_controller, trial, result)

    def on_trial_add(self, tune_controller, trial):
        super().on_trial_add(tune_controller, trial)
        if trial.last_result.get(self._time_attr):  # a trial restored from a saved experiment
            fs, folder = trial_storage(trial)
            for result in read_results(folder, fs):
                # Decisions were taken when these results first came; only the rungs' records matter.
                self.on_trial_result(tune_controller, trial, result)


FORGOTTEN = ".forgotten"  # in the experiment: folders of trials a resume could not take back


def move_trial_folder_aside(experiment: str, trial_id: str) -> str | None:
    """Move a trial's folder to `<experiment>/.forgotten/`, never deleting it; returns where it went."""
    fs, path = filesystem(experiment)
    source = f"{path}/trial_{trial_id}"
    if not any(True for _ in listing(fs, source)):
        return None
    target = f"{path}/{FORGOTTEN}/trial_{trial_id}-{time.strftime('%Y%m%d-%H%M%S')}"
    fs.create_dir(f"{path}/{FORGOTTEN}")
    fs.move(source, target)
    return target


class CheckpointPruner(tune.Callback):
    """Deletes a trial's superseded checkpoints (those before the one Tune holds as its latest,
    which is its best: a trial sends a checkpoint only when it improves) once no saved state can
    still name them.

    Tune's own pruning (`CheckpointConfig.num_to_keep`) deletes the superseded checkpoint the
    moment a new one comes in, while the experiment state Tune saved a moment before still names
    it: a driver killed in between left a trial that could not resume ("Could not recover from
    checkpoint as it does not exist on storage anymore"); the fault-injection test hit it once in
    three kills. So Tune keeps every checkpoint, and this prunes those of an ended trial two
    experiment saves after it ended (the first of them may still be uploading as the second
    starts; saves come every second or more), and every trial's once the final save is done.
    A running trial keeps all its checkpoints meanwhile: at most one an epoch.
    """

    def __init__(self):
        self.saves = 0
        self.ended: dict[str, tuple[object, int]] = {}  # trial id -> (trial, saves when it ended)
        self.trials: list = []

    def on_experiment_end(self, trials, **info):
        self.trials = trials  # also called when the loop raised, before any final save: see prune_all

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.ended[trial.trial_id] = (trial, self.saves)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.ended[trial.trial_id] = (trial, self.saves)

    def get_state(self):
        """Called by Tune as it saves the experiment state; there is no state of ours to save."""
        self.saves += 1
        for trial_id, (trial, at) in list(self.ended.items()):
            if self.saves - at >= 2:
                prune_superseded(trial)
                del self.ended[trial_id]
        return None

    def prune_all(self, *, finished: bool = False) -> None:
        """Prune every trial; for the driver to call once `Tuner.fit` has returned, which it does
        only after Tune's final save of the experiment state.

        A finished sweep's trials never train again (extending it adds new ones), so each trial
        keeps just its newest checkpoint: its
        best epoch, the one export reads. That can be newer than Tune's latest: a worker stores a
        checkpoint before the driver registers it, and a driver killed in between never does.
        """
        for trial in self.trials:
            prune_superseded(trial, keep_newest_only=finished)


def prune_superseded(trial, *, keep_newest_only: bool = False) -> int:
    """Delete the trial's checkpoints older than Tune's latest one (or older than its newest);
    returns how many."""
    fs, folder = trial_storage(trial)
    names = sorted(info.base_name for info in listing(fs, folder) if fnmatch(info.base_name, "checkpoint_*"))
    keep = (names[-1] if names else None) if keep_newest_only else trial_checkpoint_name(trial)
    older = [name for name in names if keep and name < keep]
    for name in older:
        try:
            fs.delete_dir(f"{folder}/{name}")
        except (FileNotFoundError, OSError):
            pass
    return len(older)


class KeepEndedResults(tune.Callback):
    """On resume, keeps the results of an ended trial whose state Tune saved before its first
    checkpoint.

    Tune takes such a trial for one that starts from scratch: it begins the trial's result.json
    anew in its staging folder, and its next upload replaces the recorded results with the one
    line the replay reports (the fault-injection test caught a trial's curve lost so). Copying
    the recorded log into the staging folder first makes Tune append to it instead. Must come
    before Tune's JsonLoggerCallback, as every callback given to Tune does.
    """

    def __init__(self, ended: set[str]):
        self.ended = set(ended)

    def on_trial_start(self, iteration, trials, trial, **info):
        if trial.trial_id not in self.ended or trial.checkpoint is not None:  # Tune restores the log itself
            return
        import pyarrow.fs

        local = Path(trial_staging_folder(trial), RESULTS_FILE)
        if local.exists():
            return
        local.parent.mkdir(parents=True, exist_ok=True)
        fs, folder = trial_storage(trial)
        try:
            pyarrow.fs.copy_files(f"{folder}/{RESULTS_FILE}", str(local), source_filesystem=fs)
        except FileNotFoundError:
            pass
