"""`sweeper run --dry-run`: the ASHA schedule against one computed by hand, and Ray's own rungs."""

from __future__ import annotations

import pytest

from sweeper.cli import main
from sweeper.schedule import plan, rung_epochs
from sweeper.spec import load_spec

from conftest import write_spec

SPEC = """
name: sized
data: {{train: d}}
budget: {{trials: {trials}, max_epochs: {epochs}, grace_epochs: {grace}, reduction_factor: {rf}}}
space:
  backbone: [simple_cnn, mobilenet_v2_0.35]
  head: {{pooling: [avg, flatten], units: [[], [64]]}}
  optimizer: [adam, sgd, rmsprop]
  learning_rate: [1.0e-4, 1.0e-3, 1.0e-2]
"""


@pytest.fixture
def spec_file(tmp_path):
    (tmp_path / "d" / "a").mkdir(parents=True)
    return lambda **kw: write_spec(tmp_path, SPEC.format(**kw))


def test_the_dry_run_prints_the_schedule_computed_by_hand(spec_file, capsys):
    # 27 trials, judged after epochs 1 and 3, 1 in 3 going on: 27 + 9 x 2 + 3 x 6 = 63 epochs.
    path = spec_file(trials=27, epochs=9, grace=1, rf=3)
    assert main(["run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "sized: 72 configurations; 27 trials (38% of them) by tpe search, up to 9 epochs each" in out
    assert "after epoch 1: 27.0 trials judged, 9.0 go on" in out
    assert "after epoch 3: 9.0 trials judged, 3.0 go on" in out
    assert "estimated epochs: 63 (26% of 243 without early stopping, every configuration for 9 epochs: 648)" in out
    assert not (path.parent / "results").exists()  # nothing ran


def test_rungs_and_epochs_for_another_budget(spec_file):
    # Judged after 2, 4 and 8 of 10 epochs, 1 in 2 going on: 20 x 2 + 10 x 2 + 5 x 4 + 2.5 x 2 = 85.
    p = plan(load_spec(spec_file(trials=20, epochs=10, grace=2, rf=2)))
    assert [(r.epoch, r.judged, r.promoted) for r in p.rungs] == [(2, 20, 10), (4, 10, 5), (8, 5, 2.5)]
    assert p.epochs == 85 and p.epochs_without_asha == 200
    # grace_epochs at max_epochs: no rung, every trial trains to the end.
    p = plan(load_spec(spec_file(trials=5, epochs=4, grace=4, rf=3)))
    assert p.rungs == [] and p.epochs == 20


@pytest.mark.parametrize("grace, max_epochs, rf", [(1, 9, 3), (1, 10, 3), (2, 10, 2), (1, 6, 3), (3, 30, 3), (4, 4, 3)])
def test_rungs_sit_where_ray_tunes_asha_judges(grace, max_epochs, rf):
    from ray.tune.schedulers import ASHAScheduler

    asha = ASHAScheduler(max_t=max_epochs, grace_period=grace, reduction_factor=rf)
    ray_rungs = sorted(milestone for milestone, _ in asha._brackets[0]._rungs if milestone < max_epochs)
    assert rung_epochs(grace, max_epochs, rf) == ray_rungs
