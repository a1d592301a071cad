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


TOP_K = 5  # val_top5_accuracy: only with more classes than this, where it says something

# Every objective a task may name, with its mode: the validation metrics a trial reports
# (`metrics.for_task` compiles them) and the loss.
BY_TASK = {
    "classification": {"val_accuracy": "max", "val_f1": "max", "val_auc": "max", f"val_top{TOP_K}_accuracy": "max",
                       "val_loss": "min"},
    "regression": {"val_rmse": "min", "val_mae": "min", "val_loss": "min"},
}


# What a model costs to deploy (costs.py measures each architecture's), which a sweep may minimize
# beside its objective: `objective: [val_accuracy, latency_ms]` searches the Pareto front.
COSTS = ("latency_ms", "tflite_ms", "size_mb", "params")


def available(task: str, n_classes: int) -> dict[str, str]:
    """The objectives a data set allows: AUC needs exactly two classes, top-5 accuracy more than five."""
    return {name: mode for name, mode in BY_TASK[task].items()
            if not (name == "val_auc" and n_classes != 2) and not (name == f"val_top{TOP_K}_accuracy" and n_classes <= TOP_K)}


def nondominated(points: list[tuple[str, tuple[float, ...]]]) -> set[str]:
    """The ids of the (id, values) points no other point beats, every value higher-is-better.

    A point is beaten when another is at least as good in every value and better in one.
    """
    def beats(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
        return all(x >= y for x, y in zip(a, b)) and a != b

    return {name for name, values in points if not any(beats(other, values) for _, other in points)}
