"""Progress of long work that runs inside trials (computing frozen features), shown by the driver.

Trials run in Ray workers whose output does not reach the terminal, so they post their progress
to a small actor, and the driver's live view (`live.LiveView`) polls it and draws the bars.
"""

from __future__ import annotations

import ray


@ray.remote(num_cpus=0)
class ProgressBoard:
    """{label: (done, total)} of the work in progress, as the trials last posted it."""

    def __init__(self):
        self.tasks: dict[str, tuple[int, int]] = {}

    def update(self, label: str, done: int, total: int) -> None:
        self.tasks[label] = (done, total)

    def snapshot(self) -> dict[str, tuple[int, int]]:
        return dict(self.tasks)
