"""The spec's `constraints`: upper bounds on what a model costs to deploy, checked before it trains.

A configuration's costs (parameters, size, CPU latency, LiteRT latency) depend on its architecture
alone, never on how it is trained, so they are measured once per architecture, before the first
trial of it trains (`trial.py`), and shared through the cache. A trial whose architecture breaks a
bound ends at once as `infeasible`, with 0 epochs; it does not count against `budget.trials`, and
Optuna's TPE is told by how much it broke each bound (`Trial.set_constraint`), so that it proposes
such architectures less.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

INFEASIBLE = "infeasible"  # the result key of a trial that broke a bound: which, and by how much, in words


@dataclass(frozen=True)
class Constraints:
    """Upper bounds; None leaves a cost unbounded."""

    latency_ms: float | None = None  # CPU, one image, on the trial's threads (the leaderboard's `ms`)
    tflite_ms: float | None = None  # the exported model.tflite in LiteRT, one image, 1 thread
    size_mb: float | None = None  # float32 weights
    params: float | None = None

    def bounds(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def __bool__(self) -> bool:
        return bool(self.bounds())

    def summary(self) -> str:
        """`latency_ms <= 5, params <= 2,000,000`"""
        return ", ".join(f"{name} <= {_number(bound)}" for name, bound in self.bounds().items())

    def broken(self, costs: dict) -> dict[str, float]:
        """{cost: value} of each bound `costs` exceeds; a cost not measured breaks nothing."""
        return {name: costs[name] for name, bound in self.bounds().items()
                if costs.get(name) is not None and costs[name] > bound}

    def violations(self, costs: dict) -> dict[str, float]:
        """{cost: how far above its bound} for Optuna (<= 0: within it), as a share of the bound,
        so that milliseconds and millions of parameters weigh alike."""
        return {name: (costs[name] - bound) / bound for name, bound in self.bounds().items()
                if costs.get(name) is not None}

    def why(self, costs: dict) -> str:
        """`latency_ms 7.21 > 5, params 109,994 > 98,000` for the bounds broken, as the leaderboard shows it."""
        return ", ".join(f"{name} {_number(value)} > {_number(self.bounds()[name])}"
                         for name, value in self.broken(costs).items())


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:.4g}"


KEYS = tuple(f.name for f in fields(Constraints))
