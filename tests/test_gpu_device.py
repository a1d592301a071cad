"""What only a GPU can show: the peak-memory measurement behind `gpus_per_trial: auto`, TensorFlow
held to a trial's share of the GPU's memory, mixed precision and frozen features on the GPU, and
a packed sweep. Skipped, with the reason, where nvidia-smi lists no GPU (this project's CPU
machines); run them on one with `pytest -m gpu tests/test_gpu_device.py`.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import write_spec

from sweeper import gpus, leaderboard

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not gpus.devices(), reason="needs an NVIDIA GPU: nvidia-smi lists none on this machine"),
]

_IN_A_PROCESS = """
import json, sys
import numpy as np
from sweeper import gpus
from sweeper.trial import init_tensorflow
share = float(sys.argv[1])
tf = init_tensorflow(2, gpu_share=share)
said = gpus.limit_memory(tf, share)
limit = tf.config.get_logical_device_configuration(tf.config.list_physical_devices("GPU")[0])
try:  # 4 GB more than the limit allows
    big = tf.zeros((int((limit[0].memory_limit if limit else 0) * 2**20 // 4) + 2**30,), tf.float32)
    fitted = True
except Exception as exc:
    fitted, oom = False, gpus.is_out_of_memory(exc)
print(json.dumps({"said": said, "limit_mb": limit[0].memory_limit if limit else None, "fitted": fitted,
                  "oom": None if fitted else oom}))
"""


def test_a_share_of_a_gpu_holds_tensorflow_to_its_share_of_the_memory():
    device = gpus.devices()[0]
    done = subprocess.run([sys.executable, "-c", _IN_A_PROCESS, "0.25"], capture_output=True, text=True, timeout=300)
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    expected = gpus.memory_limit_mb(0.25, device.memory_mb)
    assert answer["said"] == f"memory limit {expected:,} MB" and answer["limit_mb"] == expected
    assert answer["fitted"] is False and answer["oom"] is True  # past its share: TensorFlow's out-of-memory error


def test_the_peak_memory_of_each_architecture_is_measured_and_cached(tmp_path):
    from sweeper.spec import load_spec

    (tmp_path / "d" / "a").mkdir(parents=True)
    spec = load_spec(write_spec(tmp_path, "data: {train: d}\nweights: none\nbudget: {gpus_per_trial: auto}\n"
                                          "space: {backbone: mobilenet_v2_0.35, image_size: 96, batch_size: [16, 64], "
                                          "unfreeze: [0, 20]}\n"))
    found = gpus.architectures(spec.space, "imagenet")
    assert len(found) == 4
    measured = gpus.measure(found, task="classification", n_classes=2, precision="float32", cache_dir=str(tmp_path),
                            backbones={})
    peaks = measured["peaks_mb"]
    assert measured["gpu"] == gpus.devices()[0].name and all(peaks[a.key] > 1 for a in found), measured
    by = {(a.batch_size, a.trains): peaks[a.key] for a in found}
    assert by[(64, True)] > by[(16, True)]  # a larger batch holds more activations for the backward pass
    cached = json.loads((tmp_path / gpus.PEAKS_FILE).read_text())
    assert cached[measured["gpu"]]["float32"] == peaks


def test_mixed_precision_trains_on_the_gpu_and_frozen_features_match_the_cpu_s(tmp_path):
    import tensorflow as tf

    from sweeper import feature_cache, precision
    from sweeper.model import TrialConfig, build_model
    from sweeper.training import EpochLoop

    config = TrialConfig(backbone="mobilenet_v2_0.35", image_size=96, unfreeze=20, batch_size=32)
    with precision.building_in("mixed_float16"):
        model = build_model(config, task="classification", n_classes=2, weights=None)
    assert type(model.optimizer).__name__ == "LossScaleOptimizer"
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (128, 96, 96, 3)).astype(np.float32)
    logs = EpochLoop(model).train_epoch(x, (x.mean(axis=(1, 2, 3)) > 127).astype(np.int32), batch_size=32, rng=rng)
    assert np.isfinite(logs["loss"])

    frozen = TrialConfig(backbone="mobilenet_v2_0.35", image_size=96, unfreeze=0)
    model = build_model(frozen, task="classification", n_classes=2, weights=None)
    split = feature_cache.split_model(model)
    on_gpu = feature_cache.frozen_features(split.prefix, x, tmp_path / "gpu", "k")[0]  # one batch of CHUNK images
    with tf.device("/CPU:0"):
        on_cpu = split.prefix.predict(x, batch_size=feature_cache.BATCH, verbose=0)
    assert np.abs(on_gpu - on_cpu).max() < 1e-3


@pytest.mark.ray
def test_a_sweep_with_auto_packing_shares_the_gpu_by_measured_memory(tmp_path, digits_dir):
    spec = write_spec(tmp_path, f"""
name: packed
data: {{train: {digits_dir}, validation_split: 0.2}}
weights: none
image_size: 64
budget: {{trials: 4, max_epochs: 2, grace_epochs: 2, concurrent_trials: 4, gpus_per_trial: auto, search: grid}}
space: {{backbone: mobilenet_v2_0.35, learning_rate: [1.0e-3, 3.0e-3], unfreeze: [0, 20]}}
""")
    done = subprocess.run([sys.executable, "-m", "sweeper", "run", str(spec), "--out", str(tmp_path / "results")],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    packing = json.loads((tmp_path / "results" / "packed" / "sweep.json").read_text())["gpu_packing"]
    assert packing["gpu"] == gpus.devices()[0].name and len(packing["peaks_mb"]) == 2
    assert all(share < 1 for share in packing["shares"].values())  # MobileNetV2-0.35 at 64 px fits several times
    rows = leaderboard.read(tmp_path / "results" / "packed")
    assert len(rows) == 4 and all(r["status"] == "completed" and r["gpus"] < 1 for r in rows)
