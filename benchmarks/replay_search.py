"""Replay sweeper's search on the learning curves a grid recorded: many seeds in seconds, for
weighing `budget` defaults before the real benchmark (`bench_search.py`) confirms them.

A sweep trains a configuration the same way for the same seed (the trial's seed comes from the
sweep's seed and the configuration), so the curves `bench_search.py --methods grid --keep DIR`
recorded are what every trial of that seed would report. This is a tabular benchmark, as
HPOBench and YAHPO Gym do it: sweeper's own Optuna sampler (`search_space.sampler_for`) proposes
configurations, Ray Tune's own ASHA scheduler judges each reported epoch, and the grid's curve
answers. Trials run `concurrent_trials` at a time, each epoch as long as it took in the grid;
Optuna hears every epoch and is told a trial's last value, as Tune's OptunaSearch does it.

Printed per budget: the mean best value against the grid's best (accuracy points, or % of the
RMSE), the share of replays within the issue's target, and the epochs against the grid's.

    .venv/bin/python benchmarks/replay_search.py /tmp/curves/cats --budget "trials: 24" --budget "trials: 32, reduction_factor: 4"
"""

from __future__ import annotations

import argparse
import heapq
import json
import statistics
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace

import optuna
import yaml

from sweeper.hyperparameters import CONFIG_KEYS
from sweeper.resumable import ResumableASHA
from sweeper.search_space import DefineByRun, constant_liar, sampler_for
from sweeper.space import trial_count
from sweeper.spec import Budget, Spec, load_spec


def read_grid(folder: Path) -> tuple[Spec, dict[int, dict[tuple, list[tuple[float, float]]]]]:
    """The grid sweeps a bench_search.py run kept: its spec, and {seed: {configuration: curve}}, a
    curve holding (value, seconds) per epoch; the first epoch's seconds include the trial's start-up."""
    curves: dict[int, dict[tuple, list[tuple[float, float]]]] = {}
    spec = None
    for sweep in sorted(folder.glob("*-grid-*/results/*")):
        sweep_spec = load_spec(sweep / "spec.yaml")
        spec, seed = spec or sweep_spec, sweep_spec.budget.seed
        for result in (sweep / "experiment").glob("trial_*/result.json"):
            lines = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
            curve = [(r[spec.objective], r["time_this_iter_s"]) for r in lines]
            curve[0] = (curve[0][0], curve[0][1] + lines[0].get("startup_s", 0.0))
            curves.setdefault(seed, {})[_key(lines[0]["config"])] = curve
    if spec is None:
        raise SystemExit(f"{folder}: no grid sweeps (run bench_search.py --methods grid --keep {folder.parent})")
    return spec, curves


def _key(config: dict) -> tuple:
    return tuple(str(config[k]) for k in CONFIG_KEYS)


def replay(spec: Spec, curves: dict[tuple, list[tuple[float, float]]]) -> tuple[float, int]:
    """One sweep on recorded curves: the best value it finds and the epochs it trains.

    Epochs take the time they took in the grid, so trials reach ASHA's rungs in the order they
    would have: the order decides how many go on.
    """
    budget, better = spec.budget, (max if spec.mode == "max" else min)
    study = optuna.create_study(direction="maximize" if spec.mode == "max" else "minimize",
                                sampler=sampler_for(spec))
    define = DefineByRun(spec.space)
    asha = ResumableASHA(time_attr="training_iteration", metric=spec.objective, mode=spec.mode,
                         max_t=budget.max_epochs, grace_period=budget.grace_epochs,
                         reduction_factor=budget.reduction_factor)
    events: list[tuple[float, int, SimpleNamespace]] = []  # (when its next epoch ends, trial number, trial)
    trials, started, epochs, best, clock = trial_count(spec), 0, 0, None, 0.0
    while events or started < trials:
        while len(events) < budget.concurrent_trials and started < trials:
            trial = study.ask()
            constants = define(trial)  # it draws the trial's parameters
            sim = SimpleNamespace(trial_id=str(started), last_result={}, optuna=trial, epoch=0,
                                  curve=curves[_key({**trial.params, **constants})])
            asha.on_trial_add(None, sim)
            heapq.heappush(events, (clock + sim.curve[0][1], started, sim))
            started += 1
        clock, number, sim = heapq.heappop(events)
        value = sim.curve[sim.epoch][0]
        sim.epoch += 1
        epochs += 1
        best = value if best is None else better(best, value)
        result = {"training_iteration": sim.epoch, spec.objective: value}
        sim.optuna.report(value, sim.epoch)  # as OptunaSearch reports every result
        if asha.on_trial_result(None, sim, result) == "STOP" or sim.epoch == budget.max_epochs:
            study.tell(sim.optuna, value)
        else:
            heapq.heappush(events, (clock + sim.curve[sim.epoch][1], number, sim))
    return best, epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("curves", type=Path, help="a data set's folder of a bench_search.py --keep run")
    parser.add_argument("--budget", action="append", default=[], metavar="ITEMS",
                        help='budget items instead of the defaults, e.g. "trials: 32, grace_epochs: 2"; repeat')
    parser.add_argument("--search", default="tpe", choices=["tpe", "random"])
    parser.add_argument("--replays", type=int, default=20, help="sampler seeds per recorded seed")
    parser.add_argument("--constant-liar", choices=["on", "off", "both"],
                        help="TPE with Optuna's constant liar, without it, or both side by side (default: as sweeper)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    grid_spec, curves = read_grid(args.curves)
    grid_budget = grid_spec.budget
    accuracy = grid_spec.objective.endswith("accuracy")
    grid_best = {seed: (max if grid_spec.mode == "max" else min)(v for c in table.values() for v, _ in c)
                 for seed, table in curves.items()}
    grid_epochs = len(next(iter(curves.values()))) * grid_budget.max_epochs
    print(f"{args.curves}: {len(curves)} recorded seeds, {len(next(iter(curves.values())))} configurations, "
          f"grid best {statistics.mean(grid_best.values()):.4f}, {grid_epochs} epochs per grid")
    liars = {"on": [True], "off": [False], "both": [False, True], None: [None]}[args.constant_liar]
    for items in args.budget or [""]:
        for liar in liars:
            with constant_liar(liar) if liar is not None else nullcontext():
                _weigh(args, items, grid_spec, curves, grid_best, grid_epochs, accuracy,
                       "" if liar is None else f", constant liar {'on' if liar else 'off'}")


def _weigh(args, items: str, grid_spec: Spec, curves: dict, grid_best: dict, grid_epochs: int, accuracy: bool,
           label: str) -> None:
    """One budget replayed on every recorded seed, `args.replays` sampler seeds each."""
    grid_budget = grid_spec.budget
    # sweeper's defaults, on the grid's epochs and concurrency, then the budget weighed
    chosen = {**asdict(Budget()), "max_epochs": grid_budget.max_epochs, "search": args.search,
              "concurrent_trials": grid_budget.concurrent_trials, **yaml.safe_load("{" + items + "}")}
    gaps, shares = [], []
    for seed, table in curves.items():
        for replay_seed in range(args.replays):
            budget = {**chosen, "seed": seed + 1000 * replay_seed}  # replay 0: the real run's seed
            spec = replace(grid_spec, budget=Budget(**budget))
            best, epochs = replay(spec, table)
            gaps.append(100 * (grid_best[seed] - best) if accuracy else 100 * (best - grid_best[seed]) / grid_best[seed])
            shares.append(epochs / grid_epochs)
    target = 1.0 if accuracy else 3.0
    unit = "points" if accuracy else "% of the RMSE"
    print(f"  {args.search} {items or 'defaults'}{label}: gap {statistics.mean(gaps):.2f} {unit} "
          f"(within {target:g} in {sum(g <= target for g in gaps) / len(gaps):.0%} of {len(gaps)} replays), "
          f"epochs {statistics.mean(shares):.0%} of the grid's")

if __name__ == "__main__":
    main()
