"""Tier 3: real ImageNet weights and real photographs from ../shared/assets."""

from __future__ import annotations

import pytest

from sweeper import leaderboard
from sweeper.driver import RunOptions, run_sweep
from sweeper.spec import load_spec

from conftest import ASSETS, WEIGHTS, needs_assets, write_spec

pytestmark = [needs_assets, pytest.mark.ray, pytest.mark.assets]

CATS_VS_DOGS = ASSETS / "datasets" / "cats_vs_dogs"


def test_cats_vs_dogs_sweep_reaches_90_percent_with_imagenet_weights(tmp_path, ray_session):
    spec_path = write_spec(tmp_path, f"""
name: cats-vs-dogs
data:
  train: {CATS_VS_DOGS / "training_set"}
  validation: {CATS_VS_DOGS / "test_set"}
image_size: 160
weights: {WEIGHTS}
budget: {{trials: 12, max_epochs: 4, grace_epochs: 1, reduction_factor: 3, concurrent_trials: 2, seed: 0}}
space:
  backbone: [mobilenet_v2_0.35, mobilenet_0.25]
  unfreeze: 0
  head: {{pooling: avg, units: [[], [32]], dropout: 0.2}}
  optimizer: [adam, rmsprop]
  learning_rate: {{low: 3.0e-4, high: 3.0e-3, log: true}}
  batch_size: 32
""")
    sweep = run_sweep(load_spec(spec_path), RunOptions(out=tmp_path / "results"))
    rows = leaderboard.read(sweep)
    assert len(rows) == 12 and len({r["trial_id"] for r in rows}) == 12
    assert {r["backbone"] for r in rows} <= {"mobilenet_v2_0.35", "mobilenet_0.25"}
    assert all(r["status"] in ("completed", "stopped") for r in rows), [r["error"] for r in rows]
    best = rows[0]
    print(f"best val_accuracy {best['val_accuracy']:.4f}: {best['backbone']} lr={best['learning_rate']:.2e}")
    assert best["val_accuracy"] >= 0.90
    assert best["trainable_params"] < best["params"] / 5  # frozen backbone: only the head trains
