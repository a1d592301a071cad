"""The Python API: `sweeper.run` and `sweeper.open`, and the `Sweep` they return, on one real
sweep; and the trackers it goes to (TensorBoard, the Optuna journal read by optuna-dashboard,
MLflow). The sweep is extended last, by the last test."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import sweeper
from sweeper.cli import main
from sweeper.errors import SpecError, SweeperError


def _spec(digits) -> dict:
    return {"name": "api", "data": {"train": str(digits), "validation_split": 0.2, "test_split": 0.1}, "image_size": 16,
            "weights": "none", "budget": {"trials": 8, "max_epochs": 4, "grace_epochs": 2, "concurrent_trials": 2,
                                          "seed": 0},
            "space": {"backbone": "simple_cnn", "learning_rate": [1.0e-3, 3.0e-3, 1.0e-2], "batch_size": 64}}


def test_bad_input_is_the_error_the_command_line_prints(tmp_path, digits_dir):
    with pytest.raises(TypeError, match="unknown options colour; it takes name, trials"):
        sweeper.run(_spec(digits_dir), colour="red")
    with pytest.raises(SpecError, match=r"sweep.yaml: budget.trials: 0 must be between 1"):
        sweeper.run(_spec(digits_dir), trials=0, out=tmp_path)
    with pytest.raises(SweeperError, match="is this a sweep folder"):
        sweeper.open(tmp_path)


@pytest.fixture(scope="module")
def api_sweep(tmp_path_factory, digits_dir, ray_session):
    """2 trials of 2 epochs, tracked in an MLflow SQLite store; (the Sweep, what it printed, the store's URI)."""
    from rich.console import Console

    folder = tmp_path_factory.mktemp("api")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    printed = io.StringIO()
    # MLflow puts a SQLite store's artifacts in ./mlruns: here, the test's folder.
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        sweep = sweeper.run(_spec(digits_dir), out=folder / "results", trials=2, max_epochs=2, mlflow=uri,
                            console=Console(file=printed, width=120))
    return sweep, printed.getvalue(), uri


@pytest.mark.ray
def test_a_sweep_run_from_python_reads_like_the_command_line(api_sweep, capsys):
    sweep, printed, _ = api_sweep
    # The summary states the baseline beside the best trial (digits: about 1 in 10 for any one class).
    recorded = json.loads((sweep.path / "sweep.json").read_text())["baseline"]
    assert recorded["objective"] == "val_accuracy" and 0.05 < recorded["value"] < 0.15
    assert f"baseline ({recorded['what']}): val_accuracy" in printed
    assert isinstance(sweep, sweeper.Sweep) and sweep.path.name == "api"
    assert sweep.state == "finished" and repr(sweep) == f"Sweep({str(sweep.path)!r}, finished, 2 trials)"

    table = sweep.leaderboard()
    header = (sweep.path / "leaderboard.csv").read_text().splitlines()[0].split(",")
    assert list(table.columns) == header and len(table) == 2  # the overrides: 2 trials of 2 epochs
    assert table.iloc[0]["trial_id"] == sweep.best["trial_id"] == sweep.trials[0]["trial_id"]
    assert sweep.best["val_accuracy"] == table["val_accuracy"].max()

    curves = sweep.curves()
    assert {"trial_id", "epoch", "val_accuracy", "val_f1", "val_top5_accuracy", "val_loss", "loss"} <= set(curves.columns)
    for row in sweep.trials:  # every epoch each trial trained, and its best is the leaderboard's
        mine = curves[curves["trial_id"] == row["trial_id"]]
        assert list(mine["epoch"]) == list(range(1, row["epochs"] + 1))
        assert mine["val_accuracy"].max() == pytest.approx(row["val_accuracy"])

    assert "baseline (always the most common class" in sweep.report().read_text()
    assert main(["leaderboard", str(sweep.path)]) == 0
    assert "baseline (always the most common class" in capsys.readouterr().out
    again = sweeper.open(sweep.path)
    assert again.best == sweep.best and again.objective == "val_accuracy" and again.mode == "max"


@pytest.mark.ray
def test_tensorboard_shows_every_trial_s_curves_and_hyperparameters(api_sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    sweep, curves = api_sweep[0], api_sweep[0].curves()
    for row in sweep.trials:
        events = EventAccumulator(str(sweep.path / "tensorboard" / f"trial_{row['trial_id']}"))
        events.Reload()
        mine = curves[curves["trial_id"] == row["trial_id"]]
        for tag in ("val_accuracy", "val_f1", "loss", "lr"):
            assert [(e.step, round(e.value, 5)) for e in events.Scalars(tag)] == \
                [(int(epoch), round(value, 5)) for epoch, value in zip(mine["epoch"], mine[tag])]
        hparams = plugin_data_pb2.HParamsPluginData.FromString(
            events.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info.hparams
        assert hparams["learning_rate"].number_value == pytest.approx(row["learning_rate"])
        assert hparams["backbone"].string_value == "simple_cnn"


def _journal_study(sweep):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return optuna.load_study(study_name="api",
                             storage=JournalStorage(JournalFileBackend(str(sweep.path / "optuna.journal"))))


@pytest.mark.ray
def test_the_optuna_journal_opens_in_optuna_and_in_optuna_dashboard(api_sweep):
    sweep, curves = api_sweep[0], api_sweep[0].curves()
    study = _journal_study(sweep)
    by_id = {t.user_attrs["trial_id"]: t for t in study.get_trials()}
    assert set(by_id) == {r["trial_id"] for r in sweep.trials} and study.direction.name == "MAXIMIZE"
    for row in sweep.trials:
        trial, mine = by_id[row["trial_id"]], curves[curves["trial_id"] == row["trial_id"]]
        assert trial.state.name == "COMPLETE" and trial.value == pytest.approx(row["val_accuracy"])
        assert trial.params["learning_rate"] == pytest.approx(row["learning_rate"])
        assert trial.intermediate_values == pytest.approx(dict(zip(mine["epoch"], mine["val_accuracy"])))

    # The command the README gives, `optuna-dashboard results/<sweep>/optuna.journal`, on loopback.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dashboard = subprocess.Popen([str(Path(sys.executable).with_name("optuna-dashboard")),
                                  str(sweep.path / "optuna.journal"), "--host", "127.0.0.1", "--port", str(port)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        studies = _get_json(f"http://127.0.0.1:{port}/api/studies", dashboard)["study_summaries"]
        assert [s["study_name"] for s in studies] == ["api"] and studies[0]["directions"] == ["maximize"]
        detail = _get_json(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}", dashboard)
        shown = {next(a["value"] for a in t["user_attrs"] if a["key"] == "trial_id"): t
                 for t in detail["trials"]}
        assert set(shown) == {r["trial_id"] for r in sweep.trials}
        for row in sweep.trials:
            assert shown[row["trial_id"]]["state"] == "Complete"
            assert shown[row["trial_id"]]["values"] == [pytest.approx(row["val_accuracy"])]
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=30)


def _get_json(url: str, server: subprocess.Popen, timeout_s: float = 60.0) -> dict:
    """GET `url` once the server answers (it takes a few seconds to import Optuna and start)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError):
            if server.poll() is not None:
                raise AssertionError(f"optuna-dashboard exited: {server.stderr.read().decode()[-2000:]}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.ray
def test_mlflow_holds_the_sweep_as_a_parent_run_and_each_trial_as_a_child(api_sweep):
    import mlflow

    sweep, _, uri = api_sweep
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["api"], output_format="list")
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {r.data.tags["sweeper.trial_id"]: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert len(runs) == 3 and set(children) == {row["trial_id"] for row in sweep.trials}
    assert parent.info.status == "FINISHED" and parent.info.run_name == "api"
    assert parent.data.tags["sweeper.sweep"] == str(sweep.path) and parent.data.tags["best_trial_id"] == sweep.best["trial_id"]
    assert parent.data.metrics["test_accuracy"] == pytest.approx(sweep.best["test_accuracy"])
    recorded = json.loads((sweep.path / "sweep.json").read_text())["mlflow"]
    assert recorded == {"uri": uri, "experiment_id": parent.info.experiment_id, "run_id": parent.info.run_id}
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(parent.info.run_id)}
    assert artifacts == {"leaderboard.csv", "data_summary.json"}

    client, curves = mlflow.MlflowClient(), sweep.curves()
    for row in sweep.trials:
        run = children[row["trial_id"]]
        assert run.info.status == "FINISHED" and run.info.run_name == f"trial_{row['trial_id']}"
        assert float(run.data.params["learning_rate"]) == pytest.approx(row["learning_rate"])
        assert run.data.params["backbone"] == "simple_cnn" and run.data.params["batch_size"] == "64"
        assert run.data.tags["status"] == row["status"] and run.data.tags["best_epoch"] == str(row["best_epoch"])
        assert float(run.data.tags["best_val_accuracy"]) == pytest.approx(row["val_accuracy"])
        mine = curves[curves["trial_id"] == row["trial_id"]]
        for key in ("val_accuracy", "val_f1", "loss"):
            history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
            assert history == [(int(e), pytest.approx(v)) for e, v in zip(mine["epoch"], mine[key])]


@pytest.mark.ray
def test_a_sweep_exports_and_extends_from_python(api_sweep, digits_dir, tmp_path, capsys):
    import mlflow

    sweep, _, uri = api_sweep
    bundle = sweep.export(tmp_path / "bundle", mlflow=uri)
    assert isinstance(bundle, sweeper.Bundle)
    image = sorted((digits_dir / "7").glob("*.png"))[0]
    [predicted] = bundle.predict(image)
    assert predicted["label"] in [str(d) for d in range(10)]
    # The bundle in MLflow: a run under the sweep's, its files as artifacts, its checks as metrics.
    mlflow.set_tracking_uri(uri)
    [export] = [r for r in mlflow.search_runs(experiment_names=["api"], output_format="list")
                if r.info.run_name == "export_bundle"]
    assert export.data.tags["mlflow.parentRunId"] == json.loads((sweep.path / "sweep.json").read_text())["mlflow"]["run_id"]
    files = {a.path for a in mlflow.MlflowClient().list_artifacts(export.info.run_id, "bundle")}
    assert {"bundle/model.keras", "bundle/model.tflite", "bundle/labels.json"} <= files
    assert export.data.metrics["test/test_accuracy"] == pytest.approx(sweep.best["test_accuracy"], abs=1e-6)

    again = sweeper.open(sweep.path)
    with pytest.raises(SweeperError, match=r"this sweep has finished, with 2 trials; nothing to resume \(add trials"):
        again.resume()
    # Extended: the space holds 3 configurations (its learning rates), 2 of them tried.
    with pytest.raises(SweeperError, match="--trials 2: the sweep has 2 trials already"):
        again.resume(trials=2)
    with pytest.raises(SweeperError, match="--trials 4: the space holds 3 configurations, and no configuration is "
                                           "tried twice; 1 more trial at most"):
        again.resume(trials=4)
    before = {row["trial_id"]: row for row in again.trials}
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)  # MLflow's artifacts for a SQLite store go to ./mlruns
        extended = again.resume(trials=3)
    printed = capsys.readouterr().out
    assert "adding 1 trial to 2; the searcher goes on from its history" in printed
    assert extended.state == "finished" and len(extended.trials) == 3
    # None twice. This also shows the searcher went on from its history: a new searcher, seeded as
    # the sweep is, would propose the first run's first configuration again, and know of no trial.
    assert sorted(row["learning_rate"] for row in extended.trials) == [1.0e-3, 3.0e-3, 1.0e-2]
    for row in extended.trials:  # the trials that had ended are as they were
        if row["trial_id"] in before:
            assert {**row, "rank": None} == {**before[row["trial_id"]], "rank": None}
    record = json.loads((sweep.path / "sweep.json").read_text())
    assert [(e["from"], e["to"]) for e in record["extended"]] == [(2, 3)]
    assert "trials: 3" in (sweep.path / "spec.yaml").read_text()  # a later plain resume goes on to 3
    # The test split is evaluated for the best trial, whichever it is now, and only for it.
    assert [row["trial_id"] for row in extended.trials if "test_accuracy" in row] == [extended.best["trial_id"]]
    changed = extended.best["trial_id"] != sweep.best["trial_id"]
    assert ("its test evaluation stands" in printed) != changed
    assert len(_journal_study(sweep).get_trials()) == 3
    # MLflow: the same parent run, finished again, with a third child.
    runs = mlflow.search_runs(experiment_names=["api"], output_format="list")
    assert len([r for r in runs if r.data.tags.get("mlflow.parentRunId") == record["mlflow"]["run_id"]]) == 4
    assert mlflow.get_run(record["mlflow"]["run_id"]).info.status == "FINISHED"
