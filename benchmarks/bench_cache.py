"""The feature cache against the tutorial way, side by side in one run.

The same 16 configurations (frozen MobileNetV2-0.35 at 160 px on cats_vs_dogs with ImageNet
weights, 16 learning rates, 10 epochs each, no early stopping, 2 trials at a time, 1 CPU each),
each run starting from nothing cached:

  (b) `sweeper run` on a spec that declares them, `--sweeper-runs` times (3): a run of sweeper
      is short enough for the machine's noise to move it by a quarter, so the median counts;
  (a) a plain Ray Tune function trainable written the way the Keras transfer-learning tutorial
      does it: `image_dataset_from_directory`, the whole model built, and `fit` on the images
      every epoch, with the learning rates sweeper's trials used.

Prints the wall times and best val_accuracies, the CPU use during sweeper's runs, then
`speedup: X.Xx` (the tutorial's time over the median of sweeper's).

    .venv/bin/python benchmarks/bench_cache.py [--trials 16] [--epochs 10] [--sweeper-runs 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import CATS, WEIGHTS, CpuSampler, cats_spec, require_assets, run_sweeper

SIZE = 160
WEIGHTS_FILE = WEIGHTS / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"

def tutorial_trainable(config: dict) -> None:
    """The tutorial's recipe, as a Ray Tune function trainable: nothing cached, nothing reused."""
    import keras
    from ray import tune

    def load(folder, shuffle):
        return keras.utils.image_dataset_from_directory(
            folder, image_size=(SIZE, SIZE), batch_size=32, shuffle=shuffle, seed=0, label_mode="binary"
        ).prefetch(2)

    train, validation = load(CATS / "training_set", True), load(CATS / "test_set", False)
    base = keras.applications.MobileNetV2(
        input_shape=(SIZE, SIZE, 3), alpha=0.35, include_top=False, weights=str(WEIGHTS_FILE)
    )
    base.trainable = False
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.applications.mobilenet_v2.preprocess_input(inputs)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    model.compile(keras.optimizers.Adam(config["learning_rate"]), "binary_crossentropy", metrics=["accuracy"])

    class Report(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            tune.report({"val_accuracy": logs["val_accuracy"], "epoch": epoch + 1})

    model.fit(train, validation_data=validation, epochs=config["epochs"], callbacks=[Report()], verbose=0)


def run_tutorial(learning_rates: list[float], epochs: int, storage: Path) -> tuple[float, float]:
    import ray
    from ray import tune

    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    tuner = tune.Tuner(
        tune.with_resources(tutorial_trainable, {"cpu": 1}),
        param_space={"learning_rate": tune.grid_search(learning_rates), "epochs": epochs},
        tune_config=tune.TuneConfig(metric="val_accuracy", mode="max", max_concurrent_trials=2),
        run_config=tune.RunConfig(storage_path=str(storage), verbose=0),
    )
    results = tuner.fit()
    seconds = time.perf_counter() - started
    best = max(r.metrics_dataframe["val_accuracy"].max() for r in results)
    ray.shutdown()
    return seconds, float(best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--sweeper-runs", type=int, default=3)
    args = parser.parse_args()
    require_assets()

    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        spec = cats_spec("bench-cache", size=SIZE, trials=args.trials, epochs=args.epochs)
        times, bests = [], []
        for run in range(args.sweeper_runs):
            cpu = CpuSampler()
            seconds, rows = run_sweeper(spec, Path(tmp) / f"sweeper-{run}", cpu=cpu)
            times.append(seconds)
            bests.append(max(r["val_accuracy"] for r in rows))
            print(f"sweeper run:  {seconds:7.1f} s  best val_accuracy {bests[-1]:.4f}  "
                  f"({len(rows)} trials x {args.epochs} epochs; {cpu.summary()})", flush=True)
        median = sorted(range(len(times)), key=times.__getitem__)[len(times) // 2]  # the median run
        sweeper_s, sweeper_best = times[median], bests[median]

        learning_rates = sorted(float(r["learning_rate"]) for r in rows)
        tutorial_s, tutorial_best = run_tutorial(learning_rates, args.epochs, Path(tmp) / "tutorial")
        print(f"tutorial way: {tutorial_s:7.1f} s  best val_accuracy {tutorial_best:.4f}  "
              f"(the same learning rates)", flush=True)
    print(f"sweeper run, median of {len(times)}: {sweeper_s:.1f} s")
    print(f"best val_accuracy gap: {abs(sweeper_best - tutorial_best) * 100:.1f} points")
    print(f"speedup: {tutorial_s / sweeper_s:.1f}x")


if __name__ == "__main__":
    main()
