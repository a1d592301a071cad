"""Progress of long work that runs inside trials (computing frozen features), shown by the driver.

Trials run in Ray workers whose output does not reach the terminal, so they post their progress
to a small actor, and a Tune callback in the driver polls it and draws the bars.
"""

from __future__ import annotations

import time

import ray
from ray import tune
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@ray.remote(num_cpus=0)
class ProgressBoard:
    """{label: (done, total)} of the work in progress, as the trials last posted it."""

    def __init__(self):
        self.tasks: dict[str, tuple[int, int]] = {}

    def update(self, label: str, done: int, total: int) -> None:
        self.tasks[label] = (done, total)

    def snapshot(self) -> dict[str, tuple[int, int]]:
        return dict(self.tasks)


class ProgressCallback(tune.Callback):
    """Draws a bar per task on the board; a task's bar is printed once more when it finishes."""

    POLL_SECONDS = 0.5

    def __init__(self, board, console: Console):
        self.board, self.console = board, console
        self.shown: dict[str, int] = {}  # label -> rich task id, while its bar is drawn
        self.finished: set[str] = set()
        self.progress: Progress | None = None
        self.polled = 0.0

    def __getstate__(self):  # Tune pickles its callbacks with the experiment; consoles do not pickle
        return {**self.__dict__, "console": None, "shown": {}, "progress": None}

    def __setstate__(self, state):
        self.__dict__.update(state, console=Console())

    def on_step_end(self, iteration, trials, **info):
        if time.monotonic() - self.polled >= self.POLL_SECONDS:
            self.polled = time.monotonic()
            self.refresh(ray.get(self.board.snapshot.remote()))

    def on_experiment_end(self, trials, **info):
        self.refresh(ray.get(self.board.snapshot.remote()))

    def refresh(self, tasks: dict[str, tuple[int, int]]) -> None:
        for label, (done, total) in tasks.items():
            if label in self.finished:
                continue
            if self.progress is None:
                self.progress = Progress(
                    TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=self.console,
                )
                self.progress.start()
            if label not in self.shown:
                self.shown[label] = self.progress.add_task(label, total=total)
            self.progress.update(self.shown[label], completed=done)
        if self.progress is not None and self.progress.finished:
            self.progress.stop()  # leaves the finished bars printed
            self.finished.update(self.shown)
            self.progress, self.shown = None, {}
