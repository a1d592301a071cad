"""sweeper's feature extraction from JPEG files, against `model.predict` on pixels already in memory.

The frozen prefix of MobileNetV2-0.35 at 160 px (what an `unfreeze: 0` trial caches) runs over
the 1,000 cats_vs_dogs images three ways, in one process with TensorFlow using both cores:

  baseline: `prefix.predict` on the images already decoded into a float32 array in memory;
  cold:     sweeper's path from nothing cached: decode the JPEG files (`images.load_images`),
            then compute and store the features (`feature_cache.frozen_features`);
  warm:     the same with the decoded pixels already cached on disk (a new feature entry).

Prints images per second for each and the ratios cold/baseline and warm/baseline.

    .venv/bin/python benchmarks/bench_pipeline.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from _common import CATS, WEIGHTS, require_assets

SIZE = 160


def main() -> None:
    require_assets()
    from sweeper.trial import init_tensorflow

    init_tensorflow(os.cpu_count() or 2)
    import numpy as np

    from sweeper import feature_cache, images
    from sweeper.data import build_index
    from sweeper.model import TrialConfig, build_trial_model
    from sweeper.spec import DataSpec

    index = build_index(DataSpec(train=CATS / "training_set", validation=CATS / "test_set"),
                        "classification")
    config = TrialConfig(backbone="mobilenet_v2_0.35", image_size=SIZE)
    model, _ = build_trial_model(config, task="classification", n_classes=2, weights="imagenet",
                                 weights_dir=str(WEIGHTS))
    prefix = feature_cache.split_model(model).prefix
    n = len(index.paths)

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        cache = Path(tmp)
        # Decode once outside the timings for the baseline's in-memory pixels (and warm up TensorFlow).
        _, pixels = images.load_images(index, SIZE, cache / "baseline")
        in_memory = np.asarray(pixels, np.float32)
        prefix.predict(in_memory[:64], batch_size=64, verbose=0)

        started = time.perf_counter()
        expected = prefix.predict(in_memory, batch_size=feature_cache.BATCH, verbose=0)
        baseline = n / (time.perf_counter() - started)

        started = time.perf_counter()
        _, pixels = images.load_images(index, SIZE, cache / "pipeline")
        features = feature_cache.frozen_features(prefix, pixels, cache / "pipeline", "cold")
        cold = n / (time.perf_counter() - started)

        started = time.perf_counter()
        _, pixels = images.load_images(index, SIZE, cache / "pipeline")
        feature_cache.frozen_features(prefix, pixels, cache / "pipeline", "warm")
        warm = n / (time.perf_counter() - started)
        np.testing.assert_allclose(features[0], expected, atol=1e-4)  # same features, or the speed is moot

    print(f"model.predict, decoded pixels in memory: {baseline:6.1f} images/s")
    print(f"sweeper, cold (JPEG files on disk):      {cold:6.1f} images/s")
    print(f"sweeper, warm (decoded pixels on disk):  {warm:6.1f} images/s")
    print(f"ratio cold: {cold / baseline:.2f}")
    print(f"ratio warm: {warm / baseline:.2f}")


if __name__ == "__main__":
    main()
