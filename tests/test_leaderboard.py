"""Leaderboard rows, ranking, files and formats."""

from __future__ import annotations

import csv
import json

import pytest
from rich.console import Console

from sweeper import leaderboard
from sweeper.errors import SweeperError

DESIGN_COLUMNS = (
    "rank, trial_id, status, epochs, best_epoch, val_accuracy, backbone, cut, unfreeze, head_pooling, "
    "head_units, head_dropout, optimizer, learning_rate, batch_size, augment, image_size, params, "
    "trainable_params, size_mb, latency_ms, wall_s, error"
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
        console = Console(record=True, width=200)
        leaderboard.show(tmp_path, console=console, **{"top": None, "sort": None, "fmt": "table", **kwargs})
        return console.export_text()

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


def test_reading_a_folder_that_is_not_a_sweep_is_a_clear_error(tmp_path):
    with pytest.raises(SweeperError, match="no leaderboard.json"):
        leaderboard.read(tmp_path)
