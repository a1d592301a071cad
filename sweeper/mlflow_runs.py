"""The sweep in MLflow (`tracking: {mlflow: URI}`, or `--mlflow URI`): a parent run in an
experiment named after the sweep, and a child run per trial.

Each child run holds its trial's configuration as params, every epoch's metrics (step = epoch),
and its status, best epoch and best objective as tags once it ends; the parent run gets the
leaderboard and data summary as artifacts, and the best trial's test metrics, when the sweep
finishes. The driver logs it all, from the results Tune hands it (so it works for trials on other
nodes too), through MlflowClient with explicit run ids rather than MLflow's global active run.
A resumed sweep goes on in the parent run sweep.json records. MLflow is imported only when asked
for, and a tracker that fails mid-sweep is dropped with a warning: the sweep itself goes on.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

from ray import tune
from rich.console import Console

from .errors import SweeperError, clip
from .hyperparameters import CONFIG_KEYS
from .tensorboard_logs import epoch_curves, is_number

SWEEP_TAG = "sweeper.sweep"  # on the parent run: the sweep folder
TRIAL_TAG = "sweeper.trial_id"  # on a child run: the Tune trial id
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: nests a run under another in its UI
# The reachability check's HTTP settings: MLflow's defaults retry an unreachable server for minutes.
CHECK_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def client(uri: str):
    """An MlflowClient for `uri`; one line naming the fix when MLflow is not installed."""
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise SweeperError("tracking.mlflow needs MLflow: pip install 'sweeper-tune[mlflow]'") from None
    return MlflowClient(tracking_uri=uri)


def check(uri: str) -> None:
    """Before a sweep or an export does any work: MLflow is installed and its store answers."""
    mlflow = client(uri)
    with _environment(CHECK_ENV):
        try:
            mlflow.search_experiments(max_results=1)
        except Exception as exc:  # MLflow raises its own, requests' and SQLAlchemy's errors
            raise SweeperError(f"MLflow at {uri}: {_first_line(exc)}") from None


def experiment_id(mlflow, name: str) -> str:
    found = mlflow.get_experiment_by_name(name)
    return found.experiment_id if found else mlflow.create_experiment(name)


def recorded_run(mlflow, recorded: dict | None, uri: str) -> str | None:
    """The sweep's parent run sweep.json records for this store, if it is still there."""
    if not recorded or recorded.get("uri") != uri:
        return None
    try:
        run = mlflow.get_run(recorded["run_id"])
    except Exception:  # deleted since, or another store at the same URI
        return None
    return run.info.run_id if run.info.lifecycle_stage == "active" else None


class MlflowRuns(tune.Callback):
    """Child runs for the trials as Tune reports them. `rows` is the leaderboard callback's
    {trial_id: row} (it runs first), whose status, best epoch and best value a run is tagged with.
    `recorded` is sweep.json's `mlflow` of a resumed sweep: its parent run goes on."""

    def __init__(self, uri: str, *, sweep_dir: Path, name: str, objective: str, rows: dict[str, dict],
                 ended_before: set[str], replayed_key: str, recorded: dict | None, console: Console):
        self.mlflow = client(uri)
        self.uri, self.objective, self.rows, self.console = uri, objective, rows, console
        self.ended_before, self.replayed_key = ended_before, replayed_key
        self.experiment = experiment_id(self.mlflow, name)
        self.parent = recorded_run(self.mlflow, recorded, uri)
        if self.parent:
            self.mlflow.update_run(self.parent, status="RUNNING")
        else:
            self.parent = self.mlflow.create_run(self.experiment, run_name=name,
                                                 tags={SWEEP_TAG: str(sweep_dir)}).info.run_id
        self.runs: dict[str, str] = {}  # trial_id -> its run id
        self.failed = False

    def __getstate__(self):  # Tune pickles the Tuner's callbacks into tuner.pkl: no client or console there
        return {**self.__dict__, "mlflow": None, "console": None}

    def _safely(self, action, *args) -> None:
        """`action(*args)`, its MLflow calls; the first that fails turns the tracker off with one warning."""
        if self.failed:
            return
        try:
            action(*args)
        except Exception as exc:  # MLflow raises its own, requests' and SQLAlchemy's errors
            self.failed = True
            self.console.print(f"[yellow]warning:[/] MLflow at {self.uri} failed ({_first_line(exc)}); the sweep "
                               "goes on without it", highlight=False)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if not result.get(self.replayed_key) and isinstance(result.get("epoch"), int):
            self._safely(self._log_epoch, trial, result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        if trial.trial_id not in self.ended_before:  # else it ended in an earlier run, and was tagged then
            self._safely(self._end, trial, "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        if trial.trial_id not in self.ended_before:
            self._safely(self._end, trial, "FAILED")

    def on_experiment_end(self, trials, **info):
        # Ended, not finished: the driver finishes the parent after the test evaluation (`finish`).
        # After Ctrl+C the runs of the trials it cut off stay so too; a resume sets them running again.
        self._safely(self._end_all, "KILLED")

    def finish(self, sweep_dir: Path) -> None:
        """The parent run of a finished sweep: its files as artifacts, the best trial's test metrics."""
        self._safely(self._finish, Path(sweep_dir))

    def _log_epoch(self, trial, result: dict) -> None:
        self.mlflow.log_batch(self._run(trial), metrics=_metrics(epoch_curves(result), step=result["epoch"]))

    def _end(self, trial, status: str) -> None:
        row = self.rows.get(trial.trial_id, {})
        run_id = self._run(trial)
        for key in ("status", "best_epoch", "epochs", "error"):
            if row.get(key) not in (None, ""):
                self.mlflow.set_tag(run_id, key, str(row[key])[:5000])
        if is_number(row.get(self.objective)):
            self.mlflow.set_tag(run_id, f"best_{self.objective}", str(row[self.objective]))
        self.mlflow.set_terminated(run_id, status)
        del self.runs[trial.trial_id]

    def _end_all(self, status: str) -> None:
        for run_id in self.runs.values():
            self.mlflow.set_terminated(run_id, status)
        self.mlflow.set_terminated(self.parent, status)

    def _finish(self, sweep_dir: Path) -> None:
        from . import leaderboard
        from .results import SweepFolder

        folder = SweepFolder(sweep_dir)
        for path in (folder.leaderboard_csv, folder.data_summary):
            if path.is_file():
                self.mlflow.log_artifact(self.parent, str(path))
        best = next(iter(leaderboard.scored(leaderboard.read(sweep_dir), self.objective)), {})
        tests = {k: v for k, v in best.items() if k.startswith("test_") and is_number(v)}
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
                from mlflow.entities import Param

                run_id = self.mlflow.create_run(self.experiment, run_name=f"trial_{trial.trial_id}", tags={
                    PARENT_TAG: self.parent, TRIAL_TAG: trial.trial_id}).info.run_id
                self.mlflow.log_batch(run_id, params=[Param(key, str(trial.config[key])) for key in CONFIG_KEYS
                                                      if key in trial.config])
            self.runs[trial.trial_id] = run_id
        return self.runs[trial.trial_id]


def log_bundle(uri: str, *, sweep_dir: Path, meta: dict, bundle: Path, checks: dict) -> str:
    """`sweeper export --mlflow URI`: the bundle as artifacts, and its checks as metrics, of a run
    nested under the sweep's parent run in that store (or, for a sweep not tracked there, under a
    parent run made for it now). The sweep's own run keeps its status."""
    mlflow = client(uri)
    experiment = experiment_id(mlflow, meta["name"])
    parent = recorded_run(mlflow, meta.get("mlflow"), uri)
    made = parent is None
    if made:
        parent = mlflow.create_run(experiment, run_name=meta["name"], tags={SWEEP_TAG: str(sweep_dir)}).info.run_id
    run_id = mlflow.create_run(experiment, run_name=f"export_{Path(bundle).name}",
                               tags={PARENT_TAG: parent, "sweeper.bundle": str(bundle)}).info.run_id
    numbers = {f"{split}/{key}": value for split, metrics in _split_checks(checks).items()
               for key, value in metrics.items() if is_number(value)}
    if numbers:
        mlflow.log_batch(run_id, metrics=_metrics(numbers))
    mlflow.log_artifacts(run_id, str(bundle), artifact_path="bundle")
    mlflow.set_terminated(run_id, "FINISHED")
    if made:
        mlflow.set_terminated(parent, "FINISHED")
    return run_id


def _split_checks(checks: dict) -> dict[str, dict]:
    """The export's checks by where they were measured: each format on validation, and the test split."""
    return {**{f"validation/{name}": metrics for name, metrics in checks.get("formats", {}).items()},
            **({"test": checks["test"]} if "test" in checks else {})}


def _metrics(values: dict[str, float], step: int = 0) -> list:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(key, float(value), now, step) for key, value in values.items()]


def _first_line(exc: Exception) -> str:
    return clip(str(exc).strip().splitlines()[0]) if str(exc).strip() else type(exc).__name__


@contextmanager
def _environment(values: dict[str, str]):
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
