"""Per-trial overhead, cold workers against warm ones, side by side in one run.

Short trials (frozen MobileNetV2-0.35 at 32 px on cats_vs_dogs, 1 epoch each, 2 at a time)
make a trial's time almost all overhead. Each trial reports `startup_s`: from its start (for
a fresh worker, from the worker's own start) to its first report. Both sweeps share a
feature cache filled beforehand, so neither pays for computing features.

  cold: `sweeper run --fresh-workers`: a new worker process, TensorFlow and model per trial;
  warm: `sweeper run`: workers, TensorFlow and built models reused across trials.

The warm sweep runs more trials (30 by default) so that it also shows whether a reused
worker's memory grows: each trial reports its worker's resident memory.

    .venv/bin/python benchmarks/bench_overhead.py [--trials 20] [--warm-trials 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from _common import cats_spec, require_assets, run_sweeper


def trial_results(sweep: Path) -> list[dict]:
    """Every trial's first result, by worker and then in the order the worker ran them."""
    firsts = []
    for result_file in sweep.glob("experiment/trial_*/result.json"):
        first = json.loads(result_file.read_text().splitlines()[0])
        firsts.append(first)
    return sorted(firsts, key=lambda r: (r["pid"], r["worker_trials"]))


def summary(label: str, startups: list[float]) -> str:
    return (f"{label}: {len(startups)} trials, startup median {statistics.median(startups):.2f} s, "
            f"mean {statistics.mean(startups):.2f} s, min {min(startups):.2f} s, max {max(startups):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--warm-trials", type=int, default=30)
    args = parser.parse_args()
    require_assets()

    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        cache = Path(tmp) / "cache"

        def sweep(name: str, trials: int, *extra: str, units: str = "[]") -> Path:
            spec = cats_spec(name, size=32, trials=trials, epochs=1, units=units)
            seconds, _ = run_sweeper(spec, Path(tmp) / name, "--cache-dir", str(cache), *extra)
            print(f"  ({name}: {trials} trials in {seconds:.1f} s)", flush=True)
            return Path(tmp) / name / "results" / name

        sweep("fill-cache", 1)
        cold = [r["startup_s"] for r in trial_results(sweep("cold", args.trials, "--fresh-workers"))]
        # Head sizes vary, so the warm workers also build, reuse and drop models as a real sweep does.
        warm_results = trial_results(sweep("warm", args.warm_trials, units="[[], [64], [128], [64, 32]]"))
        warm = [r["startup_s"] for r in warm_results]

    print(summary("cold (a fresh worker per trial)", cold))
    print(summary("warm (reused workers)          ", warm))
    by_worker: dict[int, list[float]] = {}
    for result in warm_results:
        by_worker.setdefault(result["pid"], []).append(result["worker_rss_mb"])
    early = sum(rss[min(2, len(rss) - 1)] for rss in by_worker.values())  # each worker's 3rd: ~5 trials in all
    late = sum(rss[-1] for rss in by_worker.values())
    print(f"warm workers' memory: {early:.0f} MB after ~5 trials, {late:.0f} MB after {len(warm)} "
          f"({(late / early - 1) * 100:+.1f} %)")
    print(f"overhead ratio (cold / warm median): {statistics.median(cold) / statistics.median(warm):.1f}x")


if __name__ == "__main__":
    main()
