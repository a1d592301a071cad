"""The objective's one definition of "better", used by trials, the live view, stop_at, the
leaderboard's order and the report."""

from __future__ import annotations

import pytest

from sweeper.leaderboard import ranked
from sweeper.objective import Objective


def test_better_reached_and_order_follow_the_mode():
    accuracy, rmse = Objective("val_accuracy", "max"), Objective("val_rmse", "min")
    assert accuracy.better(0.9, than=0.8) and not accuracy.better(0.8, than=0.8) and accuracy.better(0.1, than=None)
    assert rmse.better(1.0, than=2.0) and not rmse.better(2.0, than=1.0)
    assert accuracy.reached(0.95, 0.95) and not accuracy.reached(0.94, 0.95)
    assert rmse.reached(0.5, 0.5) and not rmse.reached(0.6, 0.5)
    assert sorted([0.7, 0.9, 0.8], key=accuracy.sort_key) == [0.9, 0.8, 0.7]
    assert sorted([3.0, 1.0, 2.0], key=rmse.sort_key) == [1.0, 2.0, 3.0]
    assert (accuracy.direction, rmse.direction) == ("maximize", "minimize")
    with pytest.raises(ValueError, match="mode must be max or min"):
        Objective("val_loss", "lowest")


def test_the_leaderboard_ranks_by_it_with_missing_values_last():
    rows = [{"trial_id": "a", "val_rmse": 2.0}, {"trial_id": "b", "val_rmse": None}, {"trial_id": "c", "val_rmse": 1.0}]
    assert [r["trial_id"] for r in ranked(rows, "val_rmse", "min")] == ["c", "a", "b"]
    assert [r["trial_id"] for r in ranked(rows, "val_rmse", "max")] == ["a", "c", "b"]
