"""GPUs: `budget.gpus_per_trial` (fractions, `auto`), the packing arithmetic, the retry of a trial
that ran out of GPU memory alone, and `budget.precision`.

This machine has no GPU. What needs one (the peak-memory measurement, the memory limit, mixed
precision on a GPU) is in tests/test_gpu_device.py, skipped here with the reason. The rest runs
for real: the packing from given peaks, a sweep on a Ray that lists a GPU (Ray's own resource
override, as its autoscaler uses) whose trial runs out of GPU memory while sharing it, and every
precision trained on the CPU and exported in float32.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import write_spec

from sweeper import gpus, leaderboard, precision
from sweeper.cli import main
from sweeper.errors import SpecError
from sweeper.spec import load_spec
from sweeper.sweep_callbacks import retried_alone

H100_MB = 81_559  # an H100's memory as nvidia-smi lists it


def _spec(tmp_path, budget: str, space: str = "backbone: simple_cnn"):
    (tmp_path / "d" / "a").mkdir(parents=True, exist_ok=True)
    return load_spec(write_spec(tmp_path, f"data: {{train: d}}\nbudget: {{{budget}}}\nspace: {{{space}}}\n"))


# --- the spec ------------------------------------------------------------------------------------


def test_gpus_per_trial_takes_fractions_whole_gpus_and_auto(tmp_path):
    assert _spec(tmp_path, "gpus_per_trial: 0.25").budget.gpus_per_trial == 0.25
    assert _spec(tmp_path, "gpus_per_trial: 2").budget.gpus_per_trial == 2
    assert _spec(tmp_path, "gpus_per_trial: auto").budget.gpus_per_trial == "auto"
    assert _spec(tmp_path, "precision: bfloat16").budget.precision == "bfloat16"
    assert _spec(tmp_path, "").budget.precision == "float32"


@pytest.mark.parametrize("budget, message", [
    ("gpus_per_trial: 1.5", "budget.gpus_per_trial: 1.5: above 1, a trial takes whole GPUs; use 1, 2, a fraction"),
    ("gpus_per_trial: half", "budget.gpus_per_trial: 'half' must be a number"),
    ("gpus_per_trial: -0.5", "budget.gpus_per_trial: -0.5 must be at least 0"),
    ("precision: fp16", "budget.precision: 'fp16' is not allowed; allowed: float32, mixed_float16, bfloat16"),
])
def test_a_wrong_gpu_or_precision_setting_is_one_line_naming_the_key(tmp_path, budget, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _spec(tmp_path, budget)


# --- the arithmetic ------------------------------------------------------------------------------


def test_trials_per_gpu_from_a_measured_peak():
    usable = H100_MB * gpus.USABLE  # 77,481 MB handed to trials
    # MobileNetV2-sized: 1,000 MB peak -> 1,850 MB a trial with the margin and CUDA's context: 41 fit, 8 allowed.
    assert int(usable // (1000 * gpus.MARGIN + gpus.CONTEXT_MB)) == 41
    assert gpus.trials_per_gpu(1000, H100_MB, cap=8) == 8
    assert gpus.trials_per_gpu(1000, H100_MB, cap=2) == 2
    assert gpus.trials_per_gpu(30_000, H100_MB, cap=8) == 2  # 38,100 MB a trial: two fit in 77,481
    assert gpus.trials_per_gpu(70_000, H100_MB, cap=8) == 1  # does not fit twice: alone
    assert gpus.trials_per_gpu(None, H100_MB, cap=8) == 1  # did not fit at all, or unknown
    # Ray takes shares to 4 decimals: rounded down, so that n of them fit on one GPU.
    assert gpus.share_of(3) == 0.3333 and 3 * gpus.share_of(3) <= 1 and gpus.share_of(1) == 1
    # TensorFlow's limit: the share of the usable memory, less the CUDA context; whole GPUs grow.
    assert gpus.memory_limit_mb(0.5, H100_MB) == int(0.5 * usable - gpus.CONTEXT_MB) == 38_140
    assert gpus.memory_limit_mb(1.0, H100_MB) is None and gpus.memory_limit_mb(2, H100_MB) is None
    # 8 concurrent trials on 4 GPUs: 2 a GPU, not 8 on the first one and 3 idle.
    assert gpus.share_cap(8, 4) == 2 and gpus.share_cap(2, 1) == 2 and gpus.share_cap(3, 8) == 1


def test_every_architecture_of_a_space_and_each_trials_share(tmp_path):
    spec = _spec(tmp_path, "gpus_per_trial: auto, concurrent_trials: 4",
                 "backbone: [mobilenet_v2_0.35, resnet50], image_size: [96, 160], "
                 "batch_size: {low: 16, high: 64, step: 16}, unfreeze: [0, 20]")
    found = gpus.architectures(spec.space, spec.weights)
    # 2 backbones x 2 sizes x the largest batch size of the range x trained or frozen.
    assert len(found) == 8 and {a.batch_size for a in found} == {64}
    assert {(a.image_size, a.trains) for a in found} == {(96, False), (96, True), (160, False), (160, True)}
    assert all(a.trains for a in gpus.architectures(spec.space, "none"))  # random weights train the whole backbone

    peaks = {a.key: (4000.0 if a.backbone == "resnet50" else 500.0) * (2 if a.trains else 1) for a in found}
    peaks[next(a.key for a in found if a.backbone == "resnet50" and a.trains and a.image_size == 160)] = None
    packing = gpus.Packing.from_peaks(peaks, gpu="NVIDIA H100 80GB HBM3", memory_mb=H100_MB, cap=4,
                                      cpus_per_trial=2, weights="imagenet")
    config = {"backbone": "mobilenet_v2_0.35", "image_size": 96, "batch_size": 32, "unfreeze": 0}
    assert packing.share_for(config) == 0.25  # 4 fit (cap 4): its batch size was measured at the range's largest
    assert packing.share_for({**config, "backbone": "resnet50", "unfreeze": 20}) == 0.25  # 9,600 MB a trial: 7 fit
    assert packing.share_for({**config, "backbone": "resnet50", "unfreeze": 20, "image_size": 160}) == 1.0
    assert packing.share_for({**config, "backbone": "efficientnetv2_b0"}) == 1.0  # never measured: a whole GPU
    assert packing.resources(config).required_resources == {"CPU": 2, "GPU": 0.25}
    assert gpus.Packing.from_json(json.loads(json.dumps(packing.to_json()))) == packing
    lines = packing.lines()
    assert lines[0] == "gpus_per_trial auto, on NVIDIA H100 80GB HBM3 (81,559 MB): peak memory measured per architecture"
    assert "  resnet50 full 160px batch 64 trained: did not fit in a whole GPU's memory -> 1 per GPU (share 1)" in lines
    assert "  mobilenet_v2_0.35 full 96px batch 64 frozen: peak 500 MB -> 4 per GPU (share 0.25)" in lines


def test_an_out_of_memory_error_becomes_a_retry_alone_only_for_a_shared_gpu():
    import tensorflow as tf

    oom = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[64,112,112,96]")
    assert gpus.is_out_of_memory(oom)
    try:
        try:
            raise oom
        except tf.errors.ResourceExhaustedError as exc:
            raise RuntimeError("while training") from exc
    except RuntimeError as wrapped:
        assert gpus.is_out_of_memory(wrapped)
    assert not gpus.is_out_of_memory(ValueError("shapes do not match"))

    shared = gpus.out_of_memory(0.5, oom)
    assert str(shared) == "out of GPU memory with 0.5 of a GPU: OOM when allocating tensor with shape[64,112,112,96]"
    assert retried_alone(f"ray.exceptions.RayTaskError: GpuOutOfMemory: {shared}") == \
        "out of GPU memory with 0.5 of a GPU; retried alone on a whole GPU"
    # A trial with a whole GPU has nothing to be freed of: retried (or not) as any failure.
    assert retried_alone(f"GpuOutOfMemory: {gpus.out_of_memory(1.0, oom)}") == ""
    assert retried_alone("ValueError: shapes do not match") == ""


def test_the_dry_run_says_the_precision_and_the_packing(tmp_path, capsys):
    from PIL import Image

    for name in ("a", "b"):
        (tmp_path / "d" / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (100 * i, 0, 0)).save(tmp_path / "d" / name / f"{i}.png")
    spec = write_spec(tmp_path, "data: {train: d}\nbudget: {gpus_per_trial: 0.25, precision: mixed_float16}\n"
                                "space: {backbone: [simple_cnn, mobilenet_v2_0.35], image_size: [32, 64]}\n")
    assert main(["run", str(spec), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "precision: mixed_float16 (variables, the head's output, the loss and exported models stay float32)" in out
    assert "GPUs: 0.25 of a GPU per trial: 4 trials per GPU, each held to its share of the GPU's memory" in out

    spec.write_text(spec.read_text().replace("gpus_per_trial: 0.25", "gpus_per_trial: auto"))
    assert main(["run", str(spec), "--dry-run"]) == 0
    out = capsys.readouterr().out
    if not gpus.devices():  # this machine: nothing to measure on before the sweep's Ray lends a GPU
        assert ("GPUs: auto: 4 architectures' peak memory is measured on a GPU of the Ray cluster (this machine has "
                "none) as the sweep starts") in " ".join(out.split())
    spec.write_text(spec.read_text().replace("gpus_per_trial: auto, precision: mixed_float16", "seed: 1"))
    assert main(["run", str(spec), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "precision: float32\n" in out and "GPUs: none (budget.gpus_per_trial 0): trials run on CPUs" in out


# --- precision, on the CPU -------------------------------------------------------------------------


@pytest.mark.parametrize("word, compute", [("mixed_float16", "float16"), ("bfloat16", "bfloat16")])
def test_a_reduced_precision_model_keeps_float32_variables_output_and_loss(word, compute):
    import keras

    from sweeper.model import TrialConfig, build_model
    from sweeper.training import EpochLoop

    config = TrialConfig(backbone="simple_cnn", image_size=32, head_units=(16,), batch_size=32)
    with precision.building_in(word):
        model = build_model(config, task="classification", n_classes=3, weights=None)
    assert keras.config.dtype_policy().name == "float32"  # restored: the worker's next model is float32
    assert precision.of_model(model) == word and model.get_layer("dense_1").compute_dtype == compute
    assert model.get_layer("output").compute_dtype == "float32" and model.output.dtype == "float32"
    assert all(v.dtype == "float32" for v in model.weights)
    optimizer = type(model.optimizer).__name__
    assert optimizer == ("LossScaleOptimizer" if word == "mixed_float16" else "Adam")  # float16 needs loss scaling

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (96, 32, 32, 3)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 127).astype(np.int32) + (x[:, :16].mean(axis=(1, 2, 3)) > 127)
    logs = EpochLoop(model).train_epoch(x, y, batch_size=32, rng=rng, learning_rate=1e-3)
    assert np.isfinite(logs["loss"]) and logs["loss"] > 0

    # What export does: the same weights in a float32 model, whose outputs agree to the precision's digits.
    float32 = build_model(config, task="classification", n_classes=3, weights=None)
    float32.set_weights(model.get_weights())
    assert precision.of_model(float32) == "float32"
    reduced, full = model.predict(x, verbose=0), float32.predict(x, verbose=0)
    assert reduced.dtype == np.float32 and np.abs(reduced - full).max() < (2e-2 if compute == "bfloat16" else 3e-3)


def test_features_computed_in_another_precision_have_their_own_cache_entry_and_are_stored_in_float32(tmp_path):
    import keras

    from sweeper import feature_cache
    from sweeper.model import TrialConfig, build_model

    config = TrialConfig(backbone="simple_cnn", image_size=32, unfreeze=0)
    pixels = np.random.default_rng(0).uniform(0, 255, (10, 32, 32, 3)).astype(np.float32)
    keys, features = {}, {}
    for word in ("float32", "mixed_float16"):
        keras.utils.set_random_seed(0)  # simple_cnn has no pretrained weights: the same random ones
        with precision.building_in(word):
            model = build_model(config, task="classification", n_classes=2, weights="imagenet")
            split = feature_cache.split_model(model)
        keys[word] = feature_cache.key_for(model, split, backbone="simple_cnn", cut="full", image_size=32,
                                           weights_used="imagenet", fingerprint="f", spatial_dtype="float32")
        features[word] = feature_cache.frozen_features(split.prefix, pixels, tmp_path, keys[word])[0]
    # A float32 entry keeps the key it had before precisions existed.
    assert keys["float32"] == feature_cache.cache_key(backbone="simple_cnn", weights="imagenet", cut="full",
                                                      boundary=split.boundary, image_size=32, preprocess="unit",
                                                      fingerprint="f")
    assert keys["mixed_float16"] != keys["float32"]
    assert features["mixed_float16"].dtype == np.float32 == features["float32"].dtype
    assert 0 < np.abs(features["mixed_float16"] - features["float32"]).max() < 1e-2 * np.abs(features["float32"]).max()


# --- real sweeps -------------------------------------------------------------------------------------

SHARING = '''
import keras


def build(input_shape):
    """Small, but like a large network it runs out of GPU memory at 48 px while sharing a GPU."""
    if input_shape[0] >= 48 and _gpu_share() < 1:
        import tensorflow as tf

        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[64,48,48,16]")
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="stem")(inputs)
    return keras.Model(inputs, x, name="sharenet")


def _gpu_share() -> float:
    import ray

    if not ray.is_initialized():  # sweeper loading the model before the sweep
        return 1.0
    return ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0)
'''

SWEEP = """
name: {name}
data: {{train: {digits}, validation_split: 0.2}}
backbones:
  sharenet: {{factory: "nets.py:build", scaling: unit}}
budget: {{trials: 2, max_epochs: 2, grace_epochs: 2, concurrent_trials: 2, gpus_per_trial: {gpus}, search: grid}}
space:
  backbone: sharenet
  image_size: [32, 48]
  batch_size: 64
"""


def _run_with_a_gpu(tmp_path, digits_dir, name: str, gpus_per_trial) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """`sweeper run` with its own local Ray listing one GPU (TensorFlow sees none on this machine)."""
    (tmp_path / "nets.py").write_text(SHARING)
    spec = write_spec(tmp_path, SWEEP.format(name=name, digits=digits_dir, gpus=gpus_per_trial), f"{name}.yaml")
    done = subprocess.run([sys.executable, "-m", "sweeper", "run", str(spec), "--out", str(tmp_path / "results")],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "RAY_OVERRIDE_RESOURCES": json.dumps({"GPU": 1})})
    assert done.returncode == 0, done.stderr[-3000:]
    return done, {r["image_size"]: r for r in leaderboard.read(tmp_path / "results" / name)}


@pytest.mark.ray
def test_a_trial_out_of_gpu_memory_on_a_shared_gpu_is_retried_alone_and_its_status_says_so(tmp_path, digits_dir):
    done, rows = _run_with_a_gpu(tmp_path, digits_dir, "packed", 0.5)
    assert rows[32]["status"] == rows[48]["status"] == "completed" and rows[32]["error"] == rows[48]["error"] == ""
    assert rows[32]["gpus"] == 0.5 and "retried" not in rows[32]  # shared its GPU, and fitted
    assert rows[48]["gpus"] == 1.0  # its retry held the whole GPU: no other trial beside it
    assert rows[48]["retried"] == "out of GPU memory with 0.5 of a GPU; retried alone on a whole GPU"
    assert rows[48]["epochs"] == 2
    retried = rows[48]["trial_id"]
    assert (f"trial {retried} restarted after a failure (attempt 2): out of GPU memory with 0.5 of a GPU; retried "
            "alone on a whole GPU") in done.stdout
    assert f"{retried}  completed, retried alone" in done.stdout  # the final table
    error = (tmp_path / "results" / "packed" / "experiment" / f"trial_{retried}" / "error.txt").read_text()
    assert "GpuOutOfMemory: out of GPU memory with 0.5 of a GPU: OOM when allocating tensor" in error


@pytest.mark.ray
def test_auto_packing_where_tensorflow_sees_no_gpu_gives_each_trial_a_whole_one(tmp_path, digits_dir):
    done, rows = _run_with_a_gpu(tmp_path, digits_dir, "auto", "auto")
    assert ("gpus_per_trial auto: TensorFlow sees no GPU on the node the measurement ran on (a CPU-only "
            "TensorFlow?); each trial takes a whole GPU") in done.stdout
    assert "GPU memory " in done.stdout.split("Finished in")[-1]  # the measurement's stage, timed
    # Whole GPUs: the 48-px trial never shared, so never ran out of memory.
    assert rows[32]["gpus"] == rows[48]["gpus"] == 1.0 and "retried" not in rows[48]
    packing = json.loads((tmp_path / "results" / "auto" / "sweep.json").read_text())["gpu_packing"]
    assert packing["shares"] == {} and packing["note"].startswith("TensorFlow sees no GPU")


@pytest.mark.ray
def test_a_bfloat16_sweep_with_auto_gpus_on_a_cpu_cluster_trains_and_exports_float32(tmp_path, digits_dir,
                                                                                     ray_session, capsys):
    spec = write_spec(tmp_path, f"""
name: reduced
data: {{train: {digits_dir}, validation_split: 0.2}}
image_size: 32
weights: none
budget: {{trials: 2, max_epochs: 4, grace_epochs: 4, precision: bfloat16, gpus_per_trial: auto, search: grid}}
space: {{backbone: simple_cnn, learning_rate: [3.0e-3, 1.0e-2], batch_size: 32}}
""")
    assert main(["run", str(spec), "--out", str(tmp_path / "results")]) == 0
    assert "gpus_per_trial auto: no GPU in the Ray cluster; trials run on CPUs" in capsys.readouterr().out
    sweep = tmp_path / "results" / "reduced"
    meta = json.loads((sweep / "sweep.json").read_text())
    assert meta["precision"] == "bfloat16" and "gpu_packing" not in meta
    rows = leaderboard.read(sweep)
    assert len(rows) == 2 and all(r["status"] == "completed" and "gpus" not in r for r in rows)
    assert rows[0]["val_accuracy"] > 0.5  # 10 digits: it learned, in bfloat16 (0.86 here; 0.94 in float32)

    assert main(["export", str(sweep), "--out", str(tmp_path / "bundle")]) == 0
    manifest = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
    checks = manifest["checks"]
    assert checks["trained_in"] == "bfloat16"
    assert abs(checks["val_accuracy"] - rows[0]["val_accuracy"]) <= 0.02
    assert all(f["max_abs_difference"] <= 1e-4 for name, f in checks["formats"].items())  # the parity gate
    import keras

    import sweeper.model  # noqa: F401  (registers the model's own layers with Keras)

    exported = keras.saving.load_model(tmp_path / "bundle" / "model.keras", compile=False, safe_mode=True)
    assert precision.of_model(exported) == "float32" and all(v.dtype == "float32" for v in exported.weights)
