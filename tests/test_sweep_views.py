"""A real 20-trial sweep (cats vs dogs, ImageNet weights) watched and read back: the event lines it
prints off a terminal, the leaderboard in every format against the Ray experiment, and the report."""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import json
import re
from pathlib import Path

import pytest
from conftest import ASSETS, WEIGHTS, needs_assets, write_spec
from PIL import Image

from sweeper import leaderboard, results
from sweeper.analysis import importances
from sweeper.cli import main
from sweeper.spec import read_search_setup

pytestmark = [needs_assets, pytest.mark.ray, pytest.mark.assets]

TRIALS, MAX_EPOCHS = 20, 4
SPEC = f"""
name: cats-dogs-20
data:
  train: {ASSETS / "datasets" / "cats_vs_dogs" / "training_set"}
  validation: {ASSETS / "datasets" / "cats_vs_dogs" / "test_set"}
image_size: 96
weights: {WEIGHTS}
budget: {{trials: {TRIALS}, max_epochs: {MAX_EPOCHS}, grace_epochs: 1, reduction_factor: 2, concurrent_trials: 2, seed: 0}}
space:
  backbone: [mobilenet_v2_0.35, mobilenet_0.25]
  head: {{pooling: avg, units: [[], [16]], dropout: 0.2}}
  optimizer: [adam, rmsprop, sgd]
  learning_rate: {{low: 1.0e-4, high: 1.0e-2, log: true}}
  batch_size: [32, 64]
"""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, ray_session):
    folder = tmp_path_factory.mktemp("views")
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        assert main(["run", str(write_spec(folder, SPEC)), "--out", str(folder / "results")]) == 0
    return folder / "results" / "cats-dogs-20", captured.getvalue()


def _cli(capsys, *argv) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_off_a_terminal_the_run_prints_one_line_per_event(sweep):
    sweep_dir, printed = sweep
    assert "\x1b[" not in printed
    lines = printed.splitlines()
    assert sum(bool(re.match(r"trial \w+ started \(.+\)$", line)) for line in lines) == TRIALS
    ended = [line for line in lines if re.match(r"\[\d+/20\] trial \w+ (completed|stopped@\d|error)", line)]
    assert [int(re.match(r"\[(\d+)/", line)[1]) for line in ended] == list(range(1, TRIALS + 1))
    assert any(line.startswith("new best: trial ") for line in lines)
    assert any(re.match(r"frozen features: .*: done in \d+ s", line) for line in lines)
    # Ray's own records went to the sweep's log file, not the terminal.
    assert "trials' stdout and stderr are in" in (sweep_dir / "ray.log").read_text()
    assert results.state_of(sweep_dir) == "finished"


def test_leaderboard_formats_where_and_sort_match_the_ray_experiment(sweep, capsys):
    from ray.tune import ExperimentAnalysis

    sweep_dir, _ = sweep
    rows = json.loads(_cli(capsys, "leaderboard", str(sweep_dir), "--format", "json"))
    assert len(rows) == TRIALS and [r["rank"] for r in rows] == list(range(1, TRIALS + 1))

    # Every row is a trial of the Ray experiment, with its configuration, epochs and best value.
    analysis = ExperimentAnalysis(str(sweep_dir / "experiment"))
    trials = {t.trial_id: t for t in analysis.trials}
    assert set(trials) == {r["trial_id"] for r in rows}
    frames = {Path(path).name.removeprefix("trial_"): frame for path, frame in analysis.trial_dataframes.items()}
    for row in rows:
        trial = trials[row["trial_id"]]
        assert {k: row[k] for k in trial.config} == trial.config
        history = frames[trial.trial_id]["val_accuracy"]
        assert row["epochs"] == len(history) == trial.last_result["training_iteration"]
        assert row["val_accuracy"] == pytest.approx(history.max())
        assert row["status"] == ("completed" if row["epochs"] == MAX_EPOCHS else "stopped")
        assert row["params"] > row["trainable_params"] > 0 and row["size_mb"] > 0
        # Measured before an architecture's first trial trains, so stopped trials carry it too.
        assert row["latency_ms"] > 0
    assert any(r["status"] == "stopped" for r in rows) and any(r["status"] == "completed" for r in rows)
    # Latency is a property of the architecture: trials that only trained differently share one measurement.
    latencies = {}
    for row in rows:
        latencies.setdefault((row["backbone"], row["head_units"]), set()).add(row["latency_ms"])
    assert latencies and all(len(values) == 1 for values in latencies.values())
    assert rows[0]["val_accuracy"] >= 0.8

    table = _cli(capsys, "leaderboard", str(sweep_dir))
    body = [line for line in table.splitlines() if re.match(r"\s*\d+\s+[0-9a-f]{8}\s", line)]
    assert [line.split()[1] for line in body] == [r["trial_id"] for r in rows]
    assert any(re.search(r"stopped@[1-3]\b", line) for line in body)
    assert [r["trial_id"] for r in csv.DictReader(_cli(capsys, "leaderboard", str(sweep_dir), "--format", "csv")
                                                  .splitlines())] == [r["trial_id"] for r in rows]
    markdown = _cli(capsys, "leaderboard", str(sweep_dir), "--format", "md").splitlines()
    assert len(markdown) == 2 + TRIALS and markdown[0].startswith("| rank | trial_id | status |")

    completed = json.loads(_cli(capsys, "leaderboard", str(sweep_dir), "--format", "json", "--where", "status=completed"))
    assert [r["trial_id"] for r in completed] == [r["trial_id"] for r in rows if r["epochs"] == MAX_EPOCHS]
    chosen = json.loads(_cli(capsys, "leaderboard", str(sweep_dir), "--format", "json", "--where",
                             "backbone=mobilenet_0.25", "--sort=-learning_rate", "--top", "3"))
    expected = sorted((r for r in rows if r["backbone"] == "mobilenet_0.25"), key=lambda r: -r["learning_rate"])[:3]
    assert [r["trial_id"] for r in chosen] == [r["trial_id"] for r in expected] and expected


def test_report_of_the_real_sweep(sweep, capsys):
    sweep_dir, _ = sweep
    printed = _cli(capsys, "report", str(sweep_dir))
    page = sweep_dir / "report" / "report.html"
    assert str(page) in printed.replace("\n", "")
    text = page.read_text()
    files = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" data-file="([\w.]+)"', text)
    assert sorted(name for _, name in files) == ["asha_rungs.png", "learning_curves.png", "objective_vs_latency.png",
                                                 "param_importance.png"]
    for payload, name in files:  # the page embeds exactly the PNGs beside it
        png = sweep_dir / "report" / name
        assert base64.b64decode(payload) == png.read_bytes()
        with Image.open(png) as image:
            assert image.format == "PNG" and image.width >= 800 and image.height >= 400
    assert "http://" not in text and "https://" not in text  # self-contained
    board = text[text.index("<h2>Leaderboard</h2>"):].split("<h2>")[1]  # up to the next section
    assert board.count("<tr class=") == TRIALS

    rows = leaderboard.read(sweep_dir)
    space, _ = read_search_setup(sweep_dir / "spec.yaml")
    found, used, why = importances(rows, space, "val_accuracy", "max")  # what the chart shows
    assert why == "" and used == TRIALS and sum(found.values()) == pytest.approx(1)
    assert set(found) <= {"backbone", "head_units", "optimizer", "learning_rate", "batch_size"}
