"""What a budget buys: the ASHA rungs of a sweep and the epochs it should train (`--dry-run`).

ASHA judges a trial at each rung, epochs `grace * rf**k` below `max_epochs`, and lets about one
in `rf` of the trials judged there go on. The estimate assumes that fraction at every rung;
asynchronous ASHA lets a few more through early on, while its rungs are still filling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.console import Console

from .search_space import space_size
from .spec import Spec


@dataclass(frozen=True)
class Rung:
    epoch: int  # trials are judged after this epoch
    judged: float  # trials expected to reach it
    promoted: float  # trials expected to go on past it


@dataclass(frozen=True)
class Plan:
    configurations: int | None  # None: a continuous space
    trials: int
    max_epochs: int
    rungs: list[Rung]
    epochs: float  # expected epochs trained in all

    @property
    def epochs_without_asha(self) -> int:
        return self.trials * self.max_epochs


def rung_epochs(grace: int, max_epochs: int, reduction_factor: int) -> list[int]:
    """The epochs at which ASHA judges trials, as Ray Tune's ASHAScheduler places them."""
    count = int(math.log(max_epochs / grace) / math.log(reduction_factor) + 1)
    return [e for e in (grace * reduction_factor**k for k in range(count)) if e < max_epochs]


def trial_count(spec: Spec) -> int:
    """The trials the sweep runs: `budget.trials`, or a grid's size if that is smaller."""
    size = space_size(spec.space)
    return min(spec.budget.trials, size) if spec.budget.search == "grid" and size else spec.budget.trials


def plan(spec: Spec) -> Plan:
    budget = spec.budget
    trials = trial_count(spec)
    rungs, alive, trained_to, epochs = [], float(trials), 0, 0.0
    for epoch in rung_epochs(budget.grace_epochs, budget.max_epochs, budget.reduction_factor):
        epochs += alive * (epoch - trained_to)
        promoted = alive / budget.reduction_factor
        rungs.append(Rung(epoch, alive, promoted))
        alive, trained_to = promoted, epoch
    epochs += alive * (budget.max_epochs - trained_to)
    return Plan(space_size(spec.space), trials, budget.max_epochs, rungs, epochs)


def print_plan(spec: Spec, console: Console) -> None:
    p = plan(spec)
    budget = spec.budget
    space = "a continuous space" if p.configurations is None else f"{p.configurations} configurations"
    share = "" if p.configurations is None else f" ({p.trials / p.configurations:.0%} of them)"
    console.print(f"{spec.name}: {space}; {p.trials} trials{share} by {budget.search} search, up to "
                  f"{p.max_epochs} epochs each, {budget.concurrent_trials} at a time; objective {spec.objective} "
                  f"({spec.mode})", highlight=False)
    if p.rungs:
        console.print(f"ASHA rungs (grace_epochs {budget.grace_epochs}, reduction_factor {budget.reduction_factor}): "
                      f"about 1 in {budget.reduction_factor} of the trials judged at a rung goes on", highlight=False)
        for rung in p.rungs:
            console.print(f"  after epoch {rung.epoch}: {rung.judged:.1f} trials judged, {rung.promoted:.1f} go on",
                          highlight=False)
    else:
        console.print("ASHA rungs: none (grace_epochs reaches max_epochs): every trial trains to the end",
                      highlight=False)
    grid = "" if p.configurations is None else f", every configuration for {p.max_epochs} epochs: " \
        f"{p.configurations * p.max_epochs}"
    console.print(f"estimated epochs: {p.epochs:.0f} ({p.epochs / p.epochs_without_asha:.0%} of "
                  f"{p.epochs_without_asha} without early stopping{grid})", highlight=False)
