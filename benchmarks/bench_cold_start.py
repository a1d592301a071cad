"""The cold start against its floor, side by side in one run.

The floor is the least any tool must do for the cold sweep of `bench_cache.py` (frozen
MobileNetV2-0.35 at 160 px on cats_vs_dogs): decode the 1,000 JPEG files, import TensorFlow,
build the backbone with its ImageNet weights and run it once over every image. Here that is a
script of its own in a fresh interpreter that does only this, decoding on both cores while
TensorFlow imports, and trains nothing. `sweeper run` does all of that and the 16 trials of 10
epochs besides, with Ray starting, trial workers importing TensorFlow in their own processes,
and nothing cached.

The two alternate (floor, sweeper, floor, sweeper, ...) so that the machine's noise falls on
both; the medians make the ratio.

    .venv/bin/python benchmarks/bench_cold_start.py [--runs 5] [--trials 16] [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CATS, WEIGHTS, cats_spec, require_assets, run_sweeper  # noqa: E402

SIZE = 160
TARGET = 2.0  # issue 18: the whole command within 2x of the floor


def floor() -> None:
    """The floor itself: run in a fresh interpreter by `main`; prints its stages."""
    started = time.perf_counter()
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from PIL import Image

    def load(path: Path) -> np.ndarray:
        with Image.open(path) as image:
            image.draft("RGB", (SIZE, SIZE))
            return np.asarray(image.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR))

    files = sorted(p for p in CATS.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    pool = ThreadPoolExecutor(2)
    decoded = pool.submit(lambda: np.stack(list(ThreadPoolExecutor(2).map(load, files))))
    import keras  # imports TensorFlow while the images decode

    imported = time.perf_counter()
    pixels = decoded.result()
    weights = next(WEIGHTS.glob("mobilenet_v2_weights_*_0.35_*_no_top.h5"))
    model = keras.applications.MobileNetV2(input_shape=(SIZE, SIZE, 3), alpha=0.35, include_top=False,
                                           pooling="avg", weights=str(weights))
    built = time.perf_counter()
    features = model.predict(keras.applications.mobilenet_v2.preprocess_input(pixels.astype("float32")),
                             batch_size=64, verbose=0)
    done = time.perf_counter()
    print(f"{len(files)} images -> features {features.shape}: TensorFlow imported (images decoding meanwhile) "
          f"{imported - started:.1f} s, decoded and built {built - imported:.1f} s, forward pass {done - built:.1f} s")


def run_floor() -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--floor"], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"the floor script failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each, alternating; the medians count")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor:
        floor()
        return
    require_assets()

    floors, sweepers = [], []
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        spec = cats_spec("bench-cold", size=SIZE, trials=args.trials, epochs=args.epochs)
        for run in range(args.runs):
            seconds, stages = run_floor()
            floors.append(seconds)
            print(f"floor run {run + 1}:   {seconds:5.1f} s  ({stages})", flush=True)
            folder = Path(tmp) / f"sweeper-{run}"
            seconds, rows = run_sweeper(spec, folder)
            sweepers.append(seconds)
            stages = json.loads(next((folder / "results").glob("*/sweep.json")).read_text())["stages"]
            print(f"sweeper run {run + 1}: {seconds:5.1f} s  ({len(rows)} trials x {args.epochs} epochs, best "
                  f"val_accuracy {max(r['val_accuracy'] for r in rows):.4f}; its stages: "
                  + ", ".join(f"{name} {s:.1f} s" for name, s in stages.items()) + ")", flush=True)
    floor_s, sweeper_s = statistics.median(floors), statistics.median(sweepers)
    print(f"floor, median of {len(floors)}: {floor_s:.1f} s; sweeper run, median of {len(sweepers)}: {sweeper_s:.1f} s")
    print(f"cold start / floor: {sweeper_s / floor_s:.2f}x (target: within {TARGET:.0f}x)")


if __name__ == "__main__":
    main()
