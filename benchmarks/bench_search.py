"""Search efficiency: sweeper's default (TPE with ASHA) against random search with ASHA and the
full grid, on real transfer learning: cats_vs_dogs (classification), BCCD cell counts
(regression) and cats_vs_dogs with labels in file names, with real ImageNet weights and the
feature cache.

Two spaces (`--space`):
- `heads` (48 configurations): 2 backbones x unfreeze 0 or 10 x 2 heads x 2 optimizers x 3
  learning rates;
- `backbones` (54 configurations, where the backbone and its cut matter): 3 backbones x 3 cuts
  each x 2 heads x 3 learning rates, frozen. It adds TPE + ASHA with triage (`budget.triage:
  order` and `prune`), and Kendall's tau between the triage ranking of the 9 (backbone, cut)
  pairs and each pair's best final value in the grid (averaged over seeds).

Each method is a real `sweeper run`, repeated over seeds:

- grid: every configuration once, for max_epochs (`budget.search: grid`, no early stopping;
  on the `backbones` space, whose cut lists Optuna's GridSampler cannot hold, random search
  with as many trials as configurations, which never proposes one twice: the same grid);
- random + ASHA: `budget.search: random`, with sweeper's default trials, grace_epochs and
  reduction_factor;
- tpe + ASHA: sweeper's defaults throughout;
- triage order / triage prune: tpe + ASHA with `budget.triage`. Their epochs count the
  triage's forward passes too, as epochs' worth: each pair's features of every image, against
  an epoch's pass over the training images.

The methods of one data set share a feature cache, so frozen features are computed once, by
the first run. Printed per method: the best validation metric (mean and spread over the
seeds), the epochs trained and the wall time; then, for each search method, a line naming it
with `epochs_vs_grid:` and `gap_to_grid_best:` (accuracy points; % of the RMSE).

    .venv/bin/python benchmarks/bench_search.py [--seeds 3] [--datasets cats bccd] [--max-epochs 8]
    .venv/bin/python benchmarks/bench_search.py --space backbones --seeds 5 --datasets cats bccd names --keep DIR

To rerun some methods against the others' kept sweeps (after a change that touches only them),
delete their sweeps in DIR and add `--reuse grid random tpe`.

To weigh other defaults before changing them, give the ASHA methods a budget of their own and
leave out the grid (its figures do not depend on the defaults):

    .venv/bin/python benchmarks/bench_search.py --methods tpe --budget "trials: 32, reduction_factor: 4"
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from _common import ASSETS, require_assets, run_sweeper
from scipy.stats import kendalltau

from sweeper.spec import Budget

CATS = ASSETS / "datasets" / "cats_vs_dogs"
BCCD = ASSETS / "datasets" / "bccd_blood_cell_counts"
NAMES = ASSETS / "datasets" / "cats_vs_dogs_flat_filename_labels"

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
    "names": ("val_accuracy", f"""task: classification
data: {{train: {NAMES}/train, label_pattern: '^(?P<label>[a-z]+)\\.', validation_split: 0.25}}
"""),
}

SPACES = {  # (the space, its configurations, whether the grid needs random search to hold it)
    "heads": ("""\
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
""", 48, False),
    "backbones": ("""\
name: {name}
image_size: 64
weights: imagenet
budget: {{{budget}, max_epochs: {max_epochs}, concurrent_trials: 2, seed: {seed}}}
space:
  backbone: [mobilenet_0.25, mobilenet_v2_0.35, mobilenet_v2_0.5]
  cut: {{mobilenet_0.25: [conv_pw_5_relu, conv_pw_11_relu, full],
        mobilenet_v2_0.35: [block_6_expand_relu, block_13_expand_relu, full],
        mobilenet_v2_0.5: [block_6_expand_relu, block_13_expand_relu, full]}}
  head: {{pooling: avg, units: [[], [64]], dropout: 0.2}}
  optimizer: adam
  learning_rate: [1.0e-4, 1.0e-3, 1.0e-2]
  batch_size: 32
""", 54, True),
}

METHODS = {  # name: (short name, the budget it runs with)
    "grid": ("grid", "search: grid, trials: {n}, grace_epochs: {max_epochs}"),
    "random + ASHA": ("random", "search: random"),
    "tpe + ASHA": ("tpe", "search: tpe"),
    "triage order": ("order", "search: tpe, triage: order"),
    "triage prune": ("prune", "search: tpe, triage: prune"),
}
GRID_BY_RANDOM = "search: random, trials: {n}, grace_epochs: {max_epochs}"  # each configuration once, no stopping


def run(dataset: str, space: str, methods: list[str], seeds: list[int], max_epochs: int, folder: Path,
        candidate: str = "", reuse: tuple[str, ...] = ()) -> dict[str, list[dict]]:
    """The methods on every seed; returns {method: [{best, epochs, wall_s, trials, ...}, ...]}.

    `candidate` (YAML flow-mapping items) is added to the budget of the ASHA methods. The methods
    in `reuse` (short names) are read back from the sweeps a `--keep` run left in `folder`.
    """
    objective, data = DATA[dataset]
    text, configurations, grid_by_random = SPACES[space]
    mode = "max" if objective == "val_accuracy" else "min"
    runs: dict[str, list[dict]] = {method: [] for method in methods}
    for seed in seeds:
        for method in methods:
            short, budget = METHODS[method]
            name = f"{dataset}-{short}-{seed}"
            if method == "grid" and grid_by_random:
                budget = GRID_BY_RANDOM
            budget = budget.format(n=configurations, max_epochs=max_epochs)
            if candidate and method != "grid":
                budget += f", {candidate}"
            spec = data + text.format(name=name, max_epochs=max_epochs, seed=seed, budget=budget)
            sweep = folder / name / "results" / name
            if short in reuse:
                wall, rows = _kept(sweep, spec)
            else:
                wall, rows = run_sweeper(spec, folder / name, "--cache-dir", str(folder / "cache"))
            values = [r[objective] for r in rows if r.get(objective) is not None]
            best = max(values) if mode == "max" else min(values)
            epochs = sum(r["epochs"] for r in rows)
            triage_epochs = _triage_epochs(sweep)
            runs[method].append({"best": best, "epochs": epochs + triage_epochs, "wall_s": wall, "trials": len(rows),
                                 "rows": rows, "sweep": sweep})
            print(f"  {name}: best {objective} {best:.4f}, {len(rows)} trials, {epochs} epochs"
                  + (f" + {triage_epochs:.1f} epochs' worth of triage" if triage_epochs else "")
                  + f", {wall:.0f} s", flush=True)
    return runs


def _kept(sweep: Path, spec: str) -> tuple[float, list[dict]]:
    """A kept sweep's wall time (its own stages' total) and rows; it must have run this very spec."""
    ran = (sweep.parent.parent / "spec.yaml").read_text() if (sweep.parent.parent / "spec.yaml").is_file() else None
    meta = json.loads((sweep / "sweep.json").read_text()) if (sweep / "sweep.json").is_file() else {}
    if ran != spec or meta.get("state") != "finished":
        raise SystemExit(f"{sweep}: no finished sweep of this spec to reuse; run the method instead")
    return meta["stages"]["total"], json.loads((sweep / "leaderboard.json").read_text())


def _triage_epochs(sweep: Path) -> float:
    """The triage's forward passes in epochs' worth: every image through each pair's frozen layers,
    against an epoch's pass over the training images (0 without triage)."""
    ranking = sweep / "triage.json"
    if not ranking.is_file():
        return 0.0
    summary = json.loads((sweep / "data_summary.json").read_text())
    train = summary["per_split"]["train"]
    train = sum(train.values()) if isinstance(train, dict) else train
    return len(json.loads(ranking.read_text())) * summary["images"] / train


def summarise(dataset: str, space: str, runs: dict[str, list[dict]], max_epochs: int) -> None:
    objective = DATA[dataset][0]
    configurations = SPACES[space][1]
    seeds = len(next(iter(runs.values())))
    print(f"\n{dataset} ({objective}), {configurations} configurations, up to {max_epochs} epochs, seeds {seeds}")
    print(f"{'method':<16}{'best (mean ± sd)':>22}{'trials':>8}{'epochs':>9}{'wall':>9}")
    for method, results in runs.items():
        bests = [r["best"] for r in results]
        spread = statistics.stdev(bests) if len(bests) > 1 else 0.0
        print(f"{method:<16}{statistics.mean(bests):>14.4f} ± {spread:.4f}"
              f"{statistics.mean(r['trials'] for r in results):>8.0f}"
              f"{statistics.mean(r['epochs'] for r in results):>9.0f}"
              f"{statistics.mean(r['wall_s'] for r in results):>8.0f}s")
    if "grid" not in runs:
        return
    grid = runs["grid"]
    grid_best = statistics.mean(g["best"] for g in grid)
    for method, results in runs.items():
        if method == "grid":
            continue
        share = statistics.mean(r["epochs"] for r in results) / statistics.mean(g["epochs"] for g in grid)
        best = statistics.mean(r["best"] for r in results)
        if objective == "val_accuracy":
            gap = f"{100 * (grid_best - best):.2f} points"
        else:
            gap = f"{100 * (best - grid_best) / grid_best:.1f} % of the RMSE"
        print(f"{method}: epochs_vs_grid: {share:.2f}, gap_to_grid_best: {gap}")
    triaged = next((r["sweep"] for m in ("triage order", "triage prune") for r in runs.get(m, [])), None)
    if triaged is not None:
        _print_tau(objective, grid, triaged)


def _print_tau(objective: str, grid: list[dict], triaged: Path) -> None:
    """Kendall's tau between each score of the triage ranking and each (backbone, cut) pair's best
    final value in the grid, averaged over the seeds (both turned so that larger is better)."""
    sign = 1 if objective == "val_accuracy" else -1
    best: dict[tuple, list[float]] = {}
    for run_ in grid:
        per_pair: dict[tuple, float] = {}
        for row in run_["rows"]:
            if row.get(objective) is not None:
                key = (row["backbone"], row["cut"])
                per_pair[key] = max(per_pair.get(key, -float("inf")), sign * row[objective])
        for key, value in per_pair.items():
            best.setdefault(key, []).append(value)
    ranking = json.loads((triaged / "triage.json").read_text())
    pairs = [(r["backbone"], r["cut"]) for r in ranking]
    truth = [statistics.mean(best[p]) for p in pairs]
    for score, turn in (("logme", 1), ("probe", sign)):
        tau = kendalltau([turn * r[score] for r in ranking], truth).statistic
        print(f"kendall_tau ({score} against each pair's best in the grid, {len(pairs)} pairs): {tau:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATA), default=["cats", "bccd"])
    parser.add_argument("--space", choices=sorted(SPACES), default="heads")
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--methods", nargs="+", choices=[short for short, _ in METHODS.values()],
                        help="default: grid, random, tpe; with --space backbones, order and prune too")
    parser.add_argument("--keep", type=Path, metavar="FOLDER",
                        help="keep every sweep (learning curves, for replay_search.py) in FOLDER/<dataset>")
    parser.add_argument("--reuse", nargs="+", default=[], metavar="METHOD",
                        help="with --keep: read these methods' sweeps back from an earlier run into FOLDER instead "
                             "of running them again (e.g. --reuse grid random tpe, to rerun only the triage ones)")
    parser.add_argument("--budget", default="", metavar="ITEMS",
                        help='budget items for random and tpe instead of the defaults, e.g. "trials: 32"')
    args = parser.parse_args()
    require_assets()
    defaults = Budget()
    print(f"sweeper's defaults: {defaults.trials} trials, grace_epochs {defaults.grace_epochs}, "
          f"reduction_factor {defaults.reduction_factor}" + (f"; instead: {args.budget}" if args.budget else ""))
    chosen = args.methods or ["grid", "random", "tpe", *(["order", "prune"] if args.space == "backbones" else [])]
    methods = [m for m, (short, _) in METHODS.items() if short in chosen]
    for dataset in args.datasets:
        with tempfile.TemporaryDirectory(prefix=f"sweeper-search-{dataset}-") as tmp:
            folder = args.keep / dataset if args.keep else Path(tmp)
            runs = run(dataset, args.space, methods, list(range(args.seeds)), args.max_epochs, folder, args.budget,
                       reuse=tuple(args.reuse) if args.keep else ())
            summarise(dataset, args.space, runs, args.max_epochs)  # while the sweeps are there


if __name__ == "__main__":
    main()
