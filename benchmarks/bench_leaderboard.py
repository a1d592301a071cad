"""`sweeper leaderboard` on 10,000 synthetic trial rows: the whole command, start to last byte.

The rows are written like a real sweep's (`leaderboard.json`, 10,000 trials with every column,
a mix of completed, stopped and failed trials). Each format is timed as a user runs it, in a
new process with its output to a file, median of 3 runs; the target is under 2 s. For scale,
the same run times what one would write by hand: pandas reading the JSON and printing it
(`pandas.read_json(...).to_string()`), also in a new process.

    .venv/bin/python benchmarks/bench_leaderboard.py [--rows 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import SWEEPER

from sweeper import leaderboard, results

TARGET_S = 2.0


def synthetic_sweep(folder: Path, n: int) -> Path:
    rng = random.Random(0)
    rows = []
    for i in range(n):
        status = rng.choices(["completed", "stopped", "error"], weights=[3, 6, 1])[0]
        epochs = 10 if status == "completed" else rng.randint(1, 9)
        backbone = rng.choice(["mobilenet_v2_0.35", "resnet50", "inception_v3", "efficientnet_b0"])
        result = {} if status == "error" else {
            "epoch": epochs, "best_epoch": rng.randint(1, epochs), "best_val_accuracy": rng.uniform(0.5, 0.99),
            "time_total_s": rng.uniform(5, 500), "params": rng.randint(400_000, 25_000_000),
            "trainable_params": rng.randint(1_000, 2_000_000), "size_mb": round(rng.uniform(1.5, 95), 3),
            "latency_ms": round(rng.uniform(2, 80), 3) if status == "completed" else None,
        }
        config = {"backbone": backbone, "cut": rng.choice(["full", "mixed7", "block_13_expand"]),
                  "unfreeze": rng.choice([0, 10, 30]), "head_pooling": rng.choice(["avg", "max"]),
                  "head_units": rng.choice(["[]", "[128]", "[256, 64]"]), "head_dropout": rng.uniform(0, 0.5),
                  "optimizer": rng.choice(["adam", "sgd", "rmsprop"]), "learning_rate": 10 ** rng.uniform(-5, -2),
                  "batch_size": rng.choice([16, 32, 64]), "augment": rng.random() < 0.5,
                  "image_size": rng.choice([96, 160, 224])}
        error = "ValueError: the trial ran out of memory at epoch 2" if status == "error" else ""
        rows.append(leaderboard.make_row(trial_id=f"{i:08x}", status=status, config=config, result=result,
                                         objective="val_accuracy", error=error))
    sweep = folder / "synthetic"
    sweep.mkdir(parents=True)
    leaderboard.write(sweep, leaderboard.ranked(rows, "val_accuracy", "max"), "val_accuracy")
    results.write_meta(sweep, {"name": "synthetic", "objective": "val_accuracy", "mode": "max", "state": "finished"})
    return sweep


def timed(command: list[str], repeats: int, out: Path) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        with out.open("w") as f:
            subprocess.run(command, stdout=f, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sweep = synthetic_sweep(Path(tmp), args.rows)
        out = Path(tmp) / "out.txt"
        pandas_s = timed([sys.executable, "-c", "import sys, pandas; "
                          "print(pandas.read_json(sys.argv[1]).to_string())", str(sweep / "leaderboard.json")],
                         args.repeats, out)
        print(f"{args.rows} rows, median of {args.repeats} runs, each a new process with its output to a file")
        print(f"  by hand, pandas read_json + to_string: {pandas_s:.2f} s")
        for label, extra in [("table", []), ("csv", ["--format", "csv"]), ("json", ["--format", "json"]),
                             ("md", ["--format", "md"]),
                             ("table --where --sort", ["--where", "status=completed", "--where", "latency_ms<40",
                                                       "--sort=-val_accuracy"])]:
            seconds = timed([*SWEEPER, "leaderboard", str(sweep), *extra], args.repeats, out)
            lines = len(out.read_text().splitlines())
            print(f"  sweeper leaderboard {label:<20} {seconds:5.2f} s  ({lines} lines)  "
                  f"{seconds / TARGET_S:.2f}x the 2 s target, {seconds / pandas_s:.2f}x pandas")


if __name__ == "__main__":
    main()
