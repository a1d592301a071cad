"""What the terminal shows while a sweep runs.

On a terminal: one live display, redrawn in place, with the sweep's progress and an estimate of
the time left, the best trial so far, a table of running and recently ended trials, and bars for
work inside trials (computing frozen features). Anywhere else (CI logs, `| tee`): one plain line
per event, so the output reads top to bottom and greps well.

The view is a Ray Tune callback: Tune calls it from the driver's loop, so nothing here needs a
thread. Trials' own output never reaches the terminal; Ray's goes to `ray.log` in the sweep folder.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .hyperparameters import BY_NAME, CONFIG_KEYS
from .leaderboard import (
    config_columns,
    config_summary,
    format_objective,
    is_set,
    left_out_words,
    status_label,
    table_text,
)
from .objective import Objective
from .private_apis import ray_node
from .status import ENDED, TrialStatus
from .units import plural

RECENT = 5  # ended trials kept in the table below the running ones
BAR = 30  # the widest progress bar; narrower on a narrow terminal


@dataclass(frozen=True)
class SweepInfo:
    """What the view needs to know of the sweep up front."""

    name: str
    objective: str
    mode: str
    trials: int
    max_epochs: int
    time_limit: float | None = None
    # What every trial shares ({hyperparameter: value}), said once above the table; the table, and the
    # started, ended and best-so-far lines, show the others: what the space varies.
    # None (a view pickled before this field, or a caller that does not know): nothing is fixed.
    fixed: dict[str, Any] | None = None

    @property
    def varied(self) -> tuple[str, ...]:
        return tuple(key for key in CONFIG_KEYS if key not in (self.fixed or {}))

    def summary(self, config: dict, before: str = " ") -> str:
        """A trial's configuration in one line, `(mobilenet_v2_1.0 lr=0.00271 aug=yes)`: what varies in
        this space; empty when nothing does."""
        words = config_summary(config, self.varied)
        return f"{before}({words})" if words else ""

    def fixed_line(self) -> str:
        """`every trial: mobilenet_v2_0.35 cut=full unfreeze=0 ...`, as a trial's summary reads; empty when
        nothing is fixed. Left at their defaults, the hyperparameters the tables show only when set
        (`wd=0`, `smooth=0` ...) are not worth a word."""
        fixed = self.fixed or {}
        said = [key for key in fixed if BY_NAME[key].shown or is_set(fixed, key)]
        words = config_summary(fixed, said)
        return f"every trial: {words}" if words else ""


class LiveView(tune.Callback):
    """Shows the sweep as its trials report. `rows` is the leaderboard callback's own {trial_id: row};
    that callback tells the view each of Tune's events once it has updated them."""

    REDRAW_SECONDS = 0.5

    def __init__(self, info: SweepInfo, rows: dict[str, dict], console: Console, board=None, ended=()):
        self.info, self.rows, self.console, self.board = info, rows, console, board
        self._snapshot = None  # the board's snapshot on its way, if any
        self.started = time.time()
        self.current: dict[str, float] = {}  # trial_id -> the objective at its last epoch
        self.ended: list[str] = list(ended)  # in the order trials ended; a resumed sweep's earlier ones first
        self.starts: dict[str, int] = {}  # trial_id -> times started: Tune retries failed trials (budget.max_failures)
        self.best_id: str | None = None
        self.best_value: float | None = None
        self.features: dict[str, tuple[int, int]] = {}  # label -> (done, total), posted by trials
        self.feature_started: dict[str, float] = {}
        self.live: Live | None = None
        self.drawn = 0.0
        self.said_fixed = False
        for trial_id in self.ended:
            self._note_best(trial_id)

    def __getstate__(self):  # Tune pickles its callbacks with the experiment; consoles and displays do not pickle
        return {**self.__dict__, "console": None, "live": None}

    def __setstate__(self, state):
        self.__dict__.update(state, console=Console())

    @property
    def interactive(self) -> bool:
        return self.console.is_terminal and not self.console.is_dumb_terminal

    # --- Tune's events ------------------------------------------------------------------------

    def on_trial_start(self, iteration, trials, trial, **info):
        if trial.trial_id in self.ended:  # a resumed sweep telling Tune again how an ended trial ended
            return
        self.starts[trial.trial_id] = self.starts.get(trial.trial_id, 0) + 1
        if not self.interactive:
            if not self.said_fixed and (fixed := self.info.fixed_line()):  # once, before the first trial's line
                self._line(fixed)
            self.said_fixed = True
            attempt = self.starts[trial.trial_id]
            retried = self.rows.get(trial.trial_id, {}).get("retried")  # gpus.py: out of memory on a shared GPU
            self._line(f"trial {trial.trial_id} started{self.info.summary(trial.config)}" if attempt == 1
                       else f"trial {trial.trial_id} restarted after a failure (attempt {attempt})"
                       + (f": {retried}" if retried else ""))
        self._redraw(force=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        value = result.get(self.info.objective)
        if value is not None:
            self.current[trial.trial_id] = value
        self._note_best(trial.trial_id)
        self._redraw(force=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended(trial.trial_id)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended(trial.trial_id)

    def on_step_end(self, iteration, trials, **info):
        self._redraw()

    def on_experiment_end(self, trials, **info):
        self._snapshot = None  # the bars' last state: a snapshot asked for now, and waited for
        self.poll_board(wait=True)
        if self.live is not None:
            self.live.update(self.render(), refresh=True)
            self.live.stop()
            self.live = None
        self._line(self.summary())

    # --- state ----------------------------------------------------------------------------------

    def _ended(self, trial_id: str) -> None:
        if trial_id in self.ended:
            return
        self.ended.append(trial_id)
        self._note_best(trial_id)
        if not self.interactive:
            row = self.rows.get(trial_id, {})
            self._line(ended_line(row, self.counted(), self.info))
        self._redraw(force=True)

    def counted(self) -> int:
        """Ended trials that count against the budget: not those that ended infeasible."""
        return sum(self.rows.get(t, {}).get("status") != TrialStatus.INFEASIBLE for t in self.ended)

    def _note_best(self, trial_id: str) -> None:
        row = self.rows.get(trial_id)
        value = row.get(self.info.objective) if row else None
        if value is None or row.get("status") == TrialStatus.ERROR:
            return
        if Objective(self.info.objective, self.info.mode).better(value, than=self.best_value):
            self.best_id, self.best_value = trial_id, value
            if not self.interactive:
                self._line(f"new best: trial {trial_id} {self.info.objective} {format_objective(value)} "
                           f"at epoch {row.get('best_epoch')}{self.info.summary(row)}")

    def poll_board(self, wait: bool = False) -> None:
        """Take the board's snapshot if it has come (asking for one if none is on its way).

        Without `wait`, never blocks: this runs in Tune's event loop, where a blocking round trip
        to the board (18 ms on a busy 2-core machine, 237 times in a 16-trial sweep: 4.4 s,
        measured) held back the trials' results and the next trials' starts.
        """
        if self.board is None:
            return
        try:
            if self._snapshot is None:
                self._snapshot = self.board.snapshot.remote()
            ready, _ = ray.wait([self._snapshot], timeout=10 if wait else 0)
            if ready:
                self.update_features(ray.get(self._snapshot))
                self._snapshot = None
            elif wait:
                raise ray.exceptions.GetTimeoutError("the progress board did not answer in 10 s")
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            self.board = None  # its node was lost: the bars are a nicety, the sweep goes on without them

    def update_features(self, tasks: dict[str, tuple[int, int]]) -> None:
        """Work that trials post to the progress board; off a terminal, a line when it starts and ends."""
        for label, (done, total) in tasks.items():
            before = self.features.get(label)
            if before is None:
                self.feature_started[label] = time.time()
                if not self.interactive:
                    self._line(f"{label}: {total} images")
            if not self.interactive and done >= total and (before is None or before[0] < before[1]):
                self._line(f"{label}: done in {time.time() - self.feature_started[label]:.0f} s")
            self.features[label] = (done, total)

    # --- drawing --------------------------------------------------------------------------------

    def _redraw(self, force: bool = False) -> None:
        if not force and time.monotonic() - self.drawn < self.REDRAW_SECONDS:
            return
        self.drawn = time.monotonic()
        self.poll_board()
        if not self.interactive:
            return
        if self.live is None:
            self.live = Live(self.render(), console=self.console, auto_refresh=False, transient=True,
                             redirect_stdout=False, redirect_stderr=False)
            self.live.start()
        self.live.update(self.render(), refresh=True)

    def _line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)  # errors and paths are not markup

    def eta_seconds(self) -> float | None:
        """Time left, from the pace so far: ended trials, plus running ones by the epochs they have done.

        Trials ASHA stops end early, so the pace already counts them; the estimate firms up as trials end.
        """
        done = self.counted() + sum(
            min(row.get("epochs") or 0, self.info.max_epochs) / self.info.max_epochs
            for trial_id, row in self.rows.items() if row.get("status") == TrialStatus.RUNNING
        )
        if done <= 0:
            return None
        elapsed = time.time() - self.started
        left = elapsed * (self.info.trials - done) / done
        if self.info.time_limit is not None:
            left = min(left, max(0.0, self.info.time_limit - elapsed))
        return max(0.0, left)

    def render(self) -> Group:
        """The display, laid out to the console's width: nothing in it is cut, at 80 columns or 200."""
        info, width = self.info, self.console.width
        eta = self.eta_seconds()
        words = (f"{self.counted()}/{info.trials} trials  elapsed {_clock(time.time() - self.started)}  "
                 + (f"left ~{_clock(eta)}" if eta is not None else "left: after the first epochs"))
        parts = [_bar_line(Text(info.name, style="bold"), self.counted(), info.trials, Text(words), width)]
        if fixed := info.fixed_line():
            parts.append(Text(fixed, style="dim"))
        parts += [self._best_line(), *self._trial_table(width)]
        for label, (done, total) in self.features.items():
            if done < total:
                parts.append(_bar_line(Text(label), done, total, Text(f"{done}/{total}"), width))
        return Group(*parts)

    def _best_line(self) -> Text:
        row = self.rows.get(self.best_id) if self.best_id else None
        if row is None:
            return Text("best so far: none yet", style="dim")
        text = Text("best so far: ")
        text.append(f"trial {row['trial_id']} {self.info.objective} {format_objective(row[self.info.objective])}",
                    style="bold green")
        text.append(f" at epoch {row.get('best_epoch')}{self.info.summary(row, '  ')}")
        return text

    def _trial_table(self, width: int) -> list[Text]:
        """Running trials, then the latest ended ones. Columns by importance: the trial, how it is doing,
        then what the space varies; those that do not fit are left out whole, and a line says which."""
        objective = self.info.objective
        running = [r for r in self.rows.values() if r.get("status") == TrialStatus.RUNNING]
        recent = [self.rows[t] for t in reversed(self.ended[-RECENT:]) if t in self.rows]
        shown = [
            ("trial", lambda row: str(row["trial_id"]), False), ("status", status_label, False),
            ("epoch", lambda row: f"{row.get('epochs') or 0}/{self.info.max_epochs}", True),
            (objective, lambda row: format_objective(self.current.get(row["trial_id"])), True),
            ("best", lambda row: format_objective(row.get(objective)), True),
            *config_columns(running + recent, self.info.varied),
        ]
        table, left_out = table_text(shown, running + recent, width, keep=2)
        return [table] + [Text(f"({left_out_words(left_out, width)})", style="dim")] * bool(left_out)

    def summary(self) -> str:
        statuses = [self.rows[t].get("status") for t in self.ended if t in self.rows]
        counts = ", ".join(f"{statuses.count(s)} {s}" for s in ENDED if s in statuses and s != TrialStatus.INFEASIBLE)
        infeasible = statuses.count(TrialStatus.INFEASIBLE)
        return (f"{self.info.name}: {self.counted()} of {plural(self.info.trials, 'trial')} ended"
                + (f" ({counts})" if counts else "") + f" in {_clock(time.time() - self.started)}"
                + (f"; {infeasible} more broke the constraints and never trained" if infeasible else ""))


def ended_line(row: dict, ended: int, info: SweepInfo) -> str:
    """`[3/20] trial 1a2b3c4d stopped@1: val_accuracy 0.8100 at epoch 1 (...)`, and the error if it failed."""
    if row.get("status") == TrialStatus.INFEASIBLE:  # not one of the budget's trials: no number
        return f"trial {row.get('trial_id')} infeasible, not trained: {row.get('error')}{info.summary(row, '  ')}"
    value = row.get(info.objective)
    shown = (f"{info.objective} {format_objective(value)} at epoch {row.get('best_epoch')}" if value is not None
             else "no result")
    line = f"[{ended}/{info.trials}] trial {row.get('trial_id')} {status_label(row)}: {shown}{info.summary(row, '  ')}"
    return line + (f"  error: {row['error']}" if row.get("error") else "")


def _bar_line(before: Text, done: int, total: int, after: Text, width: int):
    """`name [bar] words` on one line, the bar narrowed to fit (down to 10); on two lines where even
    that does not fit, so that no word is cut."""
    room = width - len(before) - len(after) - 2
    if room >= 10:
        line = Table.grid(padding=(0, 1))
        line.add_row(before, ProgressBar(total=total, completed=done, width=min(BAR, room)), after)
        return line
    return Group(before, ProgressBar(total=total, completed=done, width=min(BAR, width)), after)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


@contextmanager
def ray_output_to(path: Path):
    """Send Ray's log records and Python warnings to `path` instead of the terminal, for the block's length.

    Trials' own output stays in Ray's session folder (named at the top of the file); a sweep's
    errors are in each trial's folder and in the leaderboard.
    """
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    ray_logger, warnings_logger = logging.getLogger("ray"), logging.getLogger("py.warnings")
    saved = (ray_logger.handlers[:], ray_logger.level, warnings_logger.handlers[:], warnings_logger.propagate)
    ray_logger.handlers, warnings_logger.handlers = [handler], [handler]
    ray_logger.setLevel(logging.INFO)
    warnings_logger.propagate = False
    logging.captureWarnings(True)
    node = ray_node()
    if node is not None:
        ray_logger.info("trials' stdout and stderr are in %s", node.get_logs_dir_path())
    try:
        yield
    finally:
        logging.captureWarnings(False)
        ray_logger.handlers, level, warnings_logger.handlers, warnings_logger.propagate = saved
        ray_logger.setLevel(level)
        handler.close()
