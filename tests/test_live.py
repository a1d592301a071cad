"""The live view: redrawn in place on a terminal, one line per event anywhere else."""

from __future__ import annotations

import io
import re
import time
from types import SimpleNamespace

import pytest
import ray
from rich.console import Console

from sweeper import leaderboard
from sweeper.live import LiveView, SweepInfo

INFO = SweepInfo(name="toy", objective="val_accuracy", mode="max", trials=4, max_epochs=4)
CONFIG = {"backbone": "mobilenet_v2_0.35", "cut": "full", "unfreeze": 0, "head_pooling": "avg", "head_units": "[32]",
          "head_dropout": 0.2, "optimizer": "adam", "learning_rate": 1e-3, "batch_size": 32, "augment": False,
          "image_size": 96}


class Sweep:
    """Plays Tune's part: updates the rows as the leaderboard callback would, then tells the view."""

    def __init__(self, view: LiveView):
        self.view, self.trials = view, {}

    def _row(self, trial_id, status, epoch=0, best=None, error=""):
        result = {"epoch": epoch, "best_epoch": epoch or None, "best_val_accuracy": best} if epoch else {}
        self.view.rows[trial_id] = leaderboard.make_row(trial_id=trial_id, status=status, config=CONFIG,
                                                        result=result, objective="val_accuracy", error=error)

    def start(self, trial_id):
        self.trials[trial_id] = SimpleNamespace(trial_id=trial_id, config=CONFIG)
        self._row(trial_id, "running")
        self.view.on_trial_start(0, [], self.trials[trial_id])

    def epoch(self, trial_id, epoch, value):
        self._row(trial_id, "running", epoch, value)
        self.view.on_trial_result(0, [], self.trials[trial_id], {"val_accuracy": value, "epoch": epoch})

    def end(self, trial_id, status, epoch, best, error=""):
        self._row(trial_id, status, epoch, best, error)
        if status == "error":
            self.view.on_trial_error(0, [], self.trials[trial_id])
        else:
            self.view.on_trial_complete(0, [], self.trials[trial_id])


def _play(view):
    sweep = Sweep(view)
    view.update_features({"computing features mobilenet_v2_0.35 at 96 px": (0, 100)})
    sweep.start("a")
    sweep.start("b")
    sweep.epoch("a", 1, 0.80)
    sweep.epoch("b", 1, 0.70)
    sweep.end("b", "stopped", 1, 0.70)
    view.update_features({"computing features mobilenet_v2_0.35 at 96 px": (100, 100)})
    sweep.epoch("a", 2, 0.90)
    sweep.start("c")
    sweep.end("c", "error", 0, None, "ValueError: boom")
    return sweep


def test_off_a_terminal_every_event_is_one_plain_line():
    console = Console(file=io.StringIO(), width=200)
    assert not console.is_terminal
    view = LiveView(INFO, {}, console)
    sweep = _play(view)
    sweep.epoch("a", 4, 0.85)
    sweep.end("a", "completed", 4, 0.90)
    view.on_experiment_end([])
    lines = console.file.getvalue().splitlines()
    assert "\x1b" not in console.file.getvalue()  # no cursor movement or colour codes in a log
    expected = [
        "computing features mobilenet_v2_0.35 at 96 px: 100 images",
        "trial a started: mobilenet_v2_0.35 cut=full unfreeze=0 avg [32] d0.20 adam lr=0.001 batch=32 px=96",
        "trial b started: ",
        "new best: trial a val_accuracy 0.8000 at epoch 1 ",
        "[1/4] trial b stopped@1: val_accuracy 0.7000 at epoch 1  (mobilenet_v2_0.35 ",
        "computing features mobilenet_v2_0.35 at 96 px: done in 0 s",
        "new best: trial a val_accuracy 0.9000 at epoch 2 ",
        "trial c started: ",
        "[2/4] trial c error: no result  (",
        "[3/4] trial a completed: val_accuracy 0.9000 at epoch 4 ",
        "toy: 3 of 4 trials ended (1 completed, 1 stopped, 1 error) in 0:00:0",
    ]
    assert len(lines) == len(expected)
    for line, start in zip(lines, expected):
        assert line.startswith(start), (line, start)
    assert lines[8].endswith("error: ValueError: boom")


def test_on_a_terminal_one_display_shows_progress_best_trials_and_bars():
    terminal = Console(file=io.StringIO(), force_terminal=True, width=160)
    view = LiveView(INFO, {}, terminal)
    view.update_features({"computing features mobilenet_v2_0.35 at 96 px": (40, 100)})
    sweep = Sweep(view)
    sweep.start("a")
    sweep.start("b")
    sweep.epoch("a", 2, 0.90)
    sweep.epoch("b", 1, 0.70)
    sweep.end("b", "stopped", 1, 0.70)

    screen = Console(file=io.StringIO(), record=True, width=160)
    screen.print(view.render())
    text = screen.export_text()
    assert "toy" in text and "1/4 trials" in text and "elapsed 0:00:0" in text and "left ~" in text
    assert "best so far: trial a val_accuracy 0.9000 at epoch 2" in text
    table = [line.split() for line in text.splitlines()]
    header = next(i for i, cells in enumerate(table) if cells[:2] == ["trial", "status"])
    assert table[header][-3:] == ["epoch", "val_accuracy", "best"]
    assert table[header + 1][:2] == ["a", "running"] and table[header + 1][-3:] == ["2/4", "0.9", "0.9"]
    assert table[header + 2][:2] == ["b", "stopped@1"] and table[header + 2][-3:] == ["1/4", "0.7", "0.7"]
    assert "computing features mobilenet_v2_0.35 at 96 px" in text and "40/100" in text

    drawn = terminal.file.getvalue()
    assert "\x1b[" in drawn  # drawn in place, with the terminal's codes
    drawn = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn)
    assert "best so far: trial a" in drawn
    assert "trial a started" not in drawn  # no event lines on a terminal: the display says it all
    view.on_experiment_end([])
    last = terminal.file.getvalue().rstrip().splitlines()[-1]
    assert re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", last).startswith("toy: 1 of 4 trials ended (1 stopped)")


def test_time_left_follows_the_pace_of_ended_and_running_trials():
    view = LiveView(INFO, {}, Console(file=io.StringIO()))
    sweep = Sweep(view)
    assert view.eta_seconds() is None  # nothing to go by before the first epoch
    sweep.start("a")
    sweep.start("b")
    sweep.end("a", "stopped", 1, 0.5)
    sweep.epoch("b", 2, 0.6)
    view.started = time.time() - 100
    # 1 trial ended and half of one run, in 100 s: 2.5 trials to go take about 167 s.
    assert view.eta_seconds() == pytest.approx(100 * 2.5 / 1.5, rel=0.01)
    limited = LiveView(SweepInfo(**{**INFO.__dict__, "time_limit": 120.0}), view.rows, view.console)
    limited.ended, limited.started = view.ended, view.started
    assert limited.eta_seconds() == pytest.approx(20, abs=1)  # the time limit comes first


@pytest.mark.ray
def test_the_view_polls_the_progress_board_without_blocking_and_waits_for_it_at_the_end(ray_session):
    from sweeper.progress import ProgressBoard

    board = ProgressBoard.remote()
    label = "frozen features: mobilenet_v2_0.35 full unfreeze 0 at 96 px"
    view = LiveView(INFO, {}, Console(file=io.StringIO()), board)
    view.poll_board()  # asks; takes what has come, which need not be anything yet
    ray.get(board.update.remote(label, 40, 100))
    for _ in range(200):  # each poll takes the answer to the one before, if it has come
        view.poll_board()
        if view.features.get(label) == (40, 100):
            break
        time.sleep(0.05)
    assert view.features[label] == (40, 100)
    ray.get(board.update.remote(label, 100, 100))
    view.on_experiment_end([])  # the last state, waited for
    assert view.features[label] == (100, 100) and view.board is not None
    ray.kill(board)


@ray.remote(num_cpus=0)
class _SilentBoard:
    def snapshot(self):
        time.sleep(60)  # answers long after the view has moved on


@pytest.mark.ray
def test_a_board_slow_to_answer_never_holds_back_the_event_loop(ray_session):
    board = _SilentBoard.remote()
    view = LiveView(INFO, {}, Console(file=io.StringIO()), board)
    for _ in range(3):
        view.poll_board()  # would block in ray.get until the answer came, then give the board up
    assert view.board is board and view.features == {}
    ray.kill(board)
