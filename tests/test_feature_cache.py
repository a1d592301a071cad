"""The frozen-prefix cache gives the whole model's predictions and training, and its key tracks every input."""

from __future__ import annotations

import threading

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from conftest import WEIGHTS, needs_assets

from sweeper import feature_cache
from sweeper.feature_cache import backbone_layer, cache_key, frozen_features, split_model
from sweeper.model import TrialConfig, build_model, compile_model

MOBILENET = WEIGHTS / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
PIXELS = np.random.default_rng(0).integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)


def _model(weights=str(MOBILENET), task="classification", n_classes=3, **config):
    config = TrialConfig(**{"backbone": "mobilenet_v2_0.35", "image_size": 32, **config})
    stats = (5.0, 2.0) if task == "regression" else None
    return build_model(config, task=task, n_classes=n_classes, weights=weights, target_stats=stats), config


def _arrays(x):
    """Keras' own fit and predict take arrays: read the rows a split's inputs name."""
    return [np.asarray(part) for part in x] if isinstance(x, list) else np.asarray(x)


def _predict_split(split, features):
    return split.trained.predict(_arrays(split.inputs(features, np.arange(24))), verbose=0)


@needs_assets
@pytest.mark.parametrize("unfreeze, pooling, task", [
    (0, "avg", "classification"), (0, "flatten", "regression"), (12, "avg", "classification"),
    (40, "flatten", "regression"),
])
def test_cached_prefix_and_trained_part_reproduce_the_whole_model(tmp_path, unfreeze, pooling, task):
    model, _ = _model(task=task, unfreeze=unfreeze, head_pooling=pooling, head_units=(16,))
    split = split_model(model)
    features = frozen_features(split.prefix, PIXELS, tmp_path, "k")
    assert [f.shape[0] for f in features] == [24] * len(features)
    np.testing.assert_allclose(_predict_split(split, features), model.predict(PIXELS.astype("float32"), verbose=0),
                               atol=1e-4)
    # The trained part holds every trainable weight of the model and nothing else.
    assert {id(w) for w in split.trained.trainable_weights} == {id(w) for w in model.trainable_weights}
    if unfreeze == 0:  # all frozen: the cache holds pooled vectors
        assert len(features) == 1 and features[0].ndim == 2


@needs_assets
def test_a_boundary_inside_a_residual_block_caches_several_tensors(tmp_path):
    """The top 14 layers of MobileNetV2 start inside block 15: its skip input is frozen beside them."""
    model, _ = _model(unfreeze=14)
    split = split_model(model)
    features = frozen_features(split.prefix, PIXELS, tmp_path, "residual")
    assert split.boundary == ("block_14_add:0:0", "block_15_depthwise_relu:0:0")
    assert [f.shape[1:] for f in features] == [(1, 1, 56), (1, 1, 336)]
    np.testing.assert_allclose(_predict_split(split, features), model.predict(PIXELS.astype("float32"), verbose=0),
                               atol=1e-4)


@needs_assets
def test_the_disk_estimate_of_an_entry_is_the_size_of_the_entry_written(tmp_path):
    """`frozen_entries` (a backbone built without weights) gives each distinct entry's bytes per
    image exactly as the cache writes them; unfreeze values that cut at the same place share one."""
    estimated = feature_cache.frozen_entries("mobilenet_v2_0.35", "full", 32, [(u, 0) for u in (0, 1, 12, 14, 40, 200)],
                                             ["avg", "flatten"])
    written = {}
    for unfreeze in (0, 12, 14, 40):
        for pooling in (("avg", "flatten") if unfreeze == 0 else ("avg",)):
            split = split_model(_model(unfreeze=unfreeze, head_pooling=pooling)[0])
            features = frozen_features(split.prefix, PIXELS, tmp_path, f"{unfreeze}-{pooling}")
            written.setdefault(split.boundary, sum(f[0].nbytes for f in features))
    # unfreeze 1 trains out_relu, which has no weights: the same entry as 0; 200 trains the images.
    assert sorted(n for _, n in estimated) == sorted(written.values())
    assert [u for (u, _), _ in estimated] == [0, 0, 12, 14, 40]


@needs_assets
def test_spatial_features_can_be_stored_as_float16_and_pooled_ones_stay_float32(tmp_path):
    """float16 halves a spatial entry (its key differs from float32's); the model reads it as float32."""
    model, _ = _model(unfreeze=14)
    split = split_model(model)
    exact = frozen_features(split.prefix, PIXELS, tmp_path, "exact")
    half = frozen_features(split.prefix, PIXELS, tmp_path, "half", spatial_dtype="float16")
    assert [f.dtype for f in exact] == [np.float32] * 2 and [f.dtype for f in half] == [np.float16] * 2
    assert sum(f.nbytes for f in half) * 2 == sum(f.nbytes for f in exact)
    for a, b in zip(exact, half):
        np.testing.assert_allclose(np.asarray(b, np.float32), a, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(_predict_split(split, half), _predict_split(split, exact), atol=1e-2)
    pooled = split_model(_model(unfreeze=0)[0])
    assert frozen_features(pooled.prefix, PIXELS, tmp_path, "pooled", spatial_dtype="float16")[0].dtype == np.float32
    key = dict(backbone="b", weights="imagenet", cut="full", boundary=("x",), image_size=32, preprocess="tf",
               fingerprint="f")
    assert cache_key(**key) != cache_key(**key, spatial_dtype="float16")
    assert cache_key(**key) == cache_key(**key, spatial_dtype="float32")
    estimated = dict(feature_cache.frozen_entries("mobilenet_v2_0.35", "full", 32, [(14, 0)], ["avg"], "float16"))
    assert estimated[14, 0] == sum(f[0].nbytes for f in half)


@needs_assets
@pytest.mark.parametrize("unfreeze", [0, 12])
def test_training_on_cached_features_gives_the_weights_of_end_to_end_training(tmp_path, unfreeze):
    cached, config = _model(unfreeze=unfreeze, head_dropout=0.0, optimizer="sgd", learning_rate=0.01)
    end_to_end, _ = _model(unfreeze=unfreeze, head_dropout=0.0, optimizer="sgd", learning_rate=0.01)
    end_to_end.set_weights(cached.get_weights())
    labels = np.arange(24) % 3

    initial = [w.numpy().copy() for w in cached.weights]

    split = split_model(cached)
    compile_model(split.trained, config, task="classification", n_classes=3)
    features = frozen_features(split.prefix, PIXELS, tmp_path, "train")
    split.trained.fit(_arrays(split.inputs(features, np.arange(24))), labels, batch_size=8, epochs=2, shuffle=False, verbose=0)
    end_to_end.fit(PIXELS.astype("float32"), labels, batch_size=8, epochs=2, shuffle=False, verbose=0)

    for a, b in zip(cached.weights, end_to_end.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4, err_msg=a.path)
    moved = [w.path for w, before in zip(cached.weights, initial) if not np.allclose(w.numpy(), before)]
    assert "output" in " ".join(moved)
    if unfreeze:
        assert "block_16_project/kernel" in moved, moved  # backbone layers trained too


@needs_assets
def test_nothing_is_cached_when_the_images_themselves_are_trained_on():
    assert split_model(_model(augment=True)[0]) is None  # every epoch sees different pixels
    assert split_model(_model(weights=None)[0]) is None  # from scratch: every layer trains
    assert split_model(_model(unfreeze=10_000)[0]) is None  # the first layer trains


def test_concurrent_callers_share_the_chunks_and_compute_each_once(tmp_path, monkeypatch):
    monkeypatch.setattr(feature_cache, "CHUNK", 8)  # 24 images: 3 chunks
    inputs = keras.Input((32, 32, 3))
    prefix = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))
    computed, results, progress = [], [], []
    compute = feature_cache._compute_chunk

    def counted(prefix, pixels, parts, chunk, *rest):
        computed.append(chunk)
        compute(prefix, pixels, parts, chunk, *rest)

    monkeypatch.setattr(feature_cache, "_compute_chunk", counted)

    def worker():
        results.append(frozen_features(prefix, PIXELS, tmp_path, "shared", progress=lambda d, t: progress.append(t)))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(computed) == [0, 1, 2]  # every chunk once, whoever computed it
    assert progress == [24, 24, 24]
    assert len(results) == 3
    for result in results:
        np.testing.assert_allclose(result[0], PIXELS.mean(axis=(1, 2)), rtol=1e-6)
    # The entry, its manifest (for `sweeper cache list`) and its lock; no parts left behind.
    assert sorted(p.name for p in (tmp_path / "features").iterdir()) == ["shared", "shared.json", "shared.lock"]


def test_a_chunk_claimed_by_a_dead_process_is_taken_over(tmp_path, monkeypatch):
    monkeypatch.setattr(feature_cache, "CHUNK", 8)
    parts = tmp_path / "features" / "stale.parts"
    parts.mkdir(parents=True)
    (parts / "1.claim").write_text("999999999")  # no such process
    inputs = keras.Input((32, 32, 3))
    prefix = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))
    features = frozen_features(prefix, PIXELS, tmp_path, "stale")
    np.testing.assert_allclose(features[0], PIXELS.mean(axis=(1, 2)), rtol=1e-6)
    assert not parts.exists()


@pytest.mark.parametrize("claim, age_s, taken", [
    ("", 0, False),  # just created, its pid not yet written: wait
    ("", 700, True),  # empty for minutes: killed as it claimed
    ('{"host": "another-node", "pid": 1}', 0, False),  # another node's, at work: wait
    ('{"host": "another-node", "pid": 1}', 700, True),  # another node's, silent for minutes: lost
    ("{own}", 0, False),  # this very process on this host: alive
    ("{own}", 700, True),  # alive, but silent for minutes: a reused pid (pid 1 in a container)
    ('{"host": "{host}", "pid": 999999999}', 0, True),  # dead on this host
])
def test_an_abandoned_claim_is_taken_over_and_a_live_one_waited_for(tmp_path, claim, age_s, taken):
    """An empty claim, or one by a pid alive on this host (or another node's), once blocked forever."""
    import json
    import os
    import socket
    import time

    own = json.dumps({"host": socket.gethostname(), "pid": os.getpid()})
    path = tmp_path / "3.claim"
    path.write_text(claim.replace("{own}", own).replace("{host}", socket.gethostname()))
    os.utime(path, (time.time() - age_s,) * 2)
    assert feature_cache._claim(tmp_path, 3) is taken
    if taken:
        assert json.loads(path.read_text()) == json.loads(own)


def test_the_cache_key_changes_with_each_of_its_inputs(tmp_path):
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"a")
    base = dict(backbone="mobilenet_v2_0.35", weights=str(weights), cut="full", boundary=("block_14_add:0:0",),
                image_size=160, preprocess="tf", fingerprint="abc")
    key = cache_key(**base)
    assert key == cache_key(**base)
    for name, value in [("backbone", "mobilenet_0.25"), ("weights", "imagenet"), ("cut", "block_13_expand_relu"),
                        ("boundary", ("block_15_add:0:0",)), ("image_size", 128), ("preprocess", "caffe"),
                        ("fingerprint", "abd")]:
        assert cache_key(**{**base, name: value}) != key, name
    weights.write_bytes(b"another file")
    assert cache_key(**base) != key  # a different weight file at the same path


def test_backbone_layer_is_the_nested_keras_model():
    model, _ = _model(weights=None)
    assert backbone_layer(model).name.startswith("mobilenet")


def test_a_truncated_cache_entry_is_computed_anew(tmp_path):
    inputs = keras.Input((32, 32, 3))
    prefix = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))
    first = np.array(frozen_features(prefix, PIXELS, tmp_path, "entry")[0])
    entry = tmp_path / "features" / "entry" / "0.npy"
    entry.write_bytes(entry.read_bytes()[:-40])
    again = frozen_features(prefix, PIXELS, tmp_path, "entry")
    np.testing.assert_array_equal(again[0], first)
