"""Every registry entry end to end, at its minimum input size from random weights: its cut points
are layers of the Keras model with the declared channels; Keras asks for a weight file the entry
names; at every cut the model splits into the cached prefix and the trained rest with exactly the
whole model's output; it trains a step; and its export's formats agree with the Keras model.

What is marked `zoo` the suite's command leaves out: the exports (a SavedModel and a TFLite
conversion each, 20 s to minutes per entry) and every entry but the first of each Keras family
(5-35 s each even without exporting). `pytest -m zoo tests/test_zoo.py` runs them; the README
says how long it took and when it runs. The suite still exports MobileNetV2 end to end
(tests/test_export.py) and checks every entry's scaling (tests/test_backbones.py).
"""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from sweeper import model as model_module
from sweeper.backbones import REGISTRY, build_backbone, cut_choices
from sweeper.bundle import to_probabilities
from sweeper.export import FORMATS_AGREE, format_outputs, write_models
from sweeper.feature_cache import split_model
from sweeper.hyperparameters import FULL
from sweeper.model import TrialConfig, build_model, set_trainable_blocks

IMAGES = np.random.default_rng(0).integers(0, 256, (2, 80, 80, 3)).astype("float32")  # cut to each minimum size
LABELS = np.array([0, 1], dtype="float32")


def _model(name: str, cut: str, task: str = "classification", unfreeze_blocks: int = 0):
    """The entry cut at `cut`, its top 2 layers (or blocks) unfrozen; the backbone is what
    `build_backbone` returns, patched by `_models` to one built once."""
    entry = REGISTRY[name]
    config = TrialConfig(backbone=name, cut=cut, unfreeze=2, image_size=entry.min_size, head_dropout=0.0,
                         unfreeze_blocks=unfreeze_blocks)
    weights = "as pretrained" if entry.pretrained else None  # not None: the frozen layers stay frozen
    return build_model(config, task=task, n_classes=2, weights=weights, target_stats=(0.0, 1.0))


def _models(name: str, base, monkeypatch):
    """(cut, model) for every cut point of the entry, sharing the backbone `base`."""
    monkeypatch.setattr(model_module, "build_backbone", lambda *args: base)
    for cut in cut_choices(REGISTRY[name]):
        yield cut, _model(name, cut)


def _family(name: str) -> str:
    entry = REGISTRY[name]
    return entry.constructor if entry.constructor == "simple_cnn" else \
        getattr(keras.applications, entry.constructor).__module__.rsplit(".", 1)[1]


def _assert_top_blocks_train_whole(entry, base, blocks: int) -> None:
    """The layers with weights (BatchNorm aside) that train are exactly those of the top `blocks`
    blocks, read off the layer names: named ones by their block, unnamed ones (a shortcut) by
    where they fall, after the first trained layer; and the trained part is not empty."""
    set_trainable_blocks(base, entry, blocks)
    ops = [op for op in base.operations if not isinstance(op, keras.layers.InputLayer)]
    weighted = [(i, op) for i, op in enumerate(ops) if isinstance(op, keras.layers.Layer) and op.weights
                and not isinstance(op, keras.layers.BatchNormalization)]
    trained = [i for i, op in weighted if op.trainable]
    assert trained, (entry.name, blocks)
    assert all(op.trainable == (i >= trained[0]) for i, op in weighted), (entry.name, blocks)
    pattern = re.compile(entry.blocks)
    if entry.blocks_end:  # the trained part starts after the end of the block before the top ones
        ends = [i for i, op in enumerate(ops) if pattern.fullmatch(op.name)]
        assert ends[-blocks - 1] < trained[0] and not any(ends[-blocks - 1] < i < trained[0] for i, _ in weighted)
    else:
        ids = [m.group(1) for op in ops if (m := pattern.match(op.name))]
        top = set(list(dict.fromkeys(ids))[-blocks:])
        for _, op in weighted:
            if m := pattern.match(op.name):
                assert op.trainable == (m.group(1) in top), (entry.name, blocks, op.name)


# The suite runs the first entry of each Keras family (registry order: the smallest first); the
# other entries run with `-m zoo`.
FIRST_OF_FAMILY = {_family(name): name for name in reversed(REGISTRY)}.values()


def _in_suite_or_zoo(name: str):
    return name if name in FIRST_OF_FAMILY else pytest.param(name, marks=pytest.mark.zoo)


@pytest.mark.parametrize("name", [_in_suite_or_zoo(name) for name in sorted(REGISTRY)])
def test_every_entry_cuts_where_it_says_splits_exactly_and_trains_a_step(name, monkeypatch):
    from keras.src.utils import file_utils  # what keras.applications call to download

    entry = REGISTRY[name]
    size = entry.min_size
    requested = []
    monkeypatch.setattr(file_utils, "get_file", lambda fname=None, *a, **k: requested.append(fname) or "unused.h5")
    monkeypatch.setattr(keras.Model, "load_weights", lambda *a, **k: None)  # keeps the random weights
    base = build_backbone(entry, size, weights="imagenet" if entry.pretrained else None)
    # The file Keras would download is one the entry names, so that a local copy is found offline.
    assert requested == ([entry.weight_file_names(size)[-1]] if entry.pretrained else []), name
    named = [cut for cut in entry.cut_points if cut != FULL]
    layer_names = {layer.name for layer in base.layers}
    assert not [cut for cut in named if cut not in layer_names], f"{name}: cut points not in the model"
    if entry.output_layer != FULL:
        assert base.layers[-1].name == entry.output_layer  # the last cut point is the model's output
    assert [base.get_layer(cut).output.shape[-1] for cut in named] == list(entry.channels[:len(named)]), name
    assert entry.channels_at(FULL) == base.output.shape[-1]

    x = IMAGES[:, :size, :size]
    for cut, model in _models(name, base, monkeypatch):
        whole = keras.ops.convert_to_numpy(model(x, training=False))
        assert np.all(np.isfinite(whole)), (name, cut)
        split = split_model(model)
        if not entry.pretrained:
            assert split is None  # from scratch every layer trains: nothing is cached
            continue
        parted = split.trained(split.prefix(x, training=False), training=False)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(parted), whole, rtol=1e-5, atol=1e-6,
                                   err_msg=f"{name} cut at {cut}")

    if entry.pretrained:  # `unfreeze: {blocks: N}`: whole blocks train, and the model splits exactly
        for blocks in (1, 2):
            _assert_top_blocks_train_whole(entry, base, blocks)
        model = _model(name, FULL, unfreeze_blocks=2)
        split = split_model(model)
        parted = split.trained(split.prefix(x, training=False), training=False)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(parted), model(x, training=False), rtol=1e-5,
                                   atol=1e-6, err_msg=f"{name} with its top 2 blocks unfrozen")

    # One step at the deepest cut, as regression: random weights can saturate a sigmoid, whose
    # gradient is then zero. Eagerly: tracing the training graph of the largest takes a minute.
    model = _model(name, cut, task="regression")
    model.run_eagerly = True
    before = model.get_layer("output").get_weights()
    assert np.isfinite(model.train_on_batch(x, LABELS, return_dict=True)["loss"])
    assert any(not np.array_equal(b, a) for b, a in zip(before, model.get_layer("output").get_weights()))
    keras.backend.clear_session()  # the largest hold gigabytes


@pytest.mark.zoo
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_entry_exports_with_parity(name, tmp_path, monkeypatch):
    # Seeded: an unseeded run of efficientnet_v2_l once saw TFLite differ from Keras (README, Backbones).
    keras.utils.set_random_seed(0)
    entry = REGISTRY[name]
    size = entry.min_size
    *_, (_, model) = _models(name, build_backbone(entry, size, None), monkeypatch)  # its deepest cut
    write_models(model, tmp_path, size=size, task="classification", classes=["cat", "dog"])
    x = IMAGES[:, :size, :size]
    reference = to_probabilities(np.asarray(model.predict(x, verbose=0), np.float64), "classification")
    for fmt, out in format_outputs(tmp_path, x.astype("uint8"), "classification").items():
        assert np.max(np.abs(out - reference)) <= FORMATS_AGREE, (name, fmt)
    keras.backend.clear_session()
