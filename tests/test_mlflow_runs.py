"""The MLflow tracker's own rules, on a real SQLite store without a sweep: a new sweep gets a new
parent run, a resumed one goes on in the run sweep.json records, an export leaves the sweep's
run as it was, and a store that fails mid-sweep is dropped with one warning, never the sweep.
(tests/test_python_api.py reads a real sweep's runs back.)"""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from rich.console import Console

mlflow = pytest.importorskip("mlflow")

from sweeper.errors import SweeperError  # noqa: E402
from sweeper.mlflow_runs import MlflowRuns, check, log_bundle  # noqa: E402


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow keeps a SQLite store's artifacts in ./mlruns
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _runs(uri, tmp_path, recorded=None, console=None):
    return MlflowRuns(uri, sweep_dir=tmp_path / "results" / "s", name="s", objective="val_accuracy",
                      rows={"t1": {"status": "completed", "best_epoch": 2, "val_accuracy": 0.9}}, ended_before=set(),
                      replayed_key="replayed", recorded=recorded, console=console or Console(file=io.StringIO()))


TRIAL = SimpleNamespace(trial_id="t1", config={"backbone": "simple_cnn", "learning_rate": 0.001})


def test_a_new_sweep_gets_a_new_parent_run_and_a_resumed_one_goes_on_in_its_own(store, tmp_path):
    first = _runs(store, tmp_path)
    first.on_trial_result(0, [], TRIAL, {"epoch": 1, "val_accuracy": 0.8, "loss": 0.5, "inputs_held": True})
    first.on_trial_complete(0, [], TRIAL)
    first.on_experiment_end([])
    client = mlflow.MlflowClient(store)
    assert client.get_run(first.parent).info.status == "KILLED"  # ended, not finished: no `finish` yet
    [child] = client.search_runs([first.experiment], filter_string=f"tags.`mlflow.parentRunId` = '{first.parent}'")
    assert child.info.status == "FINISHED" and child.data.tags["status"] == "completed"
    assert child.data.metrics == {"val_accuracy": 0.8, "loss": 0.5}  # the curves, not the bookkeeping
    assert child.data.params == {"backbone": "simple_cnn", "learning_rate": "0.001"}

    recorded = {"uri": store, "run_id": first.parent}
    resumed = _runs(store, tmp_path, recorded=recorded)
    assert resumed.parent == first.parent and client.get_run(first.parent).info.status == "RUNNING"
    assert _runs(store, tmp_path, recorded={"uri": "sqlite:///elsewhere.db", "run_id": first.parent}).parent != first.parent
    # The same folder run again from scratch (its sweep.json new, with no runs in it): a new parent.
    assert _runs(store, tmp_path).parent != first.parent


def test_an_export_logs_under_the_sweep_s_run_and_leaves_its_status(store, tmp_path):
    runs = _runs(store, tmp_path)
    runs.on_experiment_end([])  # an interrupted sweep: its run KILLED
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "labels.json").write_text("{}")
    checks = {"formats": {"tflite": {"val_accuracy": 0.9}}, "test": {"test_accuracy": 0.85}}
    run_id = log_bundle(store, sweep_dir=tmp_path / "results" / "s", bundle=bundle, checks=checks,
                        meta={"name": "s", "mlflow": {"uri": store, "run_id": runs.parent}})
    client = mlflow.MlflowClient(store)
    export = client.get_run(run_id)
    assert export.data.tags["mlflow.parentRunId"] == runs.parent and export.info.status == "FINISHED"
    assert export.data.metrics == {"validation/tflite/val_accuracy": 0.9, "test/test_accuracy": 0.85}
    assert [a.path for a in client.list_artifacts(run_id, "bundle")] == ["bundle/labels.json"]
    assert client.get_run(runs.parent).info.status == "KILLED"  # as the sweep left it


def test_a_store_that_fails_mid_sweep_is_dropped_with_one_warning(store, tmp_path):
    printed = io.StringIO()
    runs = _runs(store, tmp_path, console=Console(file=printed, width=200))

    class Down:
        def __getattr__(self, name):
            def fail(*args, **kwargs):
                raise ConnectionError("the tracking server went away")
            return fail

    runs.mlflow = Down()
    for _ in range(3):
        runs.on_trial_result(0, [], TRIAL, {"epoch": 1, "val_accuracy": 0.8})
    runs.on_trial_complete(0, [], TRIAL)
    runs.on_experiment_end([])
    runs.finish(tmp_path)
    lines = printed.getvalue().splitlines()
    assert lines == [f"warning: MLflow at {store} failed (the tracking server went away); the sweep goes on without it"]


def test_a_store_that_does_not_answer_is_one_line_before_anything_runs(tmp_path):
    with pytest.raises(SweeperError, match=r"^MLflow at http://127.0.0.1:9/: "):
        check("http://127.0.0.1:9/")  # the discard port: nothing listens there
