"""The frozen-prefix cache gives the whole model's predictions, and its key tracks every input."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from sweeper.feature_cache import cache_key, frozen_features, head_model, prefix_model
from sweeper.model import TrialConfig, build_model, compile_model


@pytest.fixture(scope="module")
def model():
    config = TrialConfig(backbone="mobilenet_v2_0.35", image_size=32, head_units=(16,), head_pooling="flatten")
    return build_model(config, task="classification", n_classes=3, weights=None)


def test_cached_features_and_head_reproduce_the_whole_model(model, tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    features = frozen_features(model, pixels, tmp_path, "k1")
    assert features.shape[0] == 20 and (tmp_path / "features" / "k1.npy").is_file()
    head = head_model(model)
    np.testing.assert_allclose(head.predict(features, verbose=0), model.predict(pixels.astype("float32"), verbose=0),
                               atol=1e-4)
    # A second call reads the cache instead of recomputing it.
    stamp = (tmp_path / "features" / "k1.npy").stat().st_mtime_ns
    again = frozen_features(model, pixels, tmp_path, "k1")
    assert (tmp_path / "features" / "k1.npy").stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(again, features)
    assert prefix_model(model).output.shape[1:] == features.shape[1:]


def test_training_the_head_trains_the_whole_model(model):
    head = head_model(model)
    config = TrialConfig(backbone="mobilenet_v2_0.35", image_size=32, learning_rate=0.05)
    compile_model(head, config, task="classification", n_classes=3)
    before = model.get_layer("output").kernel.numpy().copy()
    x = np.random.default_rng(1).normal(size=(16, *head.input.shape[1:])).astype("float32")
    head.fit(x, np.arange(16) % 3, epochs=1, verbose=0)
    after = model.get_layer("output").kernel.numpy()
    assert not np.allclose(before, after)  # the same variables: nothing to copy back


def test_the_cache_key_changes_with_each_of_its_inputs(tmp_path):
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"a")
    base = dict(backbone="mobilenet_v2_0.35", weights=str(weights), cut="full", image_size=160, fingerprint="abc")
    key = cache_key(**base)
    assert key == cache_key(**base)
    for name, value in [("backbone", "mobilenet_0.25"), ("weights", "imagenet"), ("cut", "block_13_expand_relu"),
                        ("image_size", 128), ("fingerprint", "abd")]:
        assert cache_key(**{**base, name: value}) != key, name
    weights.write_bytes(b"another file")
    assert cache_key(**base) != key  # a different weight file at the same path
