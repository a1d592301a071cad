"""`unfreeze: {blocks: N}`: the top N blocks of a backbone fine-tuned whole, from the spec to a sweep.
Every registry family's blocks are checked in tests/test_zoo.py."""

from __future__ import annotations

import json

import pytest
from conftest import WEIGHTS, needs_assets, write_spec

from sweeper import leaderboard, results
from sweeper.cli import main
from sweeper.errors import SpecError
from sweeper.space import Choice, Fixed, Range
from sweeper.spec import load_spec

SPEC = """
name: blocks
data: {{train: {digits}, validation_split: 0.2}}
image_size: 32
weights: {weights}
budget: {{trials: 2, max_epochs: 2, grace_epochs: 2, concurrent_trials: 2, search: grid, seed: 0}}
space:
  backbone: mobilenet_v2_0.35
  unfreeze: {unfreeze}
  learning_rate: 1.0e-3
  batch_size: 64
"""


@pytest.mark.parametrize("unfreeze, expected", [
    ("{blocks: 2}", Fixed(2)), ("{blocks: [1, 3]}", Choice((1, 3))),
    ("{blocks: {low: 1, high: 4}}", Range(1, 4, integer=True)),
])
def test_blocks_are_a_hyperparameter_of_their_own_and_leave_the_layer_count_at_0(tmp_path, unfreeze, expected):
    text = SPEC.format(digits=tmp_path, weights="imagenet", unfreeze=unfreeze).replace("search: grid", "search: tpe")
    space = load_spec(write_spec(tmp_path, text)).space
    assert space.unfreeze_blocks == expected and space.unfreeze == Fixed(0)


@pytest.mark.parametrize("unfreeze, backbone, message", [
    ("{blocks: 2, layers: 3}", "mobilenet_v2_0.35", "space.unfreeze.layers: unknown key; allowed: blocks"),
    ("{blocks: -1}", "mobilenet_v2_0.35", "space.unfreeze.blocks: -1 must be at least 0"),
    ("{blocks: 1}", "hub:resnet_18_imagenet", "space.unfreeze.blocks: hub:resnet_18_imagenet has no named blocks"),
])
def test_a_wrong_number_of_blocks_is_one_line_naming_the_key(tmp_path, unfreeze, backbone, message):
    text = SPEC.format(digits=tmp_path, weights="imagenet", unfreeze=unfreeze).replace("mobilenet_v2_0.35", backbone)
    with pytest.raises(SpecError, match=message):
        load_spec(write_spec(tmp_path, text))


def test_the_top_blocks_of_mobilenet_v2_train_and_the_rest_stays_frozen(monkeypatch):
    import keras

    from sweeper import model as model_module
    from sweeper.backbones import build_backbone
    from sweeper.feature_cache import backbone_layer
    from sweeper.model import TrialConfig, build_model

    # Random weights, treated as pretrained (not None): the frozen layers stay frozen.
    monkeypatch.setattr(model_module, "build_backbone", lambda entry, size, weights: build_backbone(entry, size, None))
    config = TrialConfig(backbone="mobilenet_v2_0.35", image_size=32, unfreeze_blocks=2)
    base = backbone_layer(build_model(config, task="classification", n_classes=3, weights="as pretrained"))
    trained = {layer.name for layer in base.layers if layer.trainable_weights}
    # block_15 and block_16 whole, and the final 1x1 convolution after them; BatchNorm stays frozen.
    assert trained == {f"block_{b}_{part}" for b in (15, 16) for part in ("expand", "depthwise", "project")} | {"Conv_1"}
    keras.backend.clear_session()


@needs_assets
@pytest.mark.ray
def test_a_sweep_over_blocks_caches_below_them_and_records_them(tmp_path, digits_dir, ray_session):
    spec = write_spec(tmp_path, SPEC.format(digits=digits_dir, weights=WEIGHTS, unfreeze="{blocks: [1, 2]}"))
    assert main(["run", str(spec), "--out", str(tmp_path / "results")]) == 0
    sweep = tmp_path / "results" / "blocks"
    rows = leaderboard.read(sweep)
    assert sorted(r["unfreeze_blocks"] for r in rows) == [1, 2] and {r["status"] for r in rows} == {"completed"}
    assert all(r["unfreeze"] == 0 and r["trainable_params"] > 0 for r in rows)
    # Two blocks train more weights than one; each configuration cached the activations below its blocks.
    by_blocks = {r["unfreeze_blocks"]: r for r in rows}
    assert by_blocks[2]["trainable_params"] > by_blocks[1]["trainable_params"]
    about = [json.loads(p.read_text()) for p in (tmp_path / "results" / ".cache" / "features").glob("*.json")]
    assert sorted(a["unfreeze"] for a in about) == ["1 block", "2 blocks"]
    meta = json.loads(next(results.trial_folder(sweep, rows[0]["trial_id"]).glob("checkpoint_*/trial.json")).read_text())
    assert meta["config"]["unfreeze_blocks"] == rows[0]["unfreeze_blocks"]
