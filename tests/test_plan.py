"""`sweeper run --dry-run`: the ASHA schedule against one computed by hand, and Ray's own rungs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from conftest import write_spec

from sweeper.cli import main
from sweeper.plan import expected_to_go_on, plan, rung_epochs
from sweeper.spec import load_spec

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
    from PIL import Image

    for name in ("a", "b"):  # --dry-run indexes the data: two classes of two images
        (tmp_path / "d" / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (100 * i, 0, 0)).save(tmp_path / "d" / name / f"{i}.png")
    return lambda **kw: write_spec(tmp_path, SPEC.format(**kw))


# By hand: the k-th trial to reach a rung (k = 1..n) goes on with chance 1 for k = 1, else
# (1 + (rf - 2) / k) / rf; so sum_k = 1 + ((n - 1) + (rf - 2)(H_n - 1)) / rf, H_n the harmonic number.
# rf 2 makes that (n + 1) / 2, and rf 3 (n + 1 + H_n) / 3.


def harmonic(n: int) -> float:
    return sum(1 / k for k in range(1, n + 1))


def test_the_dry_run_prints_the_schedule_computed_by_hand(spec_file, capsys):
    # 27 trials, judged after epochs 1 and 3 of 9, rf 3.
    path = spec_file(trials=27, epochs=9, grace=1, rf=3)
    assert main(["run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    after_1 = (27 + 1 + harmonic(27)) / 3  # 10.63
    after_3 = (10 + 1 + harmonic(10)) / 3 + (after_1 - 10) * (1 + 1 / 11) / 3  # 10 arrivals, then 0.63 of one
    epochs = 27 * 1 + after_1 * 2 + after_3 * 6
    assert round(after_1, 1) == 10.6 and round(after_3, 1) == 4.9 and round(epochs) == 77
    assert "sized: 72 configurations; 27 trials (38% of them) by tpe search, up to 9 epochs each" in out
    assert "after epoch 1: 27.0 trials judged, 10.6 go on" in out
    assert "after epoch 3: 10.6 trials judged, 4.9 go on" in out
    assert "estimated epochs: 77 (32% of 243 without early stopping, every configuration for 9 epochs: 648)" in out
    assert "data: 4 images, 2 classes" in out
    assert not (path.parent / "results").exists()  # nothing ran


def test_rungs_and_epochs_for_another_budget(spec_file):
    # Judged after 2, 4 and 8 of 10 epochs, rf 2: 20 -> 10.5 -> 5.75 -> 3.375 trials;
    # 20 x 2 + 10.5 x 2 + 5.75 x 4 + 3.375 x 2 = 90.75 epochs.
    p = plan(load_spec(spec_file(trials=20, epochs=10, grace=2, rf=2)))
    assert [(r.epoch, r.judged, r.promoted) for r in p.rungs] == [(2, 20, 10.5), (4, 10.5, 5.75), (8, 5.75, 3.375)]
    assert p.epochs == 90.75 and p.epochs_without_asha == 200
    # grace_epochs at max_epochs: no rung, every trial trains to the end.
    p = plan(load_spec(spec_file(trials=5, epochs=4, grace=4, rf=3)))
    assert p.rungs == [] and p.epochs == 20


def test_no_more_trials_than_a_finite_space_holds(spec_file, tmp_path):
    assert plan(load_spec(spec_file(trials=100, epochs=9, grace=1, rf=3))).trials == 72
    continuous = spec_file(trials=100, epochs=9, grace=1, rf=3)
    continuous.write_text(continuous.read_text().replace("[1.0e-4, 1.0e-3, 1.0e-2]", "{low: 1.0e-4, high: 1.0e-2}"))
    assert plan(load_spec(continuous)).trials == 100


@pytest.mark.parametrize("trials, rf", [(27, 3), (12, 2), (24, 4)])
def test_the_expected_survivors_match_ray_tunes_asha_on_shuffled_trials(trials, rf):
    """Ray's own ASHA bracket, fed trials in a random order, lets as many go on as estimated."""
    import numpy as np
    from ray.tune.schedulers.async_hyperband import _Bracket

    rng = np.random.default_rng(0)
    runs, went_on = 1000, 0
    for _ in range(runs):
        bracket = _Bracket(min_t=1, max_t=9, reduction_factor=rf, s=0)
        went_on += sum(bracket.on_result(SimpleNamespace(trial_id=i), 1, value) == "CONTINUE"
                       for i, value in enumerate(rng.random(trials)))
    assert went_on / runs == pytest.approx(expected_to_go_on(trials, rf), rel=0.03)


@pytest.mark.parametrize("grace, max_epochs, rf", [(1, 9, 3), (1, 10, 3), (2, 10, 2), (1, 6, 3), (3, 30, 3), (4, 4, 3)])
def test_rungs_sit_where_ray_tunes_asha_judges(grace, max_epochs, rf):
    from ray.tune.schedulers import ASHAScheduler

    asha = ASHAScheduler(max_t=max_epochs, grace_period=grace, reduction_factor=rf)
    ray_rungs = sorted(milestone for milestone, _ in asha._brackets[0]._rungs if milestone < max_epochs)
    assert rung_epochs(grace, max_epochs, rf) == ray_rungs


def test_the_dry_run_of_one_trial_of_one_epoch_speaks_in_the_singular(spec_file, tmp_path, capsys):
    spec_file(trials=1, epochs=1, grace=1, rf=2)  # the data folder
    path = write_spec(tmp_path, "name: one\ndata: {train: d}\nspace: {backbone: simple_cnn}\n"
                                "budget: {trials: 1, max_epochs: 1, concurrent_trials: 1}\n", name="one.yaml")
    assert main(["run", str(path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("one: 1 configuration; 1 trial (100% of them) by tpe search, up to 1 epoch each, 1 at a time; "
                        "objective val_accuracy (max)")
    assert "estimated epochs: 1 (100% of 1 without early stopping, every configuration for 1 epoch: 1)" in lines
