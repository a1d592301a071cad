"""Search efficiency: sweeper's default (TPE with ASHA) against random search with ASHA and the
full grid, on real transfer learning: cats_vs_dogs (classification) and BCCD cell counts
(regression), with real ImageNet weights and the feature cache.

The space has 48 configurations: 2 backbones x unfreeze 0 or 10 x 2 heads x 2 optimizers x 3
learning rates. Each method is a real `sweeper run`, repeated over seeds:

- grid: every configuration once, for max_epochs (`budget.search: grid`, no early stopping);
- random + ASHA: `budget.search: random`, with sweeper's default trials, grace_epochs and
  reduction_factor;
- tpe + ASHA: sweeper's defaults throughout.

The methods of one data set share a feature cache, so frozen features are computed once, by
the first run. Printed per method: the best validation metric (mean and spread over the
seeds), the epochs trained and the wall time; then, for tpe + ASHA, `epochs_vs_grid:` and
`gap_to_grid_best:` (accuracy points; % of the RMSE).

    .venv/bin/python benchmarks/bench_search.py [--seeds 3] [--datasets cats bccd] [--max-epochs 8]

To weigh other defaults before changing them, give the ASHA methods a budget of their own and
leave out the grid (its figures do not depend on the defaults):

    .venv/bin/python benchmarks/bench_search.py --methods tpe --budget "trials: 32, reduction_factor: 4"
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from _common import ASSETS, require_assets, run_sweeper

from sweeper.spec import Budget

CATS = ASSETS / "datasets" / "cats_vs_dogs"
BCCD = ASSETS / "datasets" / "bccd_blood_cell_counts"

DATA = {
    "cats": ("val_accuracy", f"""\
task: classification
data: {{train: {CATS}/training_set, validation: {CATS}/test_set}}
"""),
    "bccd": ("val_rmse", f"""\
task: regression
data: {{csv: {BCCD}/counts_per_image.DERIVED.csv, images: {BCCD}/BCCD/JPEGImages, path_column: image,
        target_column: total_count, validation_split: 0.25}}
"""),
}

SPACE = """\
name: {name}
image_size: 64
weights: imagenet
budget: {{{budget}, max_epochs: {max_epochs}, concurrent_trials: 2, seed: {seed}}}
space:
  backbone: [mobilenet_v2_0.35, mobilenet_v2_0.5]
  unfreeze: [0, 10]
  head: {{pooling: avg, units: [[], [64]], dropout: 0.2}}
  optimizer: [adam, rmsprop]
  learning_rate: [1.0e-4, 1.0e-3, 1.0e-2]
  batch_size: 32
"""
CONFIGURATIONS = 48

METHODS = {  # the budget each method runs with
    "grid": "search: grid, trials: {n}, grace_epochs: {max_epochs}",
    "random + ASHA": "search: random",
    "tpe + ASHA": "search: tpe",
}


def run(dataset: str, methods: list[str], seeds: list[int], max_epochs: int, folder: Path,
        candidate: str = "") -> dict[str, list[dict]]:
    """The methods on every seed; returns {method: [{best, epochs, wall_s, trials}, ...]}.

    `candidate` (YAML flow-mapping items) is added to the budget of the ASHA methods.
    """
    objective, data = DATA[dataset]
    mode = "max" if objective == "val_accuracy" else "min"
    runs: dict[str, list[dict]] = {method: [] for method in methods}
    for seed in seeds:
        for method in methods:
            name = f"{dataset}-{method.split()[0]}-{seed}"
            budget = METHODS[method].format(n=CONFIGURATIONS, max_epochs=max_epochs)
            if candidate and method != "grid":
                budget += f", {candidate}"
            spec = data + SPACE.format(name=name, max_epochs=max_epochs, seed=seed, budget=budget)
            wall, rows = run_sweeper(spec, folder / name, "--cache-dir", str(folder / "cache"))
            values = [r[objective] for r in rows if r.get(objective) is not None]
            best = max(values) if mode == "max" else min(values)
            runs[method].append({"best": best, "epochs": sum(r["epochs"] for r in rows), "wall_s": wall,
                                 "trials": len(rows)})
            print(f"  {name}: best {objective} {best:.4f}, {len(rows)} trials, "
                  f"{runs[method][-1]['epochs']} epochs, {wall:.0f} s", flush=True)
    return runs


def summarise(dataset: str, runs: dict[str, list[dict]], max_epochs: int) -> None:
    objective = DATA[dataset][0]
    seeds = len(next(iter(runs.values())))
    print(f"\n{dataset} ({objective}), {CONFIGURATIONS} configurations, up to {max_epochs} epochs, seeds {seeds}")
    print(f"{'method':<16}{'best (mean ± sd)':>22}{'trials':>8}{'epochs':>9}{'wall':>9}")
    for method, results in runs.items():
        bests = [r["best"] for r in results]
        spread = statistics.stdev(bests) if len(bests) > 1 else 0.0
        print(f"{method:<16}{statistics.mean(bests):>14.4f} ± {spread:.4f}"
              f"{statistics.mean(r['trials'] for r in results):>8.0f}"
              f"{statistics.mean(r['epochs'] for r in results):>9.0f}"
              f"{statistics.mean(r['wall_s'] for r in results):>8.0f}s")
    if "grid" not in runs or "tpe + ASHA" not in runs:
        return
    grid, tpe = runs["grid"], runs["tpe + ASHA"]
    share = statistics.mean(t["epochs"] for t in tpe) / statistics.mean(g["epochs"] for g in grid)
    print(f"epochs_vs_grid: {share:.2f} (tpe + ASHA trained {share:.0%} of the grid's epochs; target at most 30 %)")
    grid_best, tpe_best = statistics.mean(g["best"] for g in grid), statistics.mean(t["best"] for t in tpe)
    if objective == "val_accuracy":
        gap = 100 * (grid_best - tpe_best)
        print(f"gap_to_grid_best: {gap:.2f} points of accuracy (target: within 1 point)")
    else:
        gap = 100 * (tpe_best - grid_best) / grid_best
        print(f"gap_to_grid_best: {gap:.1f} % of the RMSE (target: within 3 %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATA), default=["cats", "bccd"])
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--methods", nargs="+", choices=[m.split()[0] for m in METHODS],
                        default=[m.split()[0] for m in METHODS])
    parser.add_argument("--keep", type=Path, metavar="FOLDER",
                        help="keep every sweep (learning curves, for replay_search.py) in FOLDER/<dataset>")
    parser.add_argument("--budget", default="", metavar="ITEMS",
                        help='budget items for random and tpe instead of the defaults, e.g. "trials: 32"')
    args = parser.parse_args()
    require_assets()
    defaults = Budget()
    print(f"sweeper's defaults: {defaults.trials} trials, grace_epochs {defaults.grace_epochs}, "
          f"reduction_factor {defaults.reduction_factor}" + (f"; instead: {args.budget}" if args.budget else ""))
    methods = [m for m in METHODS if m.split()[0] in args.methods]
    for dataset in args.datasets:
        with tempfile.TemporaryDirectory(prefix=f"sweeper-search-{dataset}-") as tmp:
            folder = args.keep / dataset if args.keep else Path(tmp)
            runs = run(dataset, methods, list(range(args.seeds)), args.max_epochs, folder, args.budget)
        summarise(dataset, runs, args.max_epochs)


if __name__ == "__main__":
    main()
