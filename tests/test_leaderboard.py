"""Leaderboard rows, ranking, files and formats."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys

import pytest
from rich.console import Console

from sweeper import leaderboard, results
from sweeper.errors import SweeperError

DESIGN_COLUMNS = (
    "rank, trial_id, status, epochs, best_epoch, val_accuracy, backbone, cut, unfreeze, head_pooling, "
    "head_units, head_dropout, optimizer, learning_rate, batch_size, augment, image_size, schedule, warmup_epochs, "
    "weight_decay, label_smoothing, unfreeze_blocks, params, "
    "trainable_params, size_mb, latency_ms, tflite_ms, wall_s, error"
).split(", ")


def _row(trial_id, value, status="completed", epochs=4, **config):
    result = {"epoch": epochs, "best_epoch": 2, "best_val_accuracy": value, "time_total_s": 12.34,
              "params": 1000, "trainable_params": 10, "size_mb": 0.004}
    base = {"backbone": "mobilenet_v2_0.35", "cut": "full", "unfreeze": 0, "head_pooling": "avg",
            "head_units": "[]", "head_dropout": 0.2, "optimizer": "adam", "learning_rate": 1e-3,
            "batch_size": 32, "augment": False, "image_size": 160}
    return leaderboard.make_row(trial_id=trial_id, status=status, config={**base, **config}, result=result,
                                objective="val_accuracy")


def test_columns_follow_the_design():
    assert leaderboard.columns("val_accuracy") == DESIGN_COLUMNS
    assert list(_row("a", 0.5)) == DESIGN_COLUMNS


def test_ranking_puts_the_best_first_and_missing_values_last():
    rows = [_row("a", 0.7), _row("b", None, status="error"), _row("c", 0.9), _row("d", 0.8)]
    assert [r["trial_id"] for r in leaderboard.ranked(rows, "val_accuracy", "max")] == ["c", "d", "a", "b"]
    ranked = leaderboard.ranked(rows, "val_accuracy", "min")
    assert [r["trial_id"] for r in ranked] == ["a", "d", "c", "b"] and [r["rank"] for r in ranked] == [1, 2, 3, 4]


def test_files_round_trip(tmp_path):
    rows = leaderboard.ranked([_row("a", 0.7), _row("b", 0.9, status="stopped", epochs=1)], "val_accuracy", "max")
    leaderboard.write(tmp_path, rows, "val_accuracy")
    assert leaderboard.read(tmp_path) == json.loads(json.dumps(rows))
    with open(tmp_path / "leaderboard.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == DESIGN_COLUMNS
    assert [r["trial_id"] for r in table] == ["b", "a"] and table[0]["status"] == "stopped"
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_show_formats_sort_and_top(tmp_path):
    rows = leaderboard.ranked([_row("a", 0.7, learning_rate=0.1), _row("b", 0.9, learning_rate=0.001),
                               _row("c", 0.8, learning_rate=0.01)], "val_accuracy", "max")
    leaderboard.write(tmp_path, rows, "val_accuracy")

    def show(**kwargs):
        console = Console(file=io.StringIO(), width=200)
        leaderboard.show(tmp_path, console=console, **{"top": None, "sort": None, "fmt": "table", **kwargs})
        return console.file.getvalue()

    assert show().index("b ") < show().index("c ") < show().index("a ")
    data = json.loads(show(fmt="json", top=2))
    assert [r["trial_id"] for r in data] == ["b", "c"]
    by_lr = list(csv.DictReader(show(fmt="csv", sort="-learning_rate").splitlines()))
    assert [r["trial_id"] for r in by_lr] == ["a", "c", "b"]
    markdown = show(fmt="md").splitlines()
    assert markdown[0].startswith("| rank | trial_id |") and len(markdown) == 2 + 3
    with pytest.raises(SweeperError, match="--sort nope: no such column"):
        show(sort="nope")


def test_table_shows_stopped_rung_and_errors():
    rows = [_row("a", 0.7, status="stopped", epochs=3), _row("b", None, status="error")]
    rows[1]["error"] = "ValueError: boom"
    console = Console(record=True, width=200)
    leaderboard.render(rows, "val_accuracy", console)
    text = console.export_text()
    assert "stopped@3" in text and "trial b failed: ValueError: boom" in text and "avg [] d0.20" in text


def test_a_narrow_table_keeps_what_the_trials_differ_in_and_leaves_out_what_they_share_whole():
    rows = leaderboard.ranked([_row("a", 0.8125, learning_rate=0.000314),
                               _row("b", 0.09677, learning_rate=0.0123, head_dropout=0.35)], "val_accuracy", "max")
    rows[0]["params"] = 2_257_984
    console = Console(record=True, width=60)
    leaderboard.render(rows, "val_accuracy", console)
    lines = console.export_text().splitlines()
    # The learning rate and the head differ between the trials: they come before the shared backbone.
    assert lines[0].split() == ["#", "trial", "status", "val_accuracy", "head", "lr"]
    # Scores to 4 significant digits; a learning rate keeps its digits; nothing is cut.
    assert lines[2].split() == ["1", "a", "completed", "0.8125", "avg", "[]", "d0.20", "0.000314"]
    assert lines[3].split() == ["2", "b", "completed", "0.09677", "avg", "[]", "d0.35", "0.0123"]
    assert " ".join(" ".join(lines[4:]).split()) == ("(backbone, cut, unfreeze, optimizer, batch, px, params, MB, ms left out to fit 60 "
                                    "columns; --format csv or json has every column)")
    assert max(len(line) for line in lines[:4]) <= 60 and "…" not in "".join(lines)
    wide = Console(record=True, width=200)
    leaderboard.render(rows, "val_accuracy", wide)
    assert " 2,257,984 " in wide.export_text()  # parameters with thousands separators


def test_reading_a_folder_that_is_not_a_sweep_is_a_clear_error(tmp_path):
    with pytest.raises(SweeperError, match="no leaderboard.json"):
        leaderboard.read(tmp_path)


def _sweep(folder, rows, objective="val_accuracy", mode="max", **meta):
    folder.mkdir(parents=True)
    leaderboard.write(folder, leaderboard.ranked(rows, objective, mode), objective)
    results.write_meta(folder, {"name": folder.name, "objective": objective, "mode": mode, **meta})
    return folder


def _lines(path, **kwargs):
    console = Console(file=io.StringIO(), width=250)
    leaderboard.show(path, console=console, **kwargs)
    return console.file.getvalue().splitlines()


def test_where_filters_by_text_status_and_numbers(tmp_path):
    _sweep(tmp_path / "s", [
        _row("a", 0.7, backbone="resnet50"), _row("b", 0.9, status="stopped", epochs=3),
        _row("c", 0.8, backbone="ResNet50", learning_rate=0.01), _row("d", None, status="error"),
    ])

    def ids(*where, **kwargs):
        return [r["trial_id"] for r in json.loads("\n".join(_lines(tmp_path / "s", fmt="json", where=where, **kwargs)))]

    assert ids("backbone=resnet50") == ["c", "a"]  # text matches without regard to case
    assert ids("backbone!=resnet50") == ["b", "d"]
    assert ids("status=stopped") == ids("status=stopped@3") == ["b"]
    assert ids("status=stopped@2") == []
    assert ids("val_accuracy>=0.8") == ["b", "c"] and ids("val_accuracy<0.8") == ["a"]  # no value: no match
    assert ids("learning_rate=1e-3", "backbone=resnet50") == ["a"]  # conditions combine
    assert ids("augment=no") == ids("augment=false") == ["b", "c", "a", "d"]
    for bad, message in [("lr=3", "--where lr=3: no such column"), ("val_accuracy>high", "> needs a number"),
                         ("backbone", "expected COL=VALUE")]:
        with pytest.raises(SweeperError, match=message):
            ids(bad)


def test_a_folder_of_sweeps_merges_with_a_sweep_column(tmp_path):
    _sweep(tmp_path / "first", [_row("a", 0.7), _row("b", 0.95)])
    _sweep(tmp_path / "second", [_row("c", 0.8, backbone="resnet50")])
    rows = json.loads("\n".join(_lines(tmp_path, fmt="json")))
    assert [(r["sweep"], r["trial_id"], r["rank"]) for r in rows] == [("first", "b", 1), ("second", "c", 2), ("first", "a", 3)]
    table = _lines(tmp_path, where=["backbone=resnet50"])
    assert table[1].split()[:4] == ["sweep", "#", "trial", "status"] and table[3].split()[:3] == ["second", "2", "c"]
    csv_rows = list(csv.DictReader(_lines(tmp_path, fmt="csv", sort="trial_id")))
    assert [r["trial_id"] for r in csv_rows] == ["a", "b", "c"] and list(csv_rows[0])[:2] == ["sweep", "rank"]

    _sweep(tmp_path / "third", [_row("d", 0.5)], objective="val_rmse", mode="min")
    lines = _lines(tmp_path)
    assert any("different objectives" in line for line in lines)
    with pytest.raises(SweeperError, match="nothing: no such folder"):
        leaderboard.show(tmp_path / "nothing", console=Console(file=io.StringIO()))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SweeperError, match="no leaderboard.json here or in its subfolders"):
        leaderboard.show(tmp_path / "empty", console=Console(file=io.StringIO()))


def test_a_running_or_interrupted_sweep_still_shows_its_rows(tmp_path):
    rows = [_row("a", 0.7), _row("b", 0.6, status="running", epochs=2)]
    running = _sweep(tmp_path / "live", rows, state="running", driver_host=socket.gethostname(), driver_pid=os.getpid())
    lines = _lines(running)
    assert any(line.split()[1:3] == ["b", "running"] for line in lines)
    assert lines[-1] == "live: still running, 1 of 2 trials ended so far"
    # A driver that died without marking the sweep (killed, or the machine went down) reads as interrupted.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = _sweep(tmp_path / "gone", rows, state="running", driver_host=socket.gethostname(), driver_pid=dead.pid)
    assert results.state_of(gone) == "interrupted"
    assert "interrupted with 1 of 2 trials ended" in _lines(gone)[-1]
    assert results.state_of(_sweep(tmp_path / "done", rows, state="finished")) == "finished"


def test_scores_keep_4_significant_digits_and_counts_their_thousands():
    shown = [leaderboard.format_objective(v) for v in (0.91, 0.8125, 0.09677419, 12.345, 1234.5, 0.0, None)]
    assert shown == ["0.9100", "0.8125", "0.09677", "12.35", "1,234", "0", ""]
    assert [leaderboard.format_value(v) for v in (0.000314, 0.00271, 3.0, 9.6, 1e-5)] == \
        ["0.000314", "0.00271", "3", "9.6", "1e-05"]
    assert [leaderboard.format_count(v) for v in (2257984, 94538.0, 999, None)] == ["2,257,984", "94,538", "999", ""]
