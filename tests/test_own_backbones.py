"""Your own model as a backbone (`backbones:` in the spec): a `.keras` file or a factory, checked
before the sweep, then swept, cached, evaluated, exported and predicted like a registry entry."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from conftest import write_spec

from sweeper import leaderboard, load_bundle
from sweeper.backbones import Backbone, declared, get_backbone
from sweeper.bundle import MANIFEST
from sweeper.cli import main
from sweeper.errors import SpecError
from sweeper.hyperparameters import FULL
from sweeper.own_models import answer, checks_of, inspect, with_answer
from sweeper.spec import load_spec, read_search_setup

FACTORY = '''
import keras


def build(input_shape):
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="stem")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="body")(x)
    return keras.Model(inputs, x, name="factorynet")
'''


def _save_tinynet(path, input_shape=(None, None, 3)):
    """A small residual network saved for any input size, with BatchNorm (frozen when fine-tuned)."""
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    y = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Add(name="add")([keras.layers.Conv2D(16, 1, name="project")(x), y])
    x = keras.layers.ReLU(name="out_relu")(x)
    keras.Model(inputs, x, name="tinynet").save(path)
    keras.backend.clear_session()
    return path


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _save_hub_presets(folder):
    """Small randomly initialised KerasHub backbones saved as local presets (no download): a ResNet
    with an image converter that standardises by ImageNet's mean and deviation, and a ViT."""
    keras_hub = pytest.importorskip("keras_hub")
    import keras

    keras.utils.set_random_seed(2)
    resnet = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 32],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=(None, None, 3))
    resnet.save_to_preset(folder / "tiny_resnet")
    keras_hub.layers.ResNetImageConverter(image_size=(32, 32), scale=[1 / (255 * s) for s in IMAGENET_STD],
                                          offset=[-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
                                          ).save_to_preset(folder / "tiny_resnet")
    keras_hub.models.ViTBackbone(image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                                 mlp_dim=32).save_to_preset(folder / "tiny_vit")
    keras.backend.clear_session()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("own") / "models"
    folder.mkdir()
    _save_tinynet(folder / "tinynet.keras")
    (folder / "nets.py").write_text(FACTORY)
    _save_hub_presets(folder)
    return folder


def _spec(folder, digits, backbones: str, space: str, extra: str = ""):
    return write_spec(folder, f"""
name: own
data: {{train: {digits}, validation_split: 0.2}}
image_size: 32
{extra}
backbones:
{backbones}
space:
{space}
""")


# --- the spec ------------------------------------------------------------------------------------


def test_own_models_are_backbones_of_the_spec_and_any_layer_name_is_a_cut(tmp_path, digits_dir, models):
    spec = load_spec(_spec(models.parent, digits_dir,
                           "  tinynet: {file: models/tinynet.keras, scaling: unit}\n"
                           "  factorynet: {factory: 'models/nets.py:build', scaling: tf}",
                           "  backbone: [tinynet, factorynet, mobilenet_v2_0.35]\n  cut: {tinynet: [full, pool1]}"))
    tinynet = spec.backbones["tinynet"]
    assert tinynet.own and tinynet.file == str(models / "tinynet.keras") and tinynet.preprocess == "unit"
    assert spec.backbones["factorynet"].factory == f"{models / 'nets.py'}:build"
    assert spec.space.cut_for("tinynet").options == (FULL, "pool1")
    # Known while the spec's command runs, and only then.
    with declared(spec.backbones):
        assert get_backbone("tinynet") is tinynet
    with pytest.raises(SpecError, match="unknown backbone 'tinynet'"):
        get_backbone("tinynet")
    # A finished sweep's saved spec reads back with its own models, wherever their files are now.
    space, _ = read_search_setup(spec.path)
    assert "tinynet" in space.backbone.options


@pytest.mark.parametrize("backbones, space, key, message", [
    ("  resnet50: {file: models/tinynet.keras, scaling: unit}", "  backbone: resnet50",
     "backbones.resnet50", "is a registry backbone already"),
    ("  mine: {file: models/gone.keras, scaling: unit}", "  backbone: mine", "backbones.mine.file", "file not found"),
    ("  mine: {file: models/nets.py, scaling: unit}", "  backbone: mine", "backbones.mine.file", "not a .keras file"),
    ("  mine: {file: models/tinynet.keras, scaling: imagenet}", "  backbone: mine", "backbones.mine.scaling",
     "'imagenet' is not allowed; allowed: tf, caffe, torch, unit, none"),
    ("  mine: {file: models/tinynet.keras}", "  backbone: mine", "backbones.mine.scaling", "is required"),
    ("  mine: {file: models/tinynet.keras, factory: 'a:b', scaling: tf}", "  backbone: mine", "backbones.mine",
     "give one of `file`"),
    ("  mine: {factory: 'nets.build', scaling: tf}", "  backbone: mine", "backbones.mine.factory",
     'must be "module:function"'),
    ("  mine: {factory: 'models/none.py:build', scaling: tf}", "  backbone: mine", "backbones.mine.factory",
     "file not found"),
    ("  mine: {file: models/tinynet.keras, scaling: unit, weights: x}", "  backbone: mine", "backbones.mine.weights",
     "unknown key; allowed: file, factory, scaling"),
    ("  mine: {file: models/tinynet.keras, scaling: unit}", "  backbone: mine\n  cut: {yours: [full]}",
     "space.cut.yours", "is not a backbone"),
])
def test_a_wrong_entry_is_one_line_naming_its_key(digits_dir, models, backbones, space, key, message):
    with pytest.raises(SpecError, match=f": {key}: .*{message}"):
        load_spec(_spec(models.parent, digits_dir, backbones, space))


# --- the models, loaded before the sweep ---------------------------------------------------------


def test_loading_the_models_reads_each_cut_s_channels_and_refuses_what_does_not_fit(tmp_path, digits_dir, models,
                                                                                   capsys):
    _save_tinynet(tmp_path / "fixed.keras", input_shape=(48, 48, 3))
    import keras

    inputs = keras.Input((64,))
    keras.Model(inputs, keras.layers.Dense(4, name="dense")(inputs)).save(tmp_path / "vectors.keras")
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    (tmp_path / "raising.py").write_text("def build(input_shape):\n    raise RuntimeError('no GPU found')\n")
    entries = ("  tinynet: {file: " + str(models / "tinynet.keras") + ", scaling: unit}\n"
               "  factorynet: {factory: '" + str(models / "nets.py") + ":build', scaling: tf}\n"
               "  fixed: {file: fixed.keras, scaling: unit}\n  vectors: {file: vectors.keras, scaling: unit}\n"
               "  broken: {file: broken.keras, scaling: unit}\n  raising: {factory: 'raising.py:build', scaling: unit}")

    good = inspect(load_spec(_spec(tmp_path, digits_dir, entries,
                                   "  backbone: [tinynet, factorynet]\n  cut: {tinynet: [full, pool1, conv2]}")))
    tinynet, factorynet = good.backbones["tinynet"], good.backbones["factorynet"]
    assert tinynet.cut_points == ("pool1", "conv2", FULL) and tinynet.channels == (8, 16, 16)
    assert factorynet.cut_points == (FULL,) and factorynet.channels_at(FULL) == 16

    refusals = [
        ("  backbone: tinynet\n  cut: [full, pool_1]", "space.cut.tinynet", "'pool_1' is not a layer of tinynet; "
                                                                            "did you mean pool1"),
        ("  backbone: fixed", "image_size", "fixed takes 48x48 images and the space asks for 32 px"),
        ("  backbone: vectors", "backbones.vectors", r"vectors takes \(None, 64\), not images"),
        ("  backbone: broken", "backbones.broken.file", "broken did not load: ValueError"),
        ("  backbone: raising", "backbones.raising.factory", "raising did not load: RuntimeError: no GPU found"),
    ]
    for space, key, message in refusals:  # checked here, as the process `inspect` starts checks them
        spec = load_spec(_spec(tmp_path, digits_dir, entries, space))
        with pytest.raises(SpecError, match=f"{spec.path}: {key}: {message}"):
            with_answer(spec, answer(checks_of(spec)))
    # From the command line: one line, exit 2, before anything is written.
    spec = _spec(tmp_path, digits_dir, entries, "  backbone: tinynet\n  cut: [pool_1]")
    assert main(["run", str(spec), "--out", str(tmp_path / "results")]) == 2
    assert "'pool_1' is not a layer of tinynet" in capsys.readouterr().err
    assert not (tmp_path / "results" / "own").exists()


# --- KerasHub presets ----------------------------------------------------------------------------


def test_a_kerashub_preset_is_a_backbone_its_inputs_scaled_as_its_image_converter_scales_them(digits_dir, models):
    import keras
    import keras_hub

    from sweeper import feature_cache, weight_files
    from sweeper.model import TrialConfig, build_model

    resnet, vit = "hub:models/tiny_resnet", "hub:models/tiny_vit"
    spec = load_spec(_spec(models.parent, digits_dir, "  {}",
                           f"  backbone: ['{resnet}', '{vit}']\n  cut: {{'{resnet}': [full, stack0_block0_out]}}"))
    entry = spec.backbones[resnet]
    assert entry.hub == str(models / "tiny_resnet") and entry.own and spec.space.cut_for(resnet).options[1] == "stack0_block0_out"
    with pytest.raises(SpecError, match="space.backbone: hub:models/gone: no KerasHub preset folder"):
        load_spec(_spec(models.parent, digits_dir, "  {}", "  backbone: hub:models/gone"))
    spec = inspect(spec)
    assert spec.backbones[resnet].channels == (64, 32) and spec.backbones[vit].channels == (16,)

    pixels = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype("float32")
    converter = keras_hub.layers.ImageConverter.from_preset(str(models / "tiny_resnet"))
    with declared(spec.backbones):
        for cut, shape in (("stack0_block0_out", (8, 8, 64)), (FULL, (4, 4, 32))):
            config = TrialConfig(backbone=resnet, cut=cut, image_size=32, unfreeze=3)
            model = build_model(config, task="classification", n_classes=3,
                                weights=weight_files.resolve(entry, 32, "imagenet"))
            scaled = model.get_layer("preprocess")(pixels)
            assert np.allclose(scaled, converter(pixels), atol=1e-5)  # the preset's own scaling, per channel
            assert tuple(feature_cache.backbone_layer(model).outputs[0].shape[1:]) == shape
        # A transformer's tokens are average-pooled; its frozen part is cached like a CNN's.
        model = build_model(TrialConfig(backbone=vit, image_size=32), task="classification", n_classes=3,
                            weights=weight_files.resolve(spec.backbones[vit], 32, "imagenet"))
        assert isinstance(model.get_layer("pool"), keras.layers.GlobalAveragePooling1D)
        split = feature_cache.split_model(model)
        features = split.prefix.predict(pixels, verbose=0)
        assert features.shape == (4, 16)
        assert np.allclose(split.trained.predict(features, verbose=0), model.predict(pixels, verbose=0), atol=1e-5)
        split.trained.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        history = split.trained.fit(features, np.array([0, 1, 2, 0]), epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])


# --- a real sweep of them ------------------------------------------------------------------------


@pytest.mark.ray
def test_a_sweep_of_own_models_caches_evaluates_exports_and_predicts(tmp_path, digits_dir, models, ray_session):
    hub = f"hub:{models / 'tiny_resnet'}"
    spec_path = _spec(tmp_path, digits_dir,
                      f"  tinynet: {{file: {models / 'tinynet.keras'}, scaling: unit}}\n"
                      f"  factorynet: {{factory: '{models / 'nets.py'}:build', scaling: tf}}",
                      f"  backbone: [tinynet, factorynet, '{hub}']\n  cut: {{tinynet: pool1}}\n  unfreeze: 2\n"
                      "  head: {pooling: flatten, units: [], dropout: 0.1}\n  learning_rate: 3.0e-3\n  batch_size: 64",
                      extra="budget: {trials: 3, max_epochs: 2, grace_epochs: 2, concurrent_trials: 2, search: grid, "
                            "seed: 0}")
    spec_path.write_text(spec_path.read_text().replace("validation_split: 0.2", "validation_split: 0.2, test_split: 0.1"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["run", str(spec_path), "--out", str(tmp_path / "results")]) == 0
    sweep = tmp_path / "results" / "own"
    rows = leaderboard.read(sweep)
    assert len(rows) == 3 and {r["status"] for r in rows} == {"completed"}, rows
    assert {r["backbone"] for r in rows} == {"tinynet", "factorynet", hub}
    assert all(r["val_accuracy"] > 0.2 for r in rows), [r["val_accuracy"] for r in rows]  # 10 classes: chance is 0.1
    assert "test_accuracy" in rows[0]  # evaluated in a worker from the checkpoint alone
    # The frozen part ran once per (model, cut, unfreeze) and was read from the cache after that.
    assert list((tmp_path / "results" / ".cache" / "features").glob("*.json"))
    assert sorted(p.name for p in models.iterdir()) == ["nets.py", "tiny_resnet", "tiny_vit", "tinynet.keras"]

    bundle = tmp_path / "bundle"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["export", str(sweep), "--out", str(bundle)]) == 0
    manifest = json.loads((bundle / MANIFEST).read_text())
    assert manifest["checks"]["val_accuracy"] == pytest.approx(rows[0]["val_accuracy"], abs=1e-6)
    assert manifest["checks"]["formats"]["tflite"]["max_abs_difference"] <= 1e-4
    # The bundle stands alone: the model file can go.
    (models / "tinynet.keras").rename(tmp_path / "moved.keras")
    try:
        images = sorted((digits_dir / "3").glob("*.png"))[:20]
        predicted = load_bundle(bundle).predict(images)
    finally:
        (tmp_path / "moved.keras").rename(models / "tinynet.keras")
    assert np.mean([p["label"] == "3" for p in predicted]) >= 0.3


def test_an_own_entry_round_trips_through_its_record():
    entry = Backbone(name="mine", constructor="", preprocess="unit", default_size=224, min_size=1,
                     cut_points=("a", FULL), channels=(4, 8), file="/m/mine.keras")
    assert Backbone.from_dict(json.loads(json.dumps(entry.to_dict()))) == entry
