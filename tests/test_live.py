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

# A space that varies the backbone, the learning rate and augment; the rest is what every trial shares.
CONFIG = {"backbone": "mobilenet_v2_0.35", "cut": "full", "unfreeze": 0, "head_pooling": "avg", "head_units": "[32]",
          "head_dropout": 0.2, "optimizer": "adam", "learning_rate": 1e-3, "batch_size": 32, "augment": False,
          "image_size": 96, "schedule": "constant", "warmup_epochs": 0, "weight_decay": 0.0, "label_smoothing": 0.0,
          "unfreeze_blocks": 0}
VARIED = ("backbone", "learning_rate", "augment")
INFO = SweepInfo(name="toy", objective="val_accuracy", mode="max", trials=4, max_epochs=4,
                 fixed={k: v for k, v in CONFIG.items() if k not in VARIED})


class Sweep:
    """Plays Tune's part: updates the rows as the leaderboard callback would, then tells the view."""

    def __init__(self, view: LiveView):
        self.view, self.trials = view, {}

    def _row(self, trial_id, status, epoch=0, best=None, error=""):
        result = {"epoch": epoch, "best_epoch": epoch or None, "best_val_accuracy": best} if epoch else {}
        config = self.trials[trial_id].config
        self.view.rows[trial_id] = leaderboard.make_row(trial_id=trial_id, status=status, config=config,
                                                        result=result, objective="val_accuracy", error=error)

    def start(self, trial_id, **varied):
        self.trials[trial_id] = SimpleNamespace(trial_id=trial_id, config={**CONFIG, **varied})
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
    sweep.start("b", augment=True, learning_rate=0.0123)
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
        # What every trial shares, once; each trial's line then shows what the space varies, augment too.
        "every trial: cut=full unfreeze=0 avg [32] d0.20 adam batch=32 px=96",
        "trial a started (mobilenet_v2_0.35 lr=0.001 aug=no)",
        "trial b started (mobilenet_v2_0.35 lr=0.0123 aug=yes)",
        "new best: trial a val_accuracy 0.8000 at epoch 1 (mobilenet_v2_0.35 lr=0.001 aug=no)",
        "[1/4] trial b stopped@1: val_accuracy 0.7000 at epoch 1  (mobilenet_v2_0.35 lr=0.0123 aug=yes)",
        "computing features mobilenet_v2_0.35 at 96 px: done in 0 s",
        "new best: trial a val_accuracy 0.9000 at epoch 2 ",
        "trial c started (mobilenet_v2_0.35 lr=0.001 aug=no)",
        "[2/4] trial c error: no result  (",
        "[3/4] trial a completed: val_accuracy 0.9000 at epoch 4 ",
        "toy: 3 of 4 trials ended (1 completed, 1 stopped, 1 error) in 0:00:0",
    ]
    assert len(lines) == len(expected)
    for line, start in zip(lines, expected):
        assert line.startswith(start), (line, start)
    assert lines[9].endswith("error: ValueError: boom")


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
    # How each trial is doing first, then what the space varies; what is fixed is said once, above.
    assert table[header] == ["trial", "status", "epoch", "val_accuracy", "best", "backbone", "lr", "aug"]
    assert table[header + 2] == ["a", "running", "2/4", "0.9000", "0.9000", "mobilenet_v2_0.35", "0.001", "no"]
    assert table[header + 3] == ["b", "stopped@1", "1/4", "0.7000", "0.7000", "mobilenet_v2_0.35", "0.001", "no"]
    assert "every trial: cut=full unfreeze=0 avg [32] d0.20 adam batch=32 px=96" in text
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


# Recorded from a sweep over three backbones (one cut at `mixed7`), the head's dropout, the learning rate and
# augment: (event, trial, fields). The widest values a real sweep shows: long backbone names, a retried trial.
EVENTS = [
    ("start", "3f9a1c2e", dict(backbone="efficientnetv2-b0", learning_rate=0.000314, head_dropout=0.35, augment=True)),
    ("start", "7b20d4aa", dict(backbone="inception_v3", cut="mixed7", learning_rate=0.0123, head_dropout=0.1)),
    ("start", "c41e9b07", dict(backbone="mobilenet_v2_1.0", learning_rate=0.00271, head_dropout=0.2, augment=True)),
    ("epoch", "3f9a1c2e", (1, 0.8125)), ("epoch", "7b20d4aa", (1, 0.6406)), ("epoch", "c41e9b07", (1, 0.9062)),
    ("end", "7b20d4aa", ("stopped", 1, 0.6406)),
    ("start", "e0d55f13", dict(backbone="inception_v3", cut="mixed7", learning_rate=0.0009, head_dropout=0.45)),
    ("epoch", "3f9a1c2e", (2, 0.8438)), ("epoch", "c41e9b07", (2, 0.9219)),
]


def _recorded(width: int):
    info = SweepInfo(name="cats-vs-dogs-backbones", objective="val_accuracy", mode="max", trials=24, max_epochs=8,
                     fixed={k: v for k, v in CONFIG.items()
                            if k not in ("backbone", "cut", "head_dropout", "learning_rate", "augment")})
    view = LiveView(info, {}, Console(file=io.StringIO(), force_terminal=True, width=width))
    sweep = Sweep(view)
    for event, trial_id, fields in EVENTS:
        if event == "start":
            sweep.start(trial_id, **fields)
        elif event == "epoch":
            sweep.epoch(trial_id, *fields)
        else:
            sweep.end(trial_id, *fields)
    view.rows["c41e9b07"]["retried"] = "out of GPU memory with 0.5 of a GPU; retried alone on a whole GPU"
    view.update_features({"computing features inception_v3 mixed7 at 160 px": (300, 1000)})
    screen = Console(file=io.StringIO(), record=True, width=width)
    screen.print(view.render())
    return view, screen.export_text().splitlines()


@pytest.mark.parametrize("width", [80, 120, 200])
def test_the_live_view_fits_any_width_without_cutting_a_value(width):
    view, lines = _recorded(width)
    assert all(len(line.rstrip()) <= width for line in lines), [line for line in lines if len(line.rstrip()) > width]
    assert not any("…" in line for line in lines)
    prose = " ".join(" ".join(line.split()) for line in lines)  # wrapped lines are whole words
    assert "best so far: trial c41e9b07 val_accuracy 0.9219 at epoch 2 (mobilenet_v2_1.0 cut=full d0.20 " \
           "lr=0.00271 aug=yes)" in prose
    assert "every trial: unfreeze=0 avg [32] adam batch=32 px=96" in prose
    assert "computing features inception_v3 mixed7 at 160 px" in prose and "300/1000" in prose

    header_at = next(i for i, line in enumerate(lines) if line.split()[:2] == ["trial", "status"])
    headers = lines[header_at].split()
    # How each trial is doing comes first, then what the space varies, in the vocabulary's order.
    everything = ["trial", "status", "epoch", "val_accuracy", "best", "backbone", "cut", "head", "lr", "aug"]
    assert headers == everything[:len(headers)] and len(headers) >= 5
    columns = everything[1:]
    expected = {  # every shown value, whole, on its trial's line (None: empty before a first epoch)
        "c41e9b07": ["running, retried alone", "2/8", "0.9219", "0.9219", "mobilenet_v2_1.0", "full", "d0.20", "0.00271",
                     "yes"],
        "3f9a1c2e": ["running", "2/8", "0.8438", "0.8438", "efficientnetv2-b0", "full", "d0.35", "0.000314", "yes"],
        "e0d55f13": ["running", "0/8", None, None, "inception_v3", "mixed7", "d0.45", "0.0009", "no"],
        "7b20d4aa": ["stopped@1", "1/8", "0.6406", "0.6406", "inception_v3", "mixed7", "d0.10", "0.0123", "no"],
    }
    for trial_id, values in expected.items():
        line = next(line for line in lines[header_at:] if line.startswith(trial_id))
        for header, value in zip(columns, values):
            if header in headers and value is not None:
                assert f" {value}" in line, (header, value, line)
    left_out = everything[len(headers):]
    note = f"({', '.join(left_out)} left out to fit {width} columns)"
    assert (note in prose) == bool(left_out)
    if width >= 120:
        assert not left_out
