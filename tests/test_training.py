"""The epoch loop and the warm-model pool: fast paths that must train exactly what the slow ones do."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from conftest import WEIGHTS, needs_assets

from sweeper import private_apis, training, warm_models
from sweeper.errors import SweeperError
from sweeper.feature_cache import backbone_layer, frozen_features
from sweeper.model import TrialConfig, build_model

RNG = np.random.default_rng(0)
X, Y = RNG.normal(size=(70, 12)).astype("float32"), RNG.integers(0, 2, 70)


def _head(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12,))
    outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Dropout(0.3)(keras.layers.Dense(8)(inputs)))
    return _compiled(keras.Model(inputs, outputs))


def _compiled(model):
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy", metrics=[keras.metrics.BinaryAccuracy(name="acc")])
    return model


def _train(model, epochs=3, batch_size=16, *, held=True):
    """Train on (X, Y) held as tensors (a whole epoch per call) or streamed from the arrays."""
    loop, order = training.EpochLoop(model), np.random.default_rng(1)
    x, y = training.hold(X, Y) if held else (X, Y)
    return [loop.train_epoch(x, y, batch_size=batch_size, rng=order) for _ in range(epochs)]


def test_held_and_streamed_inputs_train_the_same_weights():
    resident = _head()
    logs_resident = _train(resident)
    batched = _head()
    logs_batched = _train(batched, held=False)
    for a, b in zip(resident.get_weights(), batched.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert logs_resident[-1]["loss"] == pytest.approx(logs_batched[-1]["loss"], abs=1e-5)
    assert logs_resident[0]["loss"] != pytest.approx(logs_resident[-1]["loss"])  # it learned something


def test_rows_of_a_cache_file_train_like_arrays_in_memory_reading_a_batch_at_a_time(tmp_path):
    """Over the budget, a trial's split is read from the cache's file a batch at a time: the same
    weights as arrays held in memory, and never more rows read at once than a batch."""
    resident = _head()
    _train(resident)
    cache = tmp_path / "features.npy"
    order = np.random.default_rng(7).permutation(len(X) + 20)  # the split's rows, scattered in a larger file
    stored = np.zeros((len(X) + 20, *X.shape[1:]), X.dtype)
    stored[order[:len(X)]] = X
    np.save(cache, stored)

    read = []

    class Counted(np.ndarray):  # a memory-mapped file that records how many rows each read takes
        def __getitem__(self, rows):
            read.append(np.size(rows) if not isinstance(rows, slice) else len(range(*rows.indices(len(self)))))
            return np.asarray(super().__getitem__(rows))

    rows = training.Rows(np.load(cache, mmap_mode="r").view(Counted), order[:len(X)])
    assert len(rows) == len(X) and rows.nbytes == X.nbytes and np.array_equal(np.asarray(rows), X)
    read.clear()
    streamed = _head()
    loop, rng = training.EpochLoop(streamed), np.random.default_rng(1)
    for _ in range(3):
        loop.train_epoch(rows, Y, batch_size=16, rng=rng)
    for a, b in zip(resident.get_weights(), streamed.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert read and max(read) == 16 and sum(read) == 3 * len(X)


def _two_input_head(seed=0):
    """A head over two inputs of different shapes, as on a frontier of two activations."""
    keras.utils.set_random_seed(seed)
    a, b = keras.Input((3, 4)), keras.Input((5,))
    merged = keras.layers.Concatenate()([keras.layers.Flatten()(a), b])
    return _compiled(keras.Model([a, b], keras.layers.Dense(1, activation="sigmoid")(merged)))


def test_two_inputs_of_different_shapes_stream_like_they_are_held():
    x = [X.reshape(-1, 3, 4), RNG.normal(size=(len(X), 5)).astype("float16")]
    weights, losses = [], []
    for held in (True, False):
        model, rng = _two_input_head(), np.random.default_rng(1)
        loop = training.EpochLoop(model)
        inputs, labels = training.hold(x, Y) if held else (x, Y)
        logs = [loop.train_epoch(inputs, labels, batch_size=16, rng=rng) for _ in range(3)]
        logs.append(loop.evaluate(inputs, labels, batch_size=16))
        weights.append(model.get_weights())
        losses.append([log["loss"] for log in logs])
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(losses[0], losses[1], atol=1e-5)
    assert losses[0][0] != pytest.approx(losses[0][2])


@pytest.mark.parametrize("held", [True, False])
def test_evaluate_matches_keras_evaluate(held):
    model = _head()
    _train(model, epochs=1)
    x, y = training.hold(X, Y) if held else (X, Y)
    ours = training.EpochLoop(model).evaluate(x, y, batch_size=64)
    theirs = model.evaluate(X, Y, batch_size=64, verbose=0, return_dict=True)
    assert ours.keys() == theirs.keys() == {"loss", "acc"}
    for name in ours:
        assert ours[name] == pytest.approx(theirs[name], abs=1e-5)


def test_an_epoch_sees_every_row_once_in_a_seeded_order(monkeypatch):
    monkeypatch.setattr(training, "_metrics", lambda model: {})  # no real step ran
    loop, seen = training.EpochLoop(_head()), []
    loop._train_batch = lambda x, y: seen.append(y)
    loop.train_epoch(X, np.arange(70), batch_size=16, rng=np.random.default_rng(5))
    assert [len(batch) for batch in seen] == [16, 16, 16, 16, 6]
    np.testing.assert_array_equal(np.concatenate(seen), np.random.default_rng(5).permutation(70))


def test_a_streamed_epoch_reads_the_file_in_runs_yet_visits_every_row_once_in_a_seeded_order(monkeypatch):
    monkeypatch.setattr(training, "CHUNK_BYTES", 10 * 100)  # rows of 100 bytes: chunks of 10 rows
    monkeypatch.setattr(training, "WINDOW_BYTES", 40 * 100)  # windows of 4 chunks
    order = training.epoch_order(1000, 100, np.random.default_rng(3))
    assert sorted(order) == list(range(1000))
    np.testing.assert_array_equal(order, training.epoch_order(1000, 100, np.random.default_rng(3)))
    assert not np.array_equal(order, training.epoch_order(1000, 100, np.random.default_rng(4)))
    for start in range(0, 1000, 40):  # each window holds 4 whole chunks, read nowhere else...
        chunks = set(order[start:start + 40] // 10)
        assert len(chunks) == 4 and sorted(order[start:start + 40]) == sorted(
            row for chunk in chunks for row in range(10 * chunk, 10 * chunk + 10))
    assert len(set(order[:40] // 10)) == 4 and not np.array_equal(np.sort(order[:40]), order[:40])  # ...shuffled
    # Chunks are taken in a random order, not the file's: the first window is not the file's start.
    assert [sorted(set(order[s:s + 40] // 10)) for s in range(0, 1000, 40)] != [
        list(range(c, c + 4)) for c in range(0, 100, 4)]
    # A split within one window is shuffled whole, as the held path does.
    np.testing.assert_array_equal(training.epoch_order(40, 100, np.random.default_rng(3)),
                                  np.random.default_rng(3).permutation(40))


def test_the_memory_budget_is_the_machines_share_split_among_concurrent_trials(monkeypatch):
    assert training.memory_budget(1, override=0) == 0
    one, two = training.memory_budget(1), training.memory_budget(2)
    assert 0 < one <= training.RESIDENT_CAP and two == one // 2
    monkeypatch.setattr(training.os, "sysconf", lambda name: {"SC_PHYS_PAGES": 2**20, "SC_PAGE_SIZE": 4096}[name])
    assert training.memory_budget(1) == 2**32 // 8  # a 4 GiB machine: an eighth of it
    monkeypatch.setenv("SWEEPER_MEMORY_BUDGET", "512MB")
    assert training.memory_budget_override() == 512 * 10**6
    monkeypatch.setenv("SWEEPER_MEMORY_BUDGET", "lots")
    with pytest.raises(SweeperError, match="SWEEPER_MEMORY_BUDGET: 'lots' is not a size"):
        training.memory_budget_override()
    monkeypatch.delenv("SWEEPER_MEMORY_BUDGET")
    assert training.memory_budget_override() is None


MOBILENET_CONFIG = dict(backbone="mobilenet_v2_0.35", image_size=32, head_units=(8,), head_dropout=0.3)
PIXELS = np.random.default_rng(2).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
LABELS = np.arange(40) % 3
MOBILENET = WEIGHTS / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"


def _trial(config, seed, *, use_feature_cache, tmp_path):
    """What a trial does with its model: prepare it, then train two epochs."""
    warm = warm_models.prepare(config, seed=seed, task="classification", n_classes=3, weights="imagenet",
                               weights_dir=str(WEIGHTS), use_feature_cache=use_feature_cache)
    x = PIXELS
    if warm.split is not None:
        x = warm.split.inputs(frozen_features(warm.split.prefix, PIXELS, tmp_path, f"k{config.unfreeze}"),
                              np.arange(40))
    order = np.random.default_rng(seed)
    x, y = training.hold(x, LABELS)  # as a trial holds inputs that fit its budget
    for _ in range(2):
        warm.loop.train_epoch(x, y, batch_size=16, rng=order)
    return warm, [w.copy() for w in warm.model.get_weights()]


@needs_assets
@pytest.mark.parametrize("unfreeze", [0, 14])
def test_a_reused_model_trains_exactly_like_a_fresh_one(tmp_path, unfreeze):
    warm_models.POOL.models.clear()
    config = TrialConfig(**MOBILENET_CONFIG, unfreeze=unfreeze, learning_rate=0.01)
    first, fresh_weights = _trial(config, seed=7, use_feature_cache=True, tmp_path=tmp_path)
    # Another trial of the same structure (other seed and learning rate) gets the same model object...
    other, _ = _trial(TrialConfig(**MOBILENET_CONFIG, unfreeze=unfreeze, learning_rate=0.1), seed=8,
                      use_feature_cache=True, tmp_path=tmp_path)
    assert other is first
    # A model of another structure is built in between (Keras' session is cleared for it).
    _trial(TrialConfig(**MOBILENET_CONFIG, unfreeze=unfreeze + 1), seed=9, use_feature_cache=True, tmp_path=tmp_path)
    # ...and a third trial with the first trial's seed and rate, on the reused model, repeats it exactly.
    again, reused_weights = _trial(config, seed=7, use_feature_cache=True, tmp_path=tmp_path)
    assert again is first
    for a, b in zip(fresh_weights, reused_weights):
        np.testing.assert_array_equal(a, b)
    # Frozen variables kept their pretrained values; with unfreeze > 0 the backbone's top layers trained.
    pristine = build_model(config, task="classification", n_classes=3, weights=str(MOBILENET)).get_weights()
    base = {id(v) for v in backbone_layer(again.model).trainable_variables}
    trained_in_base = 0
    for variable, before, after in zip(again.model.weights, pristine, reused_weights):
        if not variable.trainable:
            np.testing.assert_array_equal(before, after, err_msg=variable.path)
        trained_in_base += id(variable) in base and not np.array_equal(before, after)
    assert (trained_in_base > 0) == (unfreeze > 0)


@needs_assets
def test_cached_features_and_images_train_the_same_weights(tmp_path):
    """The same trial trained on cached features and on images ends with the same whole model."""
    warm_models.POOL.models.clear()
    config = TrialConfig(**{**MOBILENET_CONFIG, "head_dropout": 0.0}, unfreeze=14, optimizer="sgd",
                         learning_rate=0.01)
    cached, cached_weights = _trial(config, seed=3, use_feature_cache=True, tmp_path=tmp_path)
    assert cached.split is not None
    on_images, image_weights = _trial(config, seed=3, use_feature_cache=False, tmp_path=tmp_path)
    assert on_images.split is None
    for a, b in zip(cached_weights, image_weights):
        np.testing.assert_allclose(a, b, atol=1e-4)


@needs_assets
def test_the_pool_keeps_a_bounded_number_of_models(tmp_path, monkeypatch):
    monkeypatch.setattr(warm_models, "KEEP_MODELS", 2)
    warm_models.POOL.models.clear()
    for unfreeze in (0, 1, 2):
        warm_models.prepare(TrialConfig(**MOBILENET_CONFIG, unfreeze=unfreeze), seed=1, task="classification",
                            n_classes=3, weights="imagenet", weights_dir=str(WEIGHTS))
    assert [key[0].unfreeze for key in warm_models.POOL.models] == [1, 2]  # the oldest went
    monkeypatch.setattr(warm_models, "KEEP_MB", 1.0)  # MobileNetV2-0.35 is 1.6 MB: one model only, the newest
    warm_models.prepare(TrialConfig(**MOBILENET_CONFIG, unfreeze=3), seed=1, task="classification",
                        n_classes=3, weights="imagenet", weights_dir=str(WEIGHTS))
    assert [key[0].unfreeze for key in warm_models.POOL.models] == [3]


@needs_assets
def test_a_worker_building_model_after_model_does_not_keep_their_gradients(tmp_path, monkeypatch):
    """TF registers custom gradients globally for every traced training step; dropped models' go."""
    monkeypatch.setattr(warm_models, "KEEP_MODELS", 2)
    warm_models.POOL.models.clear()
    registry = private_apis.tf_gradient_registry()
    sizes = []
    for units in [(8,), (16,), (24,), (32,), (40,), (48,)]:  # every trial a new structure
        config = TrialConfig(**{**MOBILENET_CONFIG, "head_units": units})
        _trial(config, seed=1, use_feature_cache=True, tmp_path=tmp_path)
        sizes.append(len(registry))
    assert sizes[2] > sizes[0] or sizes[1] > sizes[0]  # training does register gradients...
    assert sizes[-1] == sizes[-2] == sizes[-3]  # ...but only the pooled models' stay


@pytest.mark.parametrize("cold", [False, True])
def test_the_worker_setup_hook_imports_tensorflow_unless_the_worker_never_trains(cold):
    import os
    import subprocess
    import sys

    env = {**os.environ, "SWEEPER_COLD_WORKER": "1"} if cold else {
        k: v for k, v in os.environ.items() if k != "SWEEPER_COLD_WORKER"}
    code = ("import sys; from sweeper.trial import warm_up_worker; warm_up_worker(); "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.split() == (["False", "False"] if cold else ["True", "True"])


def test_inference_latency_is_a_median_of_real_timings():
    from sweeper.latency import inference_latency

    small, large = _head(), keras.Sequential([keras.Input((12,)), keras.layers.Dense(4096), keras.layers.Dense(4096),
                                              keras.layers.Dense(1)])
    fast, slow = inference_latency(small), inference_latency(large)
    assert 0 < fast.ms < slow.ms < 1000  # two 4096x4096 matrix products take longer than a 12x8 one
    assert fast.runs == slow.runs == 30 and 1 <= fast.rounds <= 3 and fast.spread_ms >= 0


def test_tflite_latency_times_the_converted_model_in_litert():
    from sweeper.latency import tflite_latency

    small, large = _head(), keras.Sequential([keras.Input((12,)), keras.layers.Dense(4096), keras.layers.Dense(4096),
                                              keras.layers.Dense(1)])
    fast, slow = tflite_latency(small), tflite_latency(large)
    assert 0 < fast.ms < slow.ms < 1000  # on 1 thread, 2 x 4096 x 4096 multiply-adds take longer than 12 x 8
    assert slow.runs == 30 and 1 <= slow.rounds <= 3 and slow.spread_ms >= 0
