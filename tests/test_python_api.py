"""The Python API: `sweeper.run` and `sweeper.open`, and the `Sweep` they return, on a real sweep."""

from __future__ import annotations

import json

import pytest

import sweeper
from sweeper.cli import main
from sweeper.errors import SpecError, SweeperError


def _spec(digits) -> dict:
    return {"name": "api", "data": {"train": str(digits), "validation_split": 0.2}, "image_size": 16,
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


@pytest.mark.ray
def test_a_sweep_run_from_python_reads_exports_and_reports_like_the_command_line(tmp_path, digits_dir, ray_session,
                                                                               capsys):
    sweep = sweeper.run(_spec(digits_dir), out=tmp_path / "results", trials=2, max_epochs=2)
    # The summary states the baseline beside the best trial (digits: about 1 in 10 for any one class).
    recorded = json.loads((sweep.path / "sweep.json").read_text())["baseline"]
    assert recorded["objective"] == "val_accuracy" and 0.05 < recorded["value"] < 0.15
    assert f"baseline ({recorded['what']}): val_accuracy" in capsys.readouterr().out
    assert isinstance(sweep, sweeper.Sweep) and sweep.path == tmp_path / "results" / "api"
    assert sweep.state == "finished" and repr(sweep) == f"Sweep({str(sweep.path)!r}, finished, 2 trials)"

    table = sweep.leaderboard()
    header = (sweep.path / "leaderboard.csv").read_text().splitlines()[0].split(",")
    assert list(table.columns) == header and len(table) == 2  # the overrides: 2 trials of 2 epochs
    assert table.iloc[0]["trial_id"] == sweep.best["trial_id"] == sweep.trials[0]["trial_id"]
    assert sweep.best["val_accuracy"] == table["val_accuracy"].max()

    curves = sweep.curves()
    assert {"trial_id", "epoch", "val_accuracy", "val_loss", "loss"} <= set(curves.columns)
    for row in sweep.trials:  # every epoch each trial trained, and its best is the leaderboard's
        mine = curves[curves["trial_id"] == row["trial_id"]]
        assert list(mine["epoch"]) == list(range(1, row["epochs"] + 1))
        assert mine["val_accuracy"].max() == pytest.approx(row["val_accuracy"])

    # TensorBoard: one run per trial, its hyperparameters for the HParams tab and every epoch's metrics.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    for row in sweep.trials:
        events = EventAccumulator(str(sweep.path / "tensorboard" / f"trial_{row['trial_id']}"))
        events.Reload()
        mine = curves[curves["trial_id"] == row["trial_id"]]
        for tag in ("val_accuracy", "loss", "lr"):
            assert [(e.step, round(e.value, 5)) for e in events.Scalars(tag)] == \
                [(int(epoch), round(value, 5)) for epoch, value in zip(mine["epoch"], mine[tag])]
        hparams = plugin_data_pb2.HParamsPluginData.FromString(
            events.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info.hparams
        assert hparams["learning_rate"].number_value == pytest.approx(row["learning_rate"])
        assert hparams["backbone"].string_value == "simple_cnn"

    # optuna-dashboard: the trials as an Optuna study in a journal file, read back with Optuna.
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name="api",
                              storage=JournalStorage(JournalFileBackend(str(sweep.path / "optuna.journal"))))
    by_id = {t.user_attrs["trial_id"]: t for t in study.get_trials()}
    assert set(by_id) == {r["trial_id"] for r in sweep.trials} and study.direction.name == "MAXIMIZE"
    for row in sweep.trials:
        trial, mine = by_id[row["trial_id"]], curves[curves["trial_id"] == row["trial_id"]]
        assert trial.state.name == "COMPLETE" and trial.value == pytest.approx(row["val_accuracy"])
        assert trial.params["learning_rate"] == pytest.approx(row["learning_rate"])
        assert trial.intermediate_values == pytest.approx(dict(zip(mine["epoch"], mine["val_accuracy"])))

    bundle = sweep.export(tmp_path / "bundle")
    assert isinstance(bundle, sweeper.Bundle)
    image = sorted((digits_dir / "7").glob("*.png"))[0]
    [predicted] = bundle.predict(image)
    assert predicted["label"] in [str(d) for d in range(10)]
    assert "baseline (always the most common class" in sweep.report().read_text()
    assert main(["leaderboard", str(sweep.path)]) == 0 and "baseline (always the most common class" in capsys.readouterr().out

    again = sweeper.open(tmp_path / "results" / "api")
    assert again.best == sweep.best and again.objective == "val_accuracy" and again.mode == "max"
    with pytest.raises(SweeperError, match="this sweep has finished; nothing to resume"):
        again.resume()
