"""benchmarks/replay_search.py on synthetic learning curves: the replay spends epochs as ASHA
decides and finds what the curves hold."""

from __future__ import annotations

from dataclasses import replace

from conftest import write_spec
from replay_search import _key, replay

from sweeper.search_space import DefineByRun
from sweeper.space import grid_space
from sweeper.spec import Budget, load_spec

SPEC = """
data: {train: d}
space:
  backbone: simple_cnn
  head: {pooling: avg, units: [[], [32]]}
  optimizer: [adam, sgd]
  learning_rate: [1.0e-3, 1.0e-2]
"""


def _curves(spec, max_epochs):
    """Every configuration of the space: a rising curve whose height is the configuration's rank."""
    import itertools

    import optuna

    grid = grid_space(spec.space)
    curves = {}
    for rank, values in enumerate(itertools.product(*grid.values())):
        trial = optuna.trial.FixedTrial(dict(zip(grid, values)))
        constants = DefineByRun(spec.space)(trial)
        config = {**dict(zip(grid, values)), **constants}
        curves[_key(config)] = [(rank + epoch / max_epochs, 1.0) for epoch in range(1, max_epochs + 1)]
    return curves


def test_without_early_stopping_every_trial_trains_every_epoch(tmp_path):
    (tmp_path / "d" / "a").mkdir(parents=True)
    spec = load_spec(write_spec(tmp_path, SPEC))
    curves = _curves(spec, 4)
    assert len(curves) == 8
    spec = replace(spec, budget=Budget(trials=8, max_epochs=4, grace_epochs=4, search="random", seed=0))
    best, epochs = replay(spec, curves)
    assert epochs == 8 * 4
    assert best in {c[-1][0] for c in curves.values()}


def test_asha_stops_trials_and_the_best_is_a_value_the_curves_hold(tmp_path):
    (tmp_path / "d" / "a").mkdir(parents=True)
    spec = load_spec(write_spec(tmp_path, SPEC))
    curves = _curves(spec, 4)
    spec = replace(spec, budget=Budget(trials=8, max_epochs=4, grace_epochs=1, reduction_factor=2, seed=1))
    best, epochs = replay(spec, curves)
    # The first trial to reach a rung always goes on, so one trial trains all 4 epochs; some are stopped.
    assert 8 + 3 <= epochs < 8 * 4
    assert best in {value for c in curves.values() for value, _ in c}
