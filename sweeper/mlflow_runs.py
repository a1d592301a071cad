"""The sweep in MLflow (`tracking: {mlflow: URI}`, or `--mlflow URI`): a parent run in an
experiment named after the sweep, and a child run per trial.

Each child run holds its trial's configuration as params, every epoch's metrics (step = epoch),
and its status, best epoch and best objective as tags once it ends; the parent run gets the
leaderboard and data summary as artifacts, and the best trial's test metrics, when the sweep
finishes. The driver logs it all, from the results Tune hands it (so it works for trials on other
nodes too), through MlflowClient with explicit run ids rather than MLflow's global active run.
A resumed sweep finds its runs again by their tags. MLflow is imported only when asked for.
"""

from __future__ import annotations

import time
from pathlib import Path

from ray import tune

from .errors import SweeperError
from .hyperparameters import CONFIG_KEYS
from .tensorboard_logs import TRAINING_METRICS, is_number

SWEEP_TAG = "sweeper.sweep"  # on the parent run: the sweep folder
TRIAL_TAG = "sweeper.trial_id"  # on a child run: the Tune trial id
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: nests a run under another in its UI


def client(uri: str):
    """An MlflowClient for `uri`; one line naming the fix when MLflow is not installed."""
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise SweeperError("tracking.mlflow needs MLflow: pip install 'sweeper[mlflow]'") from None
    return MlflowClient(tracking_uri=uri)


def experiment_id(mlflow, name: str) -> str:
    found = mlflow.get_experiment_by_name(name)
    return found.experiment_id if found else mlflow.create_experiment(name)


def sweep_run(mlflow, experiment: str, sweep_dir: Path, name: str) -> str:
    """The sweep's parent run: the one a run of this folder started before (a resume), or a new one."""
    runs = mlflow.search_runs([experiment], filter_string=f"tags.`{SWEEP_TAG}` = '{_quoted(sweep_dir)}'",
                              max_results=1)
    if runs:
        mlflow.update_run(runs[0].info.run_id, status="RUNNING")
        return runs[0].info.run_id
    return mlflow.create_run(experiment, run_name=name, tags={SWEEP_TAG: str(sweep_dir)}).info.run_id


class MlflowRuns(tune.Callback):
    """Child runs for the trials as Tune reports them. `rows` is the leaderboard callback's
    {trial_id: row} (it runs first), whose status, best epoch and best value a run is tagged with."""

    def __init__(self, uri: str, *, sweep_dir: Path, name: str, objective: str, rows: dict[str, dict],
                 ended_before: set[str], replayed_key: str):
        self.mlflow = client(uri)
        self.uri, self.objective, self.rows = uri, objective, rows
        self.ended_before, self.replayed_key = ended_before, replayed_key
        self.experiment = experiment_id(self.mlflow, name)
        self.parent = sweep_run(self.mlflow, self.experiment, Path(sweep_dir), name)
        self.runs: dict[str, str] = {}  # trial_id -> its run id

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get(self.replayed_key) or not isinstance(result.get("epoch"), int):
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, float(value), now, result["epoch"]) for key, value in result.items()
                   if (key in TRAINING_METRICS or key.startswith("val_")) and is_number(value)]
        self.mlflow.log_batch(self._run(trial), metrics=metrics)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._end(trial, "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._end(trial, "FAILED")

    def on_experiment_end(self, trials, **info):
        # Ended, not finished: the driver finishes it after the test evaluation (`finish`). After
        # Ctrl+C it stays so, and a resume sets it running again.
        self.mlflow.set_terminated(self.parent, "KILLED")

    def finish(self, sweep_dir: Path, objective: str) -> None:
        """The parent run of a finished sweep: its files as artifacts, the best trial's test metrics."""
        from . import leaderboard
        from .results import SweepFolder

        folder = SweepFolder(Path(sweep_dir))
        for path in (folder.leaderboard_csv, folder.data_summary):
            if path.is_file():
                self.mlflow.log_artifact(self.parent, str(path))
        best = next(iter(leaderboard.scored(leaderboard.read(sweep_dir), objective)), {})
        tests = {k: float(v) for k, v in best.items() if k.startswith("test_") and is_number(v)}
        if tests:
            self.mlflow.log_batch(self.parent, metrics=_metrics(tests))
        if best.get("trial_id"):
            self.mlflow.set_tag(self.parent, "best_trial_id", best["trial_id"])
        self.mlflow.set_terminated(self.parent, "FINISHED")

    def _run(self, trial) -> str:
        if trial.trial_id not in self.runs:
            found = self.mlflow.search_runs([self.experiment], max_results=1, filter_string=(
                f"tags.`{TRIAL_TAG}` = '{trial.trial_id}' and tags.`{PARENT_TAG}` = '{self.parent}'"))
            if found:  # a resumed trial goes on in its run
                run_id = found[0].info.run_id
                self.mlflow.update_run(run_id, status="RUNNING")
            else:
                run_id = self.mlflow.create_run(self.experiment, run_name=f"trial_{trial.trial_id}", tags={
                    PARENT_TAG: self.parent, TRIAL_TAG: trial.trial_id}).info.run_id
                from mlflow.entities import Param

                self.mlflow.log_batch(run_id, params=[Param(key, str(trial.config[key])) for key in CONFIG_KEYS
                                                      if key in trial.config])
            self.runs[trial.trial_id] = run_id
        return self.runs[trial.trial_id]

    def _end(self, trial, status: str) -> None:
        if trial.trial_id in self.ended_before:
            return  # ended in an earlier run of the sweep, and tagged then
        row = self.rows.get(trial.trial_id, {})
        run_id = self._run(trial)
        for key in ("status", "best_epoch", "epochs", "error"):
            if row.get(key) not in (None, ""):
                self.mlflow.set_tag(run_id, key, str(row[key])[:5000])
        if is_number(row.get(self.objective)):
            self.mlflow.set_tag(run_id, f"best_{self.objective}", str(row[self.objective]))
        self.mlflow.set_terminated(run_id, status)


def log_bundle(uri: str, *, sweep_dir: Path, name: str, bundle: Path, checks: dict) -> str:
    """`sweeper export --mlflow URI`: the bundle as artifacts, and its checks as metrics, of a run
    nested under the sweep's parent run in that store (made if the sweep was not tracked there)."""
    mlflow = client(uri)
    experiment = experiment_id(mlflow, name)
    parent = sweep_run(mlflow, experiment, Path(sweep_dir), name)
    run_id = mlflow.create_run(experiment, run_name=f"export_{Path(bundle).name}",
                               tags={PARENT_TAG: parent, "sweeper.bundle": str(bundle)}).info.run_id
    numbers = {f"{split}/{key}": value for split, metrics in _split_checks(checks).items()
               for key, value in metrics.items() if is_number(value)}
    if numbers:
        mlflow.log_batch(run_id, metrics=_metrics(numbers))
    mlflow.log_artifacts(run_id, str(bundle), artifact_path="bundle")
    mlflow.set_terminated(run_id, "FINISHED")
    if mlflow.get_run(parent).info.status == "RUNNING":  # made just now: nothing else will end it
        mlflow.set_terminated(parent, "FINISHED")
    return run_id


def _split_checks(checks: dict) -> dict[str, dict]:
    """The export's checks by where they were measured: each format on validation, and the test split."""
    return {**{f"validation/{name}": metrics for name, metrics in checks.get("formats", {}).items()},
            **({"test": checks["test"]} if "test" in checks else {})}


def _metrics(values: dict[str, float]) -> list:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(key, float(value), now, 0) for key, value in values.items()]


def _quoted(path: Path) -> str:
    return str(path).replace("'", "\\'")
