"""Trials per hour on one GPU: `gpus_per_trial: auto` against one trial per GPU, float32 against
mixed precision, for MobileNetV2, EfficientNetV2-B0 and ConvNeXt-Tiny, frozen and fine-tuned.

Each variant is a real `sweeper run` on cats_vs_dogs at 224 px (the same spec but for the
packing and the precision; the same seeds), run one after the other on this machine's GPU.
It prints, per backbone and depth, trials per hour (trials ended over the command's wall time,
start-up included) and the best val_accuracy of each variant (mean ± sd over the seeds), then
the ratios: auto packing over one trial per GPU, and mixed_float16 over float32.

    .venv/bin/python benchmarks/bench_gpu.py                 # the full run: 3 seeds, 24 variants a seed
    .venv/bin/python benchmarks/bench_gpu.py --seeds 1 --trials 4 --epochs 2 --backbones mobilenet_v2_1.0
    .venv/bin/python benchmarks/bench_gpu.py --smoke         # minutes on a CPU: the script's own check, no GPU figure

It needs a GPU (nvidia-smi) and, with `--weights imagenet` (the default), the three backbones'
ImageNet weight files in `--weights-dir` or Keras' cache. `--weights none` measures throughput
alone (the weights' values do not change the time; the accuracies are then from random weights).
`--smoke` runs the same code on this machine's CPU with digits at 32 px, on a Ray that lists a
GPU TensorFlow cannot see: it checks the script, and its figures are not GPU figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from itertools import product
from pathlib import Path

from _common import CATS, run_sweeper

BACKBONES = ("mobilenet_v2_1.0", "efficientnet_v2_b0", "convnext_tiny")
DEPTHS = {"frozen": 0, "fine-tuned": 30}  # unfreeze: layers of the backbone trained
PACKINGS = {"1 per GPU": 1, "auto": "auto"}  # gpus_per_trial
PRECISIONS = ("float32", "mixed_float16")

SPEC = """\
name: {name}
data: {data}
image_size: {size}
weights: {weights}
budget: {{trials: {trials}, max_epochs: {epochs}, grace_epochs: {epochs}, concurrent_trials: {concurrent},
          cpus_per_trial: {cpus}, gpus_per_trial: {gpus}, precision: {precision}, seed: {seed}}}
space:
  backbone: {backbone}
  unfreeze: {unfreeze}
  head: {{pooling: avg, units: [[], [128]], dropout: 0.2}}
  optimizer: adam
  learning_rate: {{low: 1.0e-4, high: 1.0e-2, log: true}}
  batch_size: 32
"""


def spec_for(*, backbone: str, depth: str, packing: str, precision: str, seed: int, args, data: str) -> str:
    cores = os.cpu_count() or 2
    # One trial per GPU has the GPU (and every core) to itself; auto lets up to `--share` trials run
    # at once, each with an equal part of the cores, and sweeper packs them by measured memory.
    concurrent = 1 if packing == "1 per GPU" else args.share
    return SPEC.format(name="bench", data=data, size=args.size, weights=args.weights, trials=args.trials,
                       epochs=args.epochs, concurrent=concurrent, cpus=max(1, cores // concurrent),
                       gpus=PACKINGS[packing], precision=precision, seed=seed, backbone=backbone,
                       unfreeze=DEPTHS[depth])


def trials_per_hour(rows: list[dict], seconds: float) -> float:
    ended = [r for r in rows if r["status"] in ("completed", "stopped")]
    return len(ended) / seconds * 3600


def best(rows: list[dict]) -> float:
    return max((r["val_accuracy"] for r in rows if r.get("val_accuracy") is not None), default=float("nan"))


def spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {sd:.1f}" if max(values) > 2 else f"{statistics.mean(values):.4f} ± {sd:.4f}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--share", type=int, default=8, help="concurrent trials with auto packing (default 8)")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES))
    parser.add_argument("--weights", default="imagenet", choices=("imagenet", "none"))
    parser.add_argument("--smoke", action="store_true", help="a CPU check of the script itself; no GPU figures")
    args = parser.parse_args(argv)

    from sweeper.gpus import devices

    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        if args.smoke:
            from sweeper.demo import write_digits

            write_digits(Path(tmp) / "digits")
            data = f"{{train: {Path(tmp) / 'digits'}, validation_split: 0.2}}"
            args.backbones, args.size, args.weights = ["simple_cnn"], 32, "none"
            os.environ["RAY_OVERRIDE_RESOURCES"] = json.dumps({"GPU": 1})  # Ray lists a GPU; TensorFlow sees none
            print("smoke run on this machine's CPU: the figures below check the script; they are not GPU figures")
        else:
            found = devices()
            if not found:
                sys.exit("bench_gpu.py needs an NVIDIA GPU (nvidia-smi lists none here); --smoke checks the script on a CPU")
            print(f"GPU: {found[0].name}, {found[0].memory_mb:,} MB; {os.cpu_count()} cores")
            data = f"{{train: {CATS}/training_set, validation: {CATS}/test_set}}"
        print(f"cats_vs_dogs at {args.size} px" if not args.smoke else "digits at 32 px",
              f"{args.trials} trials x {args.epochs} epochs a sweep, seeds 0-{args.seeds - 1}, weights {args.weights}")
        figures: dict[tuple, dict[str, list[float]]] = {}
        for seed, backbone, depth, packing, precision in product(range(args.seeds), args.backbones, DEPTHS,
                                                                  PACKINGS, PRECISIONS):
            spec = spec_for(backbone=backbone, depth=depth, packing=packing, precision=precision, seed=seed,
                            args=args, data=data)
            folder = Path(tmp) / f"{backbone}-{depth}-{packing.replace(' ', '')}-{precision}-{seed}"
            seconds, rows = run_sweeper(spec, folder, "--cache-dir", str(Path(tmp) / f"cache-{seed}"))
            kept = figures.setdefault((backbone, depth, packing, precision), {"per_hour": [], "best": []})
            kept["per_hour"].append(trials_per_hour(rows, seconds))
            kept["best"].append(best(rows))
            print(f"  seed {seed} {backbone} {depth} {packing} {precision}: {len(rows)} trials in {seconds:.0f} s, "
                  f"{kept['per_hour'][-1]:.1f} trials per hour, best val_accuracy {kept['best'][-1]:.4f}", flush=True)

    print(f"\n{'backbone':<20}{'depth':<12}{'packing':<11}{'precision':<15}{'trials per hour':>18}"
          f"{'best val_accuracy':>22}")
    for (backbone, depth, packing, precision), kept in figures.items():
        print(f"{backbone:<20}{depth:<12}{packing:<11}{precision:<15}{spread(kept['per_hour']):>18}"
              f"{spread(kept['best']):>22}")
    ratios = {}
    for backbone, depth in product(args.backbones, DEPTHS):
        rate = {key[2:]: statistics.mean(v["per_hour"]) for key, v in figures.items() if key[:2] == (backbone, depth)}
        ratios[(backbone, depth)] = {
            "auto / 1 per GPU": rate[("auto", "float32")] / rate[("1 per GPU", "float32")],
            "mixed_float16 / float32": rate[("1 per GPU", "mixed_float16")] / rate[("1 per GPU", "float32")],
        }
        print(f"ratio {backbone} {depth}: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios[(backbone, depth)].items()))
    return {"figures": figures, "ratios": ratios}


if __name__ == "__main__":
    main()
