"""Progress of long work the driver waits on, shown while it runs.

Trials run in Ray workers whose output does not reach the terminal, so they post their progress
(computing frozen features) to a small actor, and the driver's live view (`live.LiveView`) polls
it and draws the bars. A wait that posts nothing (a Ray task that starts TensorFlow, then
predicts) gets a spinner with the seconds elapsed instead (`waiting`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import ray
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


@ray.remote(num_cpus=0)
class ProgressBoard:
    """{label: (done, total)} of the work in progress, as the trials last posted it."""

    def __init__(self):
        self.tasks: dict[str, tuple[int, int]] = {}

    def update(self, label: str, done: int, total: int) -> None:
        self.tasks[label] = (done, total)

    def snapshot(self) -> dict[str, tuple[int, int]]:
        return dict(self.tasks)


@contextmanager
def waiting(console: Console, text: str) -> Iterator[None]:
    """While the block runs: on a terminal, `text` with a spinner and the time elapsed, gone when it
    ends (the lines after it say how it went); piped or in CI, `text` once, as a plain line."""
    if not console.is_terminal or console.is_dumb_terminal:
        console.print(text, markup=False, highlight=False)
        yield
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        progress.add_task(text, total=None)
        yield
