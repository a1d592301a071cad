"""`sweeper report` and the analysis behind it: charts and a self-contained report.html from a synthetic
sweep folder, and each number the charts draw (curves, rungs, importances, the Pareto front) on its own."""

from __future__ import annotations

import base64
import html
import json
import math
import re

import numpy as np
import pytest
from PIL import Image

from sweeper import leaderboard
from sweeper.analysis import importances, load_histories, number, pareto_front, reaching, rungs, status_counts
from sweeper.errors import SweeperError
from sweeper.plan import rung_epochs
from sweeper.report import write_report
from sweeper.spec import Budget, read_search_setup

CHARTS = ("learning_curves.png", "asha_rungs.png", "param_importance.png", "objective_vs_latency.png")
SPEC = """\
name: synthetic
image_size: 96
budget: {trials: 12, max_epochs: 9, grace_epochs: 1, reduction_factor: 3}
space:
  backbone: [mobilenet_v2_0.35, mobilenet_0.25]
  head: {units: [[], [32]]}
  optimizer: [adam, rmsprop]
  learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}
"""
OOM = "ResourceExhaustedError: <OOM> allocating tensor & 'batch' 64"


def _write_sweep(folder, trials):
    """A sweep folder as `sweeper run` leaves it. `trials`: (id, status, epochs, final value, config, latency)."""
    folder.mkdir(parents=True)
    (folder / "spec.yaml").write_text(SPEC)
    (folder / "sweep.json").write_text(json.dumps(
        {"name": folder.name, "objective": "val_accuracy", "mode": "max", "task": "classification"}))
    rows = []
    for trial_id, status, epochs, final, config, latency in trials:
        config = {"cut": "full", "unfreeze": 0, "head_pooling": "avg", "head_dropout": 0.2, "batch_size": 32,
                  "augment": False, "image_size": 96, **config}
        lines, best, best_epoch = [], None, 0
        for epoch in range(1, epochs + 1):  # a curve rising towards `final`
            value = round(final - 0.25 * 0.6 ** epoch, 4)
            if best is None or value > best:
                best, best_epoch = value, epoch
            lines.append({"epoch": epoch, "val_accuracy": value, "best_val_accuracy": best, "best_epoch": best_epoch,
                          "training_iteration": epoch, "time_total_s": 2.0 * epoch, "params": 400_000,
                          "trainable_params": 1281, "size_mb": 1.6, "config": config})
        if latency is not None:
            lines[-1]["latency_ms"] = latency
        if lines:
            text = "".join(json.dumps(line) + "\n" for line in lines)
            if status == "running":  # a sweep read while a trial writes its next line
                text += f'{{"epoch": {epochs + 1}, "val_accu'
            (folder / "experiment" / f"trial_{trial_id}").mkdir(parents=True)
            (folder / "experiment" / f"trial_{trial_id}" / "result.json").write_text(text)
        rows.append(leaderboard.make_row(trial_id=trial_id, status=status, config=config,
                                         result=lines[-1] if lines else {}, objective="val_accuracy",
                                         error=OOM if status == "error" else ""))
    leaderboard.write(folder, leaderboard.ranked(rows, "val_accuracy", "max"), "val_accuracy")
    return folder


def _synthetic_trials():
    """12 finished trials whose accuracy depends on the learning rate (best near 1e-3), a failed and a running one."""
    rng = np.random.default_rng(7)
    trials = []
    for i in range(12):
        lr = float(10 ** rng.uniform(-4, -2))
        config = {"backbone": ("mobilenet_v2_0.35", "mobilenet_0.25")[i % 2], "learning_rate": lr,
                  "optimizer": ("adam", "rmsprop")[i // 2 % 2], "head_units": ("[]", "[32]")[i // 4 % 2]}
        trials.append((f"t{i:02d}", config, round(0.95 - 0.2 * abs(math.log10(lr) + 3) + rng.normal(0, 0.005), 4)))
    trials.sort(key=lambda t: -t[2])
    out = []
    for rank, (trial_id, config, final) in enumerate(trials):  # as ASHA would: the best go furthest
        status, epochs = ("completed", 9) if rank < 4 else ("stopped", 3) if rank < 7 else ("stopped", 1)
        latency = (9.0, 6.0, 7.0, 3.0)[rank] if status == "completed" else None  # a front of ranks 3, 1 and 0
        out.append((trial_id, status, epochs, final, config, latency))
    base = {"backbone": "mobilenet_0.25", "optimizer": "adam", "head_units": "[]", "learning_rate": 1e-3}
    out.append(("err", "error", 0, None, base, None))
    out.append(("run", "running", 2, 0.9, base, None))
    return out


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    folder = _write_sweep(tmp_path_factory.mktemp("results") / "synthetic", _synthetic_trials())
    return folder, write_report(folder)


def _embedded(page: str) -> dict[str, list[bytes]]:
    found: dict[str, list[bytes]] = {}
    for payload, name in re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" data-file="([^"]+)"', page):
        found.setdefault(name, []).append(base64.b64decode(payload))
    return found


def test_report_writes_four_charts_embedded_in_one_self_contained_page(sweep):
    folder, page_path = sweep
    assert page_path == folder / "report" / "report.html"
    page = page_path.read_text()
    embedded = _embedded(page)
    assert sorted(embedded) == sorted(CHARTS)
    for name in CHARTS:
        path = folder / "report" / name
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 400 and image.size[1] > 300
        assert embedded[name] == [path.read_bytes()]  # once, and the very bytes of the file beside it
    assert page.count("<figcaption>") == 4
    assert 'src="http' not in page and "href=" not in page and "<script" not in page and "<link" not in page
    assert not list((folder / "report").glob(".*.tmp"))


def test_report_page_has_the_summary_and_the_whole_leaderboard(sweep):
    folder, page_path = sweep
    page = page_path.read_text()
    rows = leaderboard.read(folder)
    assert page.count("<tr") == len(rows) + 1
    best = rows[0]
    assert f"Best trial: <b>{best['trial_id']}</b>" in page
    assert f"{len(rows)} trials: 4 completed, 8 stopped by ASHA, 1 running, 1 error" in page
    assert page.count(">stopped@3<") == 3 and page.count(">stopped@1<") == 5
    assert html.escape(OOM) in page and "<OOM>" not in page


def test_pareto_front_keeps_the_points_no_other_point_beats():
    points = [("a", 10.0, 0.90), ("b", 5.0, 0.80), ("c", 20.0, 0.95), ("d", 15.0, 0.85), ("e", 5.0, 0.70),
              ("f", 2.0, 0.75), ("g", 20.0, 0.95)]
    assert pareto_front(points, "max") == ["f", "b", "a", "c", "g"]  # d is slower and worse than a; ties both stay
    assert pareto_front(points, "min") == ["f", "e"]  # lower is better: e beats every slower point
    assert pareto_front([], "max") == []


def test_the_synthetic_sweeps_front_is_its_fastest_trials_that_nothing_beats(sweep):
    folder, _ = sweep
    rows = leaderboard.read(folder)  # best first; the completed ranks 0-3 took 9, 6, 7 and 3 ms
    points = [(r["trial_id"], number(r, "latency_ms"), number(r, "val_accuracy")) for r in rows
              if number(r, "latency_ms") is not None]
    assert [p[1] for p in points] == [9.0, 6.0, 7.0, 3.0]
    assert pareto_front(points, "max") == [rows[3]["trial_id"], rows[1]["trial_id"], rows[0]["trial_id"]]
    assert pareto_front(points[:1], "max") == [rows[0]["trial_id"]]


def _rungs_as_the_report_drew_them(grace: int, max_epochs: int, factor: int) -> list[int]:
    """report.py's own formula before it used plan.rung_epochs: grace * factor**k below max_epochs."""
    found, epoch = [], grace
    while epoch < max_epochs:
        found.append(epoch)
        epoch *= factor
    return found + [max_epochs]


def test_the_report_rungs_are_the_schedules_rungs_then_max_epochs():
    for grace in range(1, 5):
        for factor in range(2, 5):
            for max_epochs in range(1, 41):
                budget = Budget(max_epochs=max_epochs, grace_epochs=grace, reduction_factor=factor)
                expected = [*rung_epochs(grace, max_epochs, factor), max_epochs]
                assert rungs(budget) == expected == _rungs_as_the_report_drew_them(grace, max_epochs, factor), (
                    grace, factor, max_epochs)
    assert rungs(Budget(max_epochs=9, grace_epochs=1, reduction_factor=3)) == [1, 3, 9]
    assert rungs(Budget(max_epochs=27, grace_epochs=1, reduction_factor=3)) == [1, 3, 9, 27]  # 27 is the max, once
    assert rungs(Budget(max_epochs=10, grace_epochs=3, reduction_factor=4)) == [3, 10]
    assert rungs(Budget(max_epochs=3, grace_epochs=3, reduction_factor=4)) == [3]  # no rung: all train to the end


def test_trials_reaching_each_rung_and_the_status_counts(sweep):
    folder, _ = sweep
    rows = leaderboard.read(folder)  # 4 trained 9 epochs, 3 stopped at 3, 5 at 1; running at 2; the error at 0
    assert reaching(rows, [1, 3, 9]) == [13, 7, 4]
    assert reaching(rows, [2, 10]) == [8, 0]
    assert list(status_counts(rows).items()) == [("completed", 4), ("stopped", 8), ("running", 1), ("error", 1)]
    odd = [{"status": "pending"}, {"status": "error"}, {}, {"status": "diverged"}, {"status": "error"}]
    assert list(status_counts(odd).items()) == [("diverged", 1), ("error", 2), ("", 1), ("pending", 1)]
    assert status_counts([]) == {}


def test_number_takes_only_real_numbers_from_a_row():
    row = {"int": 3, "float": 0.25, "bool": True, "nan": float("nan"), "text": "0.5", "none": None}
    assert [number(row, key) for key in row] == [3.0, 0.25, None, None, None, None]
    assert number(row, "missing") is None


def test_histories_are_each_trials_last_value_per_epoch(sweep, tmp_path):
    trial = tmp_path / "experiment" / "trial_a"
    trial.mkdir(parents=True)
    lines = [{"epoch": 1, "val_accuracy": 0.5}, {"epoch": 2, "val_accuracy": 0.6}, {"epoch": 3, "val_accuracy": 0.62},
             {"epoch": 2, "val_accuracy": 0.61}, {"epoch": 3, "val_accuracy": 0.66},  # restored from epoch 1
             {"epoch": 4, "val_accuracy": None}, {"epoch": "5", "val_accuracy": 0.7}]  # neither counts
    (trial / "result.json").write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"epoch": 6, "val_a')
    (tmp_path / "experiment" / "trial_b").mkdir()
    (tmp_path / "experiment" / "trial_b" / "result.json").write_text(json.dumps({"epoch": 1, "loss": 0.3}) + "\n")
    rows = [{"trial_id": "a"}, {"trial_id": "b"}, {"trial_id": "c"}]  # b has no val_accuracy, c no folder
    assert load_histories(tmp_path, rows, "val_accuracy") == {"a": [(1, 0.5), (2, 0.61), (3, 0.66)]}
    assert load_histories(tmp_path, rows, "loss") == {"b": [(1, 0.3)]}

    folder, _ = sweep
    histories = load_histories(folder, leaderboard.read(folder), "val_accuracy")
    assert len(histories) == 13 and "err" not in histories
    assert histories["run"] == [(1, 0.75), (2, 0.81)]  # 0.9 - 0.25 * 0.6**epoch; the half-written third line skipped


def test_learning_rate_is_the_most_important_parameter(sweep):
    folder, _ = sweep
    space, _ = read_search_setup(folder / "spec.yaml")
    found, trials, why = importances(leaderboard.read(folder), space, "val_accuracy", "max")
    assert why == "" and trials == 12
    assert set(found) == {"backbone", "optimizer", "head_units", "learning_rate"}
    assert max(found, key=found.get) == "learning_rate"
    assert sum(found.values()) == pytest.approx(1.0)


def test_a_sweep_with_one_finished_trial_and_no_latency_still_gets_a_report(tmp_path):
    config = {"backbone": "mobilenet_0.25", "optimizer": "adam", "head_units": "[]", "learning_rate": 1e-3}
    folder = _write_sweep(tmp_path / "tiny", [("only", "completed", 9, 0.8, config, None),
                                                ("err", "error", 0, None, config, None)])
    page = write_report(folder).read_text()
    assert sorted(_embedded(page)) == sorted(CHARTS)
    for name in CHARTS:
        with Image.open(folder / "report" / name) as image:
            assert image.size[0] > 400 and image.size[1] > 300
    space, _ = read_search_setup(folder / "spec.yaml")
    rows = leaderboard.read(folder)
    assert importances(rows, space, "val_accuracy", "max") == (
        {}, 1, "needs at least 2 finished trials; this sweep has 1")
    twin = {**rows[0], "trial_id": "twin"}  # a second trial, same configuration and score: nothing to explain
    assert importances([rows[0], twin], space, "val_accuracy", "max")[2] == (
        "no hyperparameter varies across the 2 finished trials")
    other = {**twin, "optimizer": "rmsprop"}
    assert importances([rows[0], other], space, "val_accuracy", "max")[2] == (
        "all 2 finished trials scored the same val_accuracy")


def test_a_multi_objective_sweep_draws_its_front_against_the_cost_it_searched(tmp_path):
    config = {"backbone": "mobilenet_0.25", "optimizer": "adam", "head_units": "[]", "learning_rate": 1e-3}
    folder = _write_sweep(tmp_path / "sized", [("a", "completed", 9, 0.8, config, 3.0),
                                                 ("b", "completed", 9, 0.9, config, 5.0)])
    meta = json.loads((folder / "sweep.json").read_text())
    (folder / "sweep.json").write_text(json.dumps(
        {**meta, "objectives": ["val_accuracy", "size_mb"], "modes": ["max", "min"]}))
    page = write_report(folder).read_text()
    charts = (*CHARTS[:3], "objective_vs_size.png")
    assert sorted(_embedded(page)) == sorted(charts)
    assert sorted(p.name for p in (folder / "report").glob("*.png")) == sorted(charts)
    assert "Each point is a trial with a measured model size." in page


def test_a_folder_that_is_not_a_sweep_is_a_clear_error(tmp_path):
    with pytest.raises(SweeperError, match="no leaderboard.json"):
        write_report(tmp_path)
    leaderboard.write(tmp_path, [], "val_accuracy")
    with pytest.raises(SweeperError, match="no trials yet; nothing to report"):
        write_report(tmp_path)
