"""The model builder: cut, unfreeze, head, task outputs, optimizers, preprocessing."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from conftest import WEIGHTS, needs_assets

from sweeper.backbones import REGISTRY, build_backbone
from sweeper.model import Preprocess, TrialConfig, build_model, count_params, make_optimizer, set_trainable

MOBILENET_FILE = WEIGHTS / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"


def _backbone_of(model):
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


@pytest.mark.parametrize(
    "task, n_classes, shape, activation, loss",
    [
        ("classification", 2, (None, 1), "sigmoid", "binary_crossentropy"),
        ("classification", 5, (None, 5), "softmax", "sparse_categorical_crossentropy"),
        ("regression", 0, (None, 1), "linear", "mean_squared_error"),
    ],
)
def test_output_follows_the_task(task, n_classes, shape, activation, loss):
    config = TrialConfig(backbone="simple_cnn", image_size=32, head_units=(16,), head_pooling="flatten")
    model = build_model(config, task=task, n_classes=n_classes, weights=None)
    assert model.output_shape == shape
    assert model.get_layer("output").activation.__name__ == activation
    assert model.loss == loss
    assert model.get_layer("dense_1").units == 16
    assert isinstance(model.get_layer("pool"), keras.layers.Flatten)


@pytest.mark.parametrize("unfreeze", [0, 5, 20, 1000])
def test_unfreeze_trains_exactly_the_top_layers_and_never_batchnorm(unfreeze):
    base = build_backbone(REGISTRY["mobilenet_v2_0.35"], 32, weights=None)
    set_trainable(base, unfreeze)
    layers = [layer for layer in base.layers if not isinstance(layer, keras.layers.InputLayer)]
    top = layers[max(len(layers) - unfreeze, 0):]
    expected = [layer.name for layer in top if not isinstance(layer, keras.layers.BatchNormalization)]
    assert [layer.name for layer in layers if layer.trainable] == expected
    expected_params = sum(int(np.prod(w.shape)) for layer in top if layer.name in expected for w in layer.weights)
    assert sum(int(np.prod(w.shape)) for w in base.trainable_weights) == expected_params
    if unfreeze == 0:
        assert not base.trainable_weights


@needs_assets
def test_frozen_pretrained_backbone_trains_only_the_head():
    config = TrialConfig(backbone="mobilenet_v2_0.35", image_size=64, unfreeze=0, head_units=(32,))
    model = build_model(config, task="classification", n_classes=3, weights=str(MOBILENET_FILE))
    base = _backbone_of(model)
    assert base.count_params() > 300_000 and not base.trainable_weights
    head = (1280 * 32 + 32) + (32 * 3 + 3)  # MobileNetV2-0.35 ends in 1280 channels
    assert count_params(model)["trainable_params"] == head
    # ImageNet weights were loaded: the first conv kernel is not Keras' random initialisation.
    random = build_backbone(REGISTRY["mobilenet_v2_0.35"], 64, weights=None)
    assert not np.allclose(base.get_layer("Conv1").kernel.numpy(), random.get_layer("Conv1").kernel.numpy())


@needs_assets
def test_unfreeze_on_pretrained_weights_keeps_batchnorm_in_inference_mode():
    config = TrialConfig(backbone="mobilenet_v2_0.35", image_size=32, unfreeze=12)
    model = build_model(config, task="classification", n_classes=2, weights=str(MOBILENET_FILE))
    base = _backbone_of(model)
    before = [w.numpy().copy() for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization) for w in layer.weights]
    x = np.random.default_rng(0).integers(0, 255, (16, 32, 32, 3)).astype("float32")
    model.fit(x, np.arange(16) % 2, epochs=1, batch_size=8, verbose=0)
    after = [w.numpy() for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization) for w in layer.weights]
    assert all(np.array_equal(a, b) for a, b in zip(before, after)), "BatchNorm statistics moved"
    assert 0 < count_params(model)["trainable_params"] < count_params(model)["params"]


@pytest.mark.parametrize("cut", ["mixed7", "full"])
def test_inception_v3_cut_at_mixed7_and_full_build_and_train(cut):
    config = TrialConfig(backbone="inception_v3", cut=cut, image_size=75, batch_size=4)
    model = build_model(config, task="classification", n_classes=2, weights=None)
    base = _backbone_of(model)
    assert base.layers[-1].name == ("mixed7" if cut == "mixed7" else "mixed10")
    assert base.output_shape[-1] == (768 if cut == "mixed7" else 2048)
    model.run_eagerly = True  # one step: tracing the 311-layer graph would cost more than running it
    x = np.random.default_rng(1).integers(0, 255, (8, 75, 75, 3)).astype("float32")
    history = model.fit(x, np.arange(8) % 2, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    if cut == "mixed7":
        names = {layer.name for layer in base.layers}
        assert "mixed8" not in names and "mixed7" in names


def test_augmentation_is_active_in_training_only():
    config = TrialConfig(backbone="simple_cnn", image_size=32, augment=True)
    model = build_model(config, task="classification", n_classes=2, weights=None)
    assert {"augment_flip", "augment_rotate", "augment_zoom"} <= {layer.name for layer in model.layers}
    x = np.random.default_rng(2).integers(0, 255, (4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), model.predict(x, verbose=0))
    assert not np.allclose(model(x, training=True), model(x, training=True))


def test_preprocess_modes_match_keras_applications():
    x = np.random.default_rng(3).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(
        Preprocess("tf")(x), keras.applications.mobilenet_v2.preprocess_input(x.copy()), atol=1e-5
    )
    np.testing.assert_allclose(
        Preprocess("caffe")(x), keras.applications.resnet50.preprocess_input(x.copy()), atol=1e-4
    )
    np.testing.assert_allclose(Preprocess("unit")(x), x / 255.0, atol=1e-6)
    np.testing.assert_allclose(Preprocess("none")(x), x)


def test_optimizers():
    sgd = make_optimizer("sgd", 0.01)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.momentum == 0.9
    for name, cls in [("adam", keras.optimizers.Adam), ("rmsprop", keras.optimizers.RMSprop),
                      ("adagrad", keras.optimizers.Adagrad)]:
        opt = make_optimizer(name, 3e-4)
        assert isinstance(opt, cls) and float(opt.learning_rate) == pytest.approx(3e-4)


def test_trial_config_decodes_what_tune_sends():
    config = TrialConfig.from_tune({
        "backbone": "resnet50", "cut": "conv4_block6_out", "cut@resnet50": "conv4_block6_out",
        "head_units": "[256, 32]", "learning_rate": 0.01, "augment": True,
    })
    assert config.head_units == (256, 32) and config.cut == "conv4_block6_out" and config.augment


def test_missing_weights_fall_back_to_keras_and_explain_a_failed_download(tmp_path, monkeypatch):
    from sweeper.errors import SweeperError
    from sweeper.model import build_trial_model

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.delenv("SWEEPER_WEIGHTS", raising=False)
    asked = []

    def offline(fname, origin, **kwargs):  # what Keras' downloader does on a machine with no internet
        asked.append(origin)
        raise OSError(f"URL fetch failure on {origin}")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.utils.file_utils.get_file", offline)
    config = TrialConfig(backbone="resnet50", image_size=32)
    with pytest.raises(SweeperError) as error:
        build_trial_model(config, task="classification", n_classes=2, weights="imagenet", weights_dir=tmp_path)
    message = str(error.value)
    assert asked and "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in asked[0]
    assert "no ImageNet weights for resnet50" in message and str(tmp_path) in message and "download failed" in message


def test_regression_output_starts_at_the_training_mean():
    config = TrialConfig(backbone="simple_cnn", image_size=16, head_dropout=0.0)
    model = build_model(config, task="regression", n_classes=0, weights=None, target_stats=(20.0, 5.0))
    model.get_layer("output").kernel.assign(np.zeros((128, 1), "float32"))
    x = np.random.default_rng(4).integers(0, 255, (3, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), 20.0)
    assert model.get_layer("target_scale").scale == 5.0
