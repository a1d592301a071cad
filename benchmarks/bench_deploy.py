"""Deployment-aware search on real transfer learning (cats_vs_dogs, real ImageNet weights).

The space: 3 backbones (MobileNet v1 0.25, MobileNetV2 0.35 and 0.5) x 2 cuts each x 2 image
sizes x 2 heads x 2 learning rates = 48 configurations, 24 architectures. First, `sweeper run
--dry-run` measures every architecture's CPU latency into the shared cache, so that every sweep
below reads the same figures (measured once, on a quiet machine) instead of timing under load.

1. Constraints. A bound of latency_ms at the median architecture's figure: the constrained
   sweep (`constraints: {latency_ms: B}`) against an unconstrained sweep of the same budget
   and seed, filtered afterwards. Printed per seed and on average: the epochs each spent on
   configurations over the bound (target: 0 for the constrained one) and the best validation
   accuracy within the bound.
2. Several objectives. The hypervolume of the (val_accuracy, latency_ms) front, at equal epochs,
   of `objective: [val_accuracy, latency_ms]` (multi-objective TPE) against random search and
   single-objective TPE (objective val_accuracy), each with ASHA and the same budget. The
   reference point is accuracy 0.5 (chance on two balanced classes) and 1.05 x the slowest
   architecture's latency. "At equal epochs": each sweep's trials are taken in the order they
   ended (its optuna.journal) until the fewest epochs any method of that seed trained.

    .venv/bin/python benchmarks/bench_deploy.py [--seeds 3] [--trials 12] [--max-epochs 6]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from _common import CATS, SWEEPER, WEIGHTS, require_assets, run_sweeper

SPEC = """\
name: {name}
data: {{train: {cats}/training_set, validation: {cats}/test_set}}
weights: imagenet
objective: {objective}
budget: {{trials: {trials}, max_epochs: {max_epochs}, grace_epochs: 2, reduction_factor: 3, concurrent_trials: 2,
          search: {search}, seed: {seed}}}
{constraints}
space:
  backbone: [mobilenet_0.25, mobilenet_v2_0.35, mobilenet_v2_0.5]
  cut: {{mobilenet_0.25: [conv_pw_11_relu, full], mobilenet_v2_0.35: [block_13_expand_relu, full],
        mobilenet_v2_0.5: [block_13_expand_relu, full]}}
  image_size: [64, 96]
  head: {{pooling: avg, units: [[], [64]], dropout: 0.2}}
  optimizer: adam
  learning_rate: [1.0e-3, 3.0e-3]
  batch_size: 32
"""
METHODS = {  # (objective, search)
    "tpe [accuracy, latency]": ("[val_accuracy, latency_ms]", "tpe"),
    "random": ("[val_accuracy, latency_ms]", "random"),
    "tpe accuracy": ("val_accuracy", "tpe"),
}


def spec(name: str, *, seed: int, trials: int, max_epochs: int, objective: str = "val_accuracy", search: str = "tpe",
         constraints: str = "") -> str:
    return SPEC.format(name=name, cats=CATS, objective=objective, trials=trials, max_epochs=max_epochs, search=search,
                       seed=seed, constraints=constraints)


def measure_architectures(folder: Path, cache: Path) -> list[float]:
    """Every architecture's latency_ms, measured by a dry run into `cache`, slowest last."""
    text = spec("measure", seed=0, trials=1, max_epochs=2, constraints="constraints: {latency_ms: 1000}")
    (folder / "measure.yaml").write_text(text)
    done = subprocess.run([*SWEEPER, "run", str(folder / "measure.yaml"), "--dry-run", "--cache-dir", str(cache),
                           "--weights-dir", str(WEIGHTS)], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})
    if done.returncode != 0:
        raise SystemExit(f"the dry run failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    print(done.stdout[done.stdout.index("feasibility"):], flush=True)
    from sweeper.costs import architecture_costs
    from sweeper.feasibility import architectures
    from sweeper.model import TrialConfig
    from sweeper.spec import load_spec

    loaded = load_spec(folder / "measure.yaml")  # the dry run measured with the task's outputs and the trials' threads
    measure = dict(task=loaded.task, outputs=2, threads=int(loaded.budget.cpus_per_trial), cache_dir=cache, tflite=False)
    return sorted(architecture_costs(TrialConfig(**a), **measure)["latency_ms"] for a in architectures(loaded.space))


def hypervolume(points: list[tuple[float, float]], reference: tuple[float, float]) -> float:
    """The area (accuracy above reference[0]) x (latency below reference[1]) the points dominate."""
    area, best = 0.0, reference[0]
    for latency, accuracy in sorted(points):
        if accuracy > best and latency < reference[1]:
            area += (reference[1] - latency) * (accuracy - best)
            best = accuracy
    return area


def in_end_order(sweep: Path) -> list[tuple[int, dict]]:
    """(epochs, row) of each trial in the order its trial ended (the sweep's optuna.journal)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = {r["trial_id"]: r for r in json.loads((sweep / "leaderboard.json").read_text())}
    study = optuna.load_study(study_name=sweep.name, storage=JournalStorage(JournalFileBackend(str(sweep / "optuna.journal"))))
    return [(len(t.intermediate_values), rows[t.user_attrs["trial_id"]]) for t in study.get_trials()]


def within_epochs(ended: list[tuple[int, dict]], epochs: int) -> list[dict]:
    taken, spent = [], 0
    for trial_epochs, row in ended:
        if spent + trial_epochs > epochs:
            break
        taken.append(row)
        spent += trial_epochs
    return taken


def constraints_part(folder: Path, cache: Path, bound: float, seeds: list[int], trials: int, max_epochs: int) -> None:
    print(f"\n1. constraints: latency_ms <= {bound:g} (the median architecture's), {trials} trials, "
          f"up to {max_epochs} epochs", flush=True)
    figures = {"constrained": [], "unconstrained, filtered after": []}
    for seed in seeds:
        for method, constraints in (("constrained", f"constraints: {{latency_ms: {bound}}}"),
                                    ("unconstrained, filtered after", "")):
            name = f"{'c' if constraints else 'u'}-{seed}"
            wall, rows = run_sweeper(spec(name, seed=seed, trials=trials, max_epochs=max_epochs, constraints=constraints),
                                     folder / name, "--cache-dir", str(cache))
            over = [r for r in rows if r["latency_ms"] is not None and r["latency_ms"] > bound]
            within = [r["val_accuracy"] for r in rows if r not in over and r["val_accuracy"] is not None]
            figures[method].append({"epochs_over": sum(r["epochs"] for r in over), "best": max(within, default=0.0),
                                    "epochs": sum(r["epochs"] for r in rows), "over": len(over)})
            print(f"  seed {seed}, {method}: {len(rows)} trials ({len(over)} over the bound), "
                  f"{figures[method][-1]['epochs']} epochs, {figures[method][-1]['epochs_over']} of them over the "
                  f"bound; best accuracy within it {figures[method][-1]['best']:.4f}; {wall:.0f} s", flush=True)
    for method, runs in figures.items():
        print(f"{method}: epochs_over_bound {statistics.mean(r['epochs_over'] for r in runs):.1f} (target 0), "
              f"best_within_bound {statistics.mean(r['best'] for r in runs):.4f} "
              f"(± {statistics.stdev([r['best'] for r in runs]) if len(runs) > 1 else 0:.4f}), "
              f"epochs {statistics.mean(r['epochs'] for r in runs):.1f}")


def objectives_part(folder: Path, cache: Path, slowest: float, seeds: list[int], trials: int, max_epochs: int) -> None:
    reference = (0.5, 1.05 * slowest)
    print(f"\n2. hypervolume of the (val_accuracy, latency_ms) front, reference {reference[0]}, {reference[1]:.3g} ms; "
          f"{trials} trials, up to {max_epochs} epochs", flush=True)
    volumes: dict[str, list[float]] = {method: [] for method in METHODS}
    for seed in seeds:
        ended = {}
        for method, (objective, search) in METHODS.items():
            name = f"{method.split()[0]}{'-mo' if '[' in objective else ''}-{seed}"
            run_sweeper(spec(name, seed=seed, trials=trials, max_epochs=max_epochs, objective=objective, search=search),
                        folder / name, "--cache-dir", str(cache))
            ended[method] = in_end_order(folder / name / "results" / name)
        equal = min(sum(e for e, _ in trials_) for trials_ in ended.values())
        for method, trials_ in ended.items():
            points = [(r["latency_ms"], r["val_accuracy"]) for r in within_epochs(trials_, equal)
                      if r["latency_ms"] is not None and r["val_accuracy"] is not None]
            volumes[method].append(hypervolume(points, reference))
            print(f"  seed {seed}, {method}: hypervolume {volumes[method][-1]:.4f} over its first {equal} epochs "
                  f"({sum(e for e, _ in trials_)} in all)", flush=True)
    for method, values in volumes.items():
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{method}: hypervolume {statistics.mean(values):.4f} ± {spread:.4f}")
    mo = statistics.mean(volumes["tpe [accuracy, latency]"])
    for other in ("random", "tpe accuracy"):
        print(f"hypervolume_ratio vs {other}: {mo / statistics.mean(volumes[other]):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--max-epochs", type=int, default=6)
    parser.add_argument("--parts", nargs="+", choices=["constraints", "objectives"], default=["constraints", "objectives"])
    args = parser.parse_args()
    require_assets()
    seeds = list(range(args.seeds))
    with tempfile.TemporaryDirectory(prefix="sweeper-deploy-") as tmp:
        folder, cache = Path(tmp), Path(tmp) / "cache"
        latencies = measure_architectures(folder, cache)
        bound = round(statistics.median(latencies), 3)
        if "constraints" in args.parts:
            constraints_part(folder, cache, bound, seeds, args.trials, args.max_epochs)
        if "objectives" in args.parts:
            objectives_part(folder, cache, latencies[-1], seeds, args.trials, args.max_epochs)


if __name__ == "__main__":
    main()
