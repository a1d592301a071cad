"""What a budget buys: the ASHA rungs of a sweep and the epochs it should train (`--dry-run`).

ASHA judges a trial at each rung, epochs `grace * rf**k` below `max_epochs`. It is asynchronous:
a trial reaching a rung goes on unless it is below the top 1/rf of the trials that reached the
rung before it. So the first one always goes on, and early arrivals, judged against few others,
go on more often than 1 in rf. The estimate takes the trials in a random order: the k-th arrival
then ranks uniformly among the k, which gives the chance it clears Ray's cutoff (see
`_chance_to_go_on`). TPE's proposals improve as the sweep goes on and a metric with ties (the
accuracy on a small validation set) clears cutoffs it only equals, so a real sweep trains
somewhat more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.console import Console

from .space import space_size, trial_count
from .spec import Spec
from .units import plural


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


def _chance_to_go_on(earlier: int, rf: int) -> float:
    """The chance that a trial goes on past a rung that `earlier` trials reached before it.

    Ray cuts at the (1 - 1/rf) percentile of the earlier values, which numpy interpolates at
    position p = (1 - 1/rf)(earlier - 1) of them sorted; a newcomer ranking uniformly among
    earlier + 1 values is above that with chance (earlier - p) / (earlier + 1).
    """
    if earlier == 0:
        return 1.0
    position = (1 - 1 / rf) * (earlier - 1)
    return (earlier - position) / (earlier + 1)


def expected_to_go_on(arrivals: float, rf: int) -> float:
    """How many of `arrivals` trials are expected to go on past a rung (a fraction of one: pro rata)."""
    whole = int(arrivals)
    total = sum(_chance_to_go_on(k, rf) for k in range(whole))
    return total + (arrivals - whole) * _chance_to_go_on(whole, rf)


def plan(spec: Spec) -> Plan:
    budget = spec.budget
    trials = trial_count(spec)
    rungs, alive, trained_to, epochs = [], float(trials), 0, 0.0
    for epoch in rung_epochs(budget.grace_epochs, budget.max_epochs, budget.reduction_factor):
        epochs += alive * (epoch - trained_to)
        promoted = expected_to_go_on(alive, budget.reduction_factor)
        rungs.append(Rung(epoch, alive, promoted))
        alive, trained_to = promoted, epoch
    epochs += alive * (budget.max_epochs - trained_to)
    return Plan(space_size(spec.space), trials, budget.max_epochs, rungs, epochs)


def print_plan(spec: Spec, console: Console) -> None:
    p = plan(spec)
    budget = spec.budget
    space = "a continuous space" if p.configurations is None else plural(p.configurations, "configuration")
    share = "" if p.configurations is None else f" ({p.trials / p.configurations:.0%} of them)"
    console.print(f"{spec.name}: {space}; {plural(p.trials, 'trial')}{share} by {budget.search} search, up to "
                  f"{plural(p.max_epochs, 'epoch')} each, {budget.concurrent_trials} at a time; "
                  f"objective {spec.objective} ({spec.mode})", markup=False, highlight=False)
    if p.rungs:
        console.print(f"ASHA rungs (grace_epochs {budget.grace_epochs}, reduction_factor {budget.reduction_factor}): "
                      f"1 in {budget.reduction_factor} of the trials judged at a rung goes on, more while it fills",
                      highlight=False)
        for rung in p.rungs:
            console.print(f"  after epoch {rung.epoch}: {rung.judged:.1f} trials judged, {rung.promoted:.1f} go on",
                          highlight=False)
    else:
        console.print("ASHA rungs: none (grace_epochs reaches max_epochs): every trial trains to the end",
                      highlight=False)
    grid = "" if p.configurations is None else f", every configuration for {plural(p.max_epochs, 'epoch')}: " \
        f"{p.configurations * p.max_epochs}"
    console.print(f"estimated epochs: {p.epochs:.0f} ({p.epochs / p.epochs_without_asha:.0%} of "
                  f"{p.epochs_without_asha} without early stopping{grid})", highlight=False)
