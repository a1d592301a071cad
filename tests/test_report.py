"""`sweeper report` and the analysis behind it: charts and a self-contained report.html from a synthetic
sweep folder, and each number the charts draw (curves, rungs, importances, the Pareto front) on its own;
the test evaluation and the data summary the page shows, from the files the sweep folder holds (written
here by the very functions a sweep writes them with: `evaluate.report`, `DatasetIndex.summary`)."""

from __future__ import annotations

import base64
import html
import json
import math
import re

import numpy as np
import pytest
from PIL import Image

from sweeper import evaluate, images, leaderboard, report, results
from sweeper.analysis import importances, load_histories, number, pareto_front, reaching, rungs, status_counts
from sweeper.data import DatasetIndex, build_index
from sweeper.errors import SweeperError
from sweeper.plan import rung_epochs
from sweeper.report import write_report
from sweeper.spec import Budget, DataSpec, read_search_setup
from sweeper.status import SweepState

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


CLASSES = ("cat", "dog", "a_long_class_name_for_the_table")


def _image_folder(folder, per_class: int = 14):
    """Small random PNGs, a folder per class, with two files indexing must skip: one not an image, one unreadable."""
    rng = np.random.default_rng(3)
    for name in CLASSES:
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / name / f"{i:02d}.png")
    (folder / "cat" / "notes.txt").write_text("not an image")
    (folder / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    return folder


def write_evaluated_sweep(folder):
    """The synthetic sweep as a finished sweep leaves it: data_summary.json (the index after decoding, as the
    driver writes it) and the best trial's test evaluation (evaluate.report's files, and its row's test_* keys)."""
    _write_sweep(folder, _synthetic_trials())
    data = _image_folder(folder.parent / "images")
    index = build_index(DataSpec(train=data, validation_split=0.2, test_split=0.3), "classification")
    index, _ = images.load_images(index, 8, folder.parent / "cache")  # the unreadable image leaves the index here
    (folder / "data_summary.json").write_text(json.dumps({**index.summary(), "cache": {}}))
    truth = index.targets[index.indices("test")]
    predicted = np.where(np.arange(len(truth)) % 4 == 0, (truth + 1) % len(CLASSES), truth)  # 1 in 4 wrong
    rows = leaderboard.read(folder)
    rows[0].update(evaluate.report(index, np.eye(len(CLASSES))[predicted], "test", folder / "evaluation"))
    leaderboard.write(folder, rows, "val_accuracy")
    return folder


def write_regression_sweep(folder):
    """The same trials as a regression sweep's: its data summary (target statistics per split) and its
    test evaluation (RMSE, MAE, R², the plot); returns the folder, the test split's (truth, prediction)
    and the training targets' mean."""
    _write_sweep(folder, _synthetic_trials())
    meta = json.loads((folder / "sweep.json").read_text())
    (folder / "sweep.json").write_text(json.dumps({**meta, "task": "regression"}))
    data = folder.parent / "targets"
    data.mkdir()
    paths = []
    for i in range(30):  # the summary's fingerprint reads each file's size and time
        (data / f"{i:02d}.png").write_bytes(b"")
        paths.append(str(data / f"{i:02d}.png"))
    targets = np.linspace(1.0, 8.0, 30).astype(np.float32)
    splits = np.array(["train", "train", "validation", "test", "train"] * 6)
    index = DatasetIndex(tuple(paths), targets, splits, classes=())
    (folder / "data_summary.json").write_text(json.dumps({**index.summary(), "cache": {}}))
    truth = targets[splits == "test"].astype(float)
    predicted = truth + np.array([0.5, -0.3, 0.2, -0.6, 0.1, 0.4])
    rows = leaderboard.read(folder)
    rows[0].update(evaluate.report(index, predicted, "test", folder / "evaluation"))
    leaderboard.write(folder, rows, "val_accuracy")
    return folder, truth, predicted, float(targets[splits == "train"].mean())


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    folder = write_evaluated_sweep(tmp_path_factory.mktemp("results") / "evaluated")
    return folder, write_report(folder).read_text()


def _section(page: str, title: str) -> str:
    """The page from the <h2> titled `title` to the next <h2> (or the end)."""
    start = page.index(f"<h2>{title}</h2>")
    end = page.find("<h2>", start + 1)
    return page[start:end if end > 0 else None]


def _table_rows(part: str) -> list[list[str]]:
    """Each body row of the tables in `part`, as the cells' text."""
    body = "".join(re.findall(r"<tbody>(.*?)</tbody>", part, re.S))
    return [[html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


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
    # The objective as in the terminal: 4 significant digits, trailing zeros kept (0.8990, not 0.899).
    assert all(f'<td class="num">{leaderboard.format_objective(r["val_accuracy"])}</td>' in page
               for r in rows if r.get("val_accuracy") is not None)
    assert any(leaderboard.format_objective(r["val_accuracy"]) != leaderboard.format_value(r["val_accuracy"])
               for r in rows if r.get("val_accuracy") is not None)  # the sweep has such a value


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


# --- the test evaluation and the data, as the sweep folder recorded them -------------------------


def test_the_test_evaluation_shows_scikit_learns_report_as_a_table_and_the_confusion_matrix(evaluated):
    folder, page = evaluated
    part = _section(page, "Test evaluation")
    best = leaderboard.read(folder)[0]  # 16 test images, 1 in 4 predicted as the next class
    assert best["test_accuracy"] == 0.75 and best["test_images"] == 16
    assert (f"The best trial, <b>{best['trial_id']}</b>, evaluated from its best checkpoint on 16 test images"
            in part) and "test_accuracy 0.75" in part
    rows = _table_rows(part)
    assert [row[0] for row in rows] == [*sorted(CLASSES), "accuracy", "macro avg", "weighted avg"]
    written = json.loads((folder / "evaluation" / "classification_report.json").read_text())
    for row in rows[:3] + rows[4:]:
        scores = written[row[0]]
        assert [float(cell) for cell in row[1:]] == pytest.approx(
            [scores["precision"], scores["recall"], scores["f1-score"], scores["support"]], abs=5e-5)
    assert rows[3] == ["accuracy", "", "", "0.75", "16"]
    test_counts = json.loads((folder / "data_summary.json").read_text())["per_split"]["test"]
    assert {row[0]: int(row[4]) for row in rows[:3]} == test_counts  # the supports are the test split's images
    embedded = _embedded(part)
    assert list(embedded) == ["evaluation/confusion_matrix.png"]
    assert embedded["evaluation/confusion_matrix.png"] == [(folder / "evaluation" / "confusion_matrix.png").read_bytes()]
    assert sorted(_embedded(page)) == sorted([*CHARTS, "evaluation/confusion_matrix.png"])


def test_the_summary_names_the_test_results_and_the_data(evaluated):
    _, page = evaluated
    header = page[page.index("<header"):page.index("</header>")]
    assert "; on the test split: test_accuracy 0.75, test_f1 " in header
    assert "<p>Data: 42 images, 3 classes; 2 files skipped while indexing it (listed under Data).</p>" in header
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    titles = re.findall(r"<h2>(.*?)</h2>", page)
    assert titles == ["Test evaluation", "Charts", "Leaderboard", "Data"]


def test_the_data_section_shows_images_per_class_and_split_and_the_files_skipped(evaluated):
    folder, page = evaluated
    part = _section(page, "Data")
    summary = json.loads((folder / "data_summary.json").read_text())
    splits = ["train", "validation", "test"]
    assert list(summary["per_split"]) == splits
    rows = _table_rows(part)
    per_class = [[name, *(str(summary["per_split"][s][name]) for s in splits)] for name in sorted(CLASSES)]
    totals = [sum(summary["per_split"][s].values()) for s in splits]
    assert rows[:4] == [*per_class, ["all classes", *map(str, totals)]]
    assert sum(totals) == 42 == 3 * 14  # every good image in one split; the two bad files in none
    assert "Task: classification; 42 images in 3 splits (train, validation, test)" in part
    images = folder.parent / "images"
    assert [row[0] for row in rows[4:]] == [str(images / "cat" / "notes.txt"), str(images / "dog" / "broken.png")]
    assert rows[4][1] == "not an image file" and rows[5][1].startswith("unreadable image: UnidentifiedImageError")
    assert "<details open><summary>2 files skipped while indexing and decoding the data, in no split</summary>" in part


def test_a_regression_sweeps_test_evaluation_shows_rmse_mae_r2_and_the_plot(tmp_path):
    folder, truth, predicted, train_mean = write_regression_sweep(tmp_path / "regression")
    page = write_report(folder).read_text()
    part = _section(page, "Test evaluation")
    rows = {row[0]: row[1] for row in _table_rows(part)}
    error = predicted - truth
    expected = {"RMSE": np.sqrt(np.mean(error ** 2)), "MAE": np.mean(np.abs(error)),
                "R²": 1 - np.sum(error ** 2) / np.sum((truth - truth.mean()) ** 2), "images": 6,
                "RMSE of always predicting the training mean": np.sqrt(np.mean((truth - train_mean) ** 2))}
    assert list(rows) == list(expected)
    assert [float(v) for v in rows.values()] == pytest.approx(list(expected.values()), rel=1e-3)
    assert list(_embedded(part)) == ["evaluation/predicted_vs_true.png"]
    assert "regression targets" in page and "<th>target</th><th>train</th><th>validation</th><th>test</th>" in page


def test_without_an_evaluation_the_page_says_why_in_one_sentence(sweep, tmp_path):
    _, page_path = sweep
    page = page_path.read_text()
    assert _section(page, "Test evaluation") == (
        "<h2>Test evaluation</h2>\n<p>No test evaluation: this sweep folder has no evaluation/ (its data had no "
        "test split, or the sweep ended before the evaluation).</p>\n")
    assert ("<p>No data summary: data_summary.json: not in this sweep folder (a sweep writes it as it starts, "
            "once its images are decoded).</p>") in _section(page, "Data")

    config = {"backbone": "mobilenet_0.25", "optimizer": "adam", "head_units": "[]", "learning_rate": 1e-3}
    folder = _write_sweep(tmp_path / "s", [("a", "completed", 9, 0.8, config, None)])
    rows = leaderboard.read(folder)
    without_test = {"per_split": {"train": {"cat": 3}, "validation": {"cat": 1}}}
    assert report._no_evaluation(folder, rows, "val_accuracy", without_test).startswith(
        "No test evaluation: the data has no test split")
    results.mark(folder, SweepState.RUNNING)  # by this process: alive, so running
    with_test = {"per_split": {**without_test["per_split"], "test": {"cat": 1}}}
    assert report._no_evaluation(folder, rows, "val_accuracy", with_test) == (
        "No test evaluation yet: the sweep is running; its best trial is evaluated on the test split once every "
        "trial has ended.")
    results.mark(folder, SweepState.FINISHED)
    assert report._no_evaluation(folder, [{**rows[0], "val_accuracy": None}], "val_accuracy", with_test) == (
        "No test evaluation: no trial finished an epoch, so there was nothing to evaluate.")

    (folder / "evaluation").mkdir()  # damaged: each file says so, on one line naming it
    (folder / "evaluation" / "classification_report.json").write_text('{"cat": {"precision"')
    said = report._classification_evaluation(folder)
    assert said[0].startswith("<p>evaluation/classification_report.json: unreadable (")
    assert said[1] == "<p>evaluation/confusion_matrix.png: not in this sweep folder.</p>"


# --- charts of sweeps where every trial failed --------------------------------------------------

FAILED_CONFIG = {"backbone": "mobilenet_0.25", "optimizer": "adam", "head_units": "[]", "learning_rate": 1e-3}


def _asha_chart(folder):
    rows = leaderboard.read(folder)
    _, budget = read_search_setup(folder / "spec.yaml")
    return rows, report._plot_asha_rungs(rows, load_histories(folder, rows, "val_accuracy"), "val_accuracy", budget)


def _legend(ax) -> list[str]:
    return [text.get_text() for text in ax.get_legend().get_texts()]


def test_asha_chart_of_trials_that_all_failed_before_a_rung_says_so(tmp_path):
    folder = _write_sweep(tmp_path / "failed", [(f"e{i}", "error", 0, None, FAILED_CONFIG, None) for i in range(3)])
    rows, fig = _asha_chart(folder)
    assert reaching(rows, [1, 3, 9]) == [0, 0, 0]
    assert len(fig.axes) == 1  # no bars of 0 beside an empty strip
    assert [t.get_text() for t in fig.axes[0].texts] == ["No trial reached a rung: all 3 failed."]
    assert fig.axes[0].get_title() == "Trials reaching each rung (epoch 1, 3, 9): none of 3"
    assert fig._suptitle.get_text().endswith("; 3 trials: 3 error")  # the table's words
    report.pyplot().close(fig)
    curves = report._plot_learning_curves(rows, {}, "val_accuracy", "val_accuracy", Budget(max_epochs=9))
    assert [t.get_text() for t in curves.axes[0].texts] == ["No trial reported a val_accuracy: all 3 failed."]
    report.pyplot().close(curves)
    page = write_report(folder).read_text()
    assert "3 trials: 3 error." in page and page.count('<tr class="error">') == 3


def test_asha_chart_of_trials_that_failed_after_rungs_counts_them_as_the_table_does(tmp_path):
    trials = [(f"e{i}", "error", i + 1, 0.5 + 0.1 * i, FAILED_CONFIG, None) for i in range(3)]  # 1, 2 and 3 epochs
    rows, fig = _asha_chart(_write_sweep(tmp_path / "failed", trials))
    bars, strip = fig.axes
    assert bars.get_title() == "Trials reaching each rung: 3 → 1 → 0 (of 3)"
    assert all(float(tick).is_integer() for tick in bars.get_yticks())
    # e2 went on past epoch 1 and failed after epoch 3; e0 and e1 failed after epoch 1: none is drawn as going on
    # at its last rung, as the table (status error) says
    assert _legend(strip) == ["went on", "failed after this rung (3 trials)"]
    assert [len(c.get_offsets()) for c in strip.collections] == [1, 1, 1, 1]
    report.pyplot().close(fig)


def test_asha_chart_draws_each_trial_at_its_last_rung_as_its_status(sweep):
    folder, _ = sweep
    rows, fig = _asha_chart(folder)
    legend = _legend(fig.axes[1])
    assert legend == ["went on", "stopped here by ASHA (8 trials)", "completed (4 trials)", "still running (1 trial)"]
    ended = sum(int(re.search(r"\((\d+) trials?\)", label)[1]) for label in legend[1:])
    assert ended == reaching(rows, [1])[0] == len(rows) - 1  # all but the trial that failed before epoch 1
    report.pyplot().close(fig)


@pytest.mark.parametrize("classes", [("cat", "dog"), tuple(f"class_{i}" for i in range(10)),
                                     ("a_rather_long_class_name", "b")])
def test_the_confusion_matrix_png_is_not_cut_at_its_edges(tmp_path, classes):
    matrix = np.arange(len(classes) ** 2).reshape(len(classes), len(classes))
    evaluate._plot_confusion(matrix, classes, "validation", tmp_path / "matrix.png")
    with Image.open(tmp_path / "matrix.png") as image:
        pixels = np.asarray(image.convert("L"))
    top = pixels[: pixels.shape[0] // 8]
    assert top.min() < 100  # the title is there, above the matrix
    for edge in (pixels[:, :3], pixels[:, -3:], pixels[:3], pixels[-3:]):  # and nothing runs off the figure
        assert edge.min() > 240
