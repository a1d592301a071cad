"""The registry: every entry builds, every named cut point exists with its declared channels,
weight files resolve locally."""

from __future__ import annotations

import keras
import pytest
from conftest import WEIGHTS, needs_assets

from sweeper import weight_files
from sweeper.backbones import PREPROCESS_MODES, REGISTRY, cut_choices, get_backbone
from sweeper.errors import SpecError
from sweeper.hyperparameters import FULL

REQUIRED = [
    "mobilenet_v2_0.35", "mobilenet_v2_0.5", "mobilenet_v2_0.75", "mobilenet_v2_1.0",
    "mobilenet_0.25", "mobilenet_0.5", "mobilenet_1.0",
    "inception_v3", "resnet50", "vgg16", "efficientnet_b0", "simple_cnn",
]


def test_registry_holds_every_required_backbone():
    assert set(REQUIRED) <= set(REGISTRY)
    assert get_backbone("inception_v3").cut_points[7] == "mixed7"
    assert "conv4_block6_out" in get_backbone("resnet50").cut_points
    assert "block_13_expand_relu" in get_backbone("mobilenet_v2_1.0").cut_points
    assert cut_choices(get_backbone("vgg16"))[0] == FULL
    assert cut_choices(get_backbone("convnext_tiny")) == (  # its output layer has no fixed name: only `full`
        FULL, "convnext_tiny_downsampling_block_0", "convnext_tiny_downsampling_block_1",
        "convnext_tiny_downsampling_block_2")
    for entry in REGISTRY.values():
        assert entry.preprocess in PREPROCESS_MODES and entry.min_size <= entry.default_size
        assert entry.pretrained == bool(entry.weight_files), entry.name


@pytest.mark.parametrize("module", sorted({getattr(keras.applications, e.constructor).__module__.rsplit(".", 1)[1]
                                            for e in REGISTRY.values() if e.pretrained}))
def test_preprocessing_is_keras_own_for_every_family(module):
    """The scaling each entry declares, as sweeper's layer does it, against keras.applications.<module>.preprocess_input."""
    import numpy as np

    from sweeper.model import Preprocess

    entries = [e for e in REGISTRY.values()
               if e.pretrained and getattr(keras.applications, e.constructor).__module__.endswith(f".{module}")]
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = getattr(keras.applications, module).preprocess_input(pixels.copy())
    for entry in entries:
        got = keras.ops.convert_to_numpy(Preprocess(entry.preprocess)(pixels))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4, err_msg=entry.name)


def test_unknown_backbone_names_the_allowed_ones():
    with pytest.raises(SpecError, match=r"unknown backbone 'resnet51'; did you mean resnet50.*\? "
                                        r"`sweeper backbones` lists all 49$"):
        get_backbone("resnet51")


KERAS_APPLICATIONS = [  # issue 19: every keras.applications classifier, under these names
    *(f"convnext_{s}" for s in ("tiny", "small", "base", "large", "xlarge")),
    "densenet121", "densenet169", "densenet201", *(f"efficientnet_b{i}" for i in range(8)),
    *(f"efficientnet_v2_{v}" for v in ("b0", "b1", "b2", "b3", "s", "m", "l")),
    "inception_resnet_v2", "inception_v3", "mobilenet_1.0", "mobilenet_v2_1.0", "mobilenet_v3_small",
    "mobilenet_v3_large", "nasnet_mobile", "nasnet_large", "resnet50", "resnet101", "resnet152",
    "resnet50_v2", "resnet101_v2", "resnet152_v2", "vgg16", "vgg19", "xception",
]


def test_every_keras_application_is_an_entry_with_its_constructor():
    import keras

    classes = {name for name in dir(keras.applications) if name[0].isupper()}
    assert len(KERAS_APPLICATIONS) == len(classes) == 40
    assert {REGISTRY[name].constructor for name in KERAS_APPLICATIONS} == classes
    for entry in REGISTRY.values():
        assert 3 <= len(entry.cut_points) <= 6 or entry.name == "inception_v3", entry.name
        assert len(entry.channels) == len(entry.cut_points), entry.name
        assert FULL not in entry.cut_points[:-1], entry.name


def test_weight_file_names_prefer_the_input_size_then_224():
    names = get_backbone("mobilenet_v2_0.35").weight_file_names(160)
    assert names == [
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_160_no_top.h5",
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5",
    ]
    assert get_backbone("mobilenet_0.25").weight_file_names(224) == ["mobilenet_2_5_224_tf_no_top.h5"]
    assert get_backbone("simple_cnn").weight_file_names(64) == []


def test_resolve_prefers_local_files_then_lets_keras_download(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv(weight_files.ENV_VAR, raising=False)
    entry = get_backbone("mobilenet_v2_0.35")
    assert weight_files.resolve(entry, 160, "imagenet") == "imagenet"  # nothing local: Keras may download
    assert weight_files.resolve(entry, 160, "none") is None
    assert weight_files.resolve(get_backbone("simple_cnn"), 64, "imagenet") is None

    env_dir, flag_dir = tmp_path / "env", tmp_path / "flag"
    env_dir.mkdir(), flag_dir.mkdir()
    (env_dir / entry.weight_file_names(160)[1]).write_bytes(b"224 file")
    monkeypatch.setenv(weight_files.ENV_VAR, str(env_dir))
    assert weight_files.resolve(entry, 160, "imagenet") == str(env_dir / entry.weight_file_names(160)[1])
    (flag_dir / entry.weight_file_names(160)[0]).write_bytes(b"160 file")
    # --weights-dir comes first, and the file for the exact size wins there.
    assert weight_files.resolve(entry, 160, "imagenet", flag_dir) == str(flag_dir / entry.weight_file_names(160)[0])
    message = weight_files.missing_message(get_backbone("resnet50"), 224, flag_dir)
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in message and str(flag_dir) in message


@needs_assets
def test_shared_weight_files_are_found_for_any_input_size():
    for name in ("mobilenet_v2_0.35", "mobilenet_v2_0.5", "mobilenet_0.25"):
        for size in (96, 128, 160, 224):
            found = weight_files.find_local(REGISTRY[name], size, WEIGHTS)
            assert found is not None and found.parent == WEIGHTS, (name, size)
