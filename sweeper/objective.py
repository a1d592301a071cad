"""The objective a sweep optimizes: a metric's name, and whether higher or lower is better.

"Is this value better" was written out by mode in seven places (trial, live view, stop_at,
leaderboard, report); they all ask this small type instead.
"""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("max", "min")


@dataclass(frozen=True)
class Objective:
    name: str  # e.g. val_accuracy
    mode: str  # "max" or "min"

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be max or min, not {self.mode!r}")

    def better(self, value: float, than: float | None) -> bool:
        """Whether `value` is strictly better than `than` (anything beats nothing)."""
        return than is None or (value > than if self.mode == "max" else value < than)

    def reached(self, value: float, target: float) -> bool:
        """Whether `value` is at least as good as `target`."""
        return value >= target if self.mode == "max" else value <= target

    def sort_key(self, value: float) -> float:
        """Ascending sort puts the best first."""
        return -value if self.mode == "max" else value

    @property
    def sign(self) -> int:
        """+1 when higher is better, -1 when lower is."""
        return 1 if self.mode == "max" else -1

    @property
    def direction(self) -> str:
        """Optuna's word for the mode."""
        return "maximize" if self.mode == "max" else "minimize"

    @property
    def words(self) -> str:
        return "higher is better" if self.mode == "max" else "lower is better"
