"""`unfreeze: N` trained on cached activations against the same sweep trained on images.

With the top N layers of MobileNetV2-0.35 trainable, the frozen layers below them still give
the same activations every epoch: sweeper caches those and trains the top N layers and the
head on them. The same sweep with `--no-feature-cache` runs every image through the whole
model every epoch. Both runs start from nothing cached, 2 trials at a time, 1 CPU each; the
machine's CPU use is sampled during each.

    .venv/bin/python benchmarks/bench_unfreeze.py [--unfreeze 20] [--trials 4] [--epochs 5]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import CpuSampler, cats_spec, require_assets, run_sweeper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unfreeze", type=int, default=20)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    require_assets()
    spec = cats_spec("bench-unfreeze", size=96, trials=args.trials, epochs=args.epochs, unfreeze=args.unfreeze,
                     lr_high=1e-3)

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-unfreeze-") as tmp:
        for label, extra in (("cached activations", ()), ("images (--no-feature-cache)", ("--no-feature-cache",))):
            cpu = CpuSampler()
            seconds, rows = run_sweeper(spec, Path(tmp) / label.split()[0], *extra, cpu=cpu)
            best = max(r["val_accuracy"] for r in rows)
            results[label] = seconds
            print(f"{label:28s} {seconds:7.1f} s  best val_accuracy {best:.4f}  {cpu.summary()}", flush=True)
    cached, images = results.values()
    print(f"unfreeze {args.unfreeze}: speedup of cached activations over images: {images / cached:.1f}x")


if __name__ == "__main__":
    main()
