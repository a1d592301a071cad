"""Frozen spatial features stored as float16 against float32: accuracy, loss, size.

Spatial features (the activations at a frozen frontier inside the backbone, `unfreeze: N > 0`)
are large: MobileNetV2-1.0's at 224 px are 77 KB an image; ResNet50 cut at conv2_block3_out,
3.2 MB. Stored as float16 they take half the disk and half the memory. This trains the same
trials (same seeds, same initial weights, same batches) on cached features kept as float32 and
rounded to float16, with sweeper's own training loop, on cats_vs_dogs, and prints the validation
accuracy and loss of each and their differences; beside them, the difference another seed makes
to the float32 trial (another initial head, other batches): the noise float16 is judged against.

    .venv/bin/python benchmarks/bench_float16.py [--size 128] [--epochs 5]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from _common import CATS, WEIGHTS, require_assets

# (backbone, cut, unfreeze): frontiers inside the backbone, so the cache holds spatial activations.
CONFIGS = [("mobilenet_v2_0.5", "full", 14), ("mobilenet_v2_0.5", "full", 30),
           ("mobilenet_v2_0.35", "block_13_expand_relu", 12), ("mobilenet_v2_0.35", "full", 40)]
LEARNING_RATES = (3e-4, 1e-3, 3e-3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    require_assets()

    from sweeper import images, training, warm_models
    from sweeper.data import build_index
    from sweeper.feature_cache import frozen_features
    from sweeper.model import TrialConfig
    from sweeper.spec import DataSpec
    from sweeper.trial import init_tensorflow

    init_tensorflow(2)
    index = build_index(DataSpec(train=CATS / "training_set", validation=CATS / "test_set"), "classification")
    differences = []
    with tempfile.TemporaryDirectory(prefix="bench-float16-") as tmp:
        index, pixels = images.load_images(index, args.size, Path(tmp))
        train, val = index.indices("train"), index.indices("validation")
        print(f"cats_vs_dogs: {len(train)} training, {len(val)} validation images at {args.size} px; "
              f"{args.epochs} epochs, batch 32, adam")
        for backbone, cut, unfreeze in CONFIGS:
            for lr in LEARNING_RATES:
                config = TrialConfig(backbone=backbone, cut=cut, unfreeze=unfreeze, image_size=args.size,
                                     learning_rate=lr, head_dropout=0.2)
                scores, sizes = {}, {}
                for run, dtype, seed in (("float32", "float32", 1), ("float16", "float16", 1), ("seed 2", "float32", 2)):
                    warm = warm_models.prepare(config, seed=seed, task="classification", n_classes=2,
                                               weights="imagenet", weights_dir=str(WEIGHTS))
                    key = f"{backbone}-{cut}-{unfreeze}"
                    features = frozen_features(warm.split.prefix, pixels, Path(tmp), key)
                    features = [np.asarray(f).astype(dtype) for f in features]
                    sizes[dtype] = sum(f[0].nbytes for f in features)
                    x_train, y_train = training.hold(warm.split.inputs(features, train), index.targets[train])
                    x_val, y_val = training.hold(warm.split.inputs(features, val), index.targets[val])
                    for epoch in range(1, args.epochs + 1):
                        warm.loop.train_epoch(x_train, y_train, batch_size=32, rng=np.random.default_rng((seed, epoch)))
                    scores[run] = warm.loop.evaluate(x_val, y_val, batch_size=64)
                f32, f16, other = scores["float32"], scores["float16"], scores["seed 2"]
                diff, noise = f16["accuracy"] - f32["accuracy"], other["accuracy"] - f32["accuracy"]
                differences.append((diff, noise))
                print(f"{backbone} {cut} unfreeze {unfreeze} lr {lr:g}: {sizes['float32']:,} B an image as float32; "
                      f"val_accuracy {f32['accuracy']:.4f} (float32) {f16['accuracy']:.4f} (float16), "
                      f"difference {diff:+.4f} (another seed: {noise:+.4f}); "
                      f"val_loss {f32['loss']:.4f} / {f16['loss']:.4f}", flush=True)
    gaps, noise = np.abs(differences).T
    print(f"{len(differences)} trials: |val_accuracy difference| float16 vs float32 mean {gaps.mean():.4f}, "
          f"max {gaps.max():.4f} (mean signed {np.mean([d for d, _ in differences]):+.4f}); another seed: "
          f"mean {noise.mean():.4f}, max {noise.max():.4f}; float16 takes 0.50x the disk and memory")


if __name__ == "__main__":
    main()
