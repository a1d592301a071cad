"""The space as Optuna define-by-run: conditional cut, constants, encoded head units."""

from __future__ import annotations

import optuna
import pytest
from conftest import write_spec

from sweeper.backbones import REGISTRY, cut_choices
from sweeper.hyperparameters import CONFIG_KEYS
from sweeper.search_space import DefineByRun
from sweeper.searcher import REPEAT, DistinctOptunaSearch
from sweeper.space import Space, fixed_values, space_size
from sweeper.spec import parse_spec

SPEC = """
data: {train: data}
space:
  backbone: [inception_v3, resnet50, mobilenet_v2_0.35]
  cut:
    inception_v3: [full, mixed7]
    resnet50: [full, conv4_block6_out]
    default: [full]
  unfreeze: [0, 20]
  head:
    units: [[], [32], [256, 32]]
    dropout: 0.3
  learning_rate: {low: 1.0e-5, high: 1.0e-2, log: true}
  image_size: 96
"""


def _space(tmp_path, text=SPEC):
    (tmp_path / "data" / "a").mkdir(parents=True, exist_ok=True)
    path = write_spec(tmp_path, text)
    import yaml

    return parse_spec(yaml.safe_load(text), path).space


def test_cut_is_drawn_per_backbone_and_fixed_values_are_constants(tmp_path):
    space = _space(tmp_path)
    define = DefineByRun(space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        constants = define(trial)
        config = {**trial.params, **constants}
        assert set(CONFIG_KEYS) <= set(config)
        assert config["cut"] in cut_choices(REGISTRY[config["backbone"]])
        allowed = {"inception_v3": {"full", "mixed7"}, "resnet50": {"full", "conv4_block6_out"}}
        assert config["cut"] in allowed.get(config["backbone"], {"full"})
        assert config["head_units"] in ("[]", "[32]", "[256, 32]")
        assert config["head_dropout"] == 0.3 and "head_dropout" not in trial.params  # fixed: not searched
        assert 1e-5 <= config["learning_rate"] <= 1e-2
        assert f"cut@{config['backbone']}" in trial.params or config["backbone"] == "mobilenet_v2_0.35"
        seen.add((config["backbone"], config["cut"]))
        study.tell(trial, 0.5)
    assert {("inception_v3", "mixed7"), ("resnet50", "conv4_block6_out"), ("mobilenet_v2_0.35", "full")} <= seen


def test_fixed_values_are_what_every_trial_shares_as_its_configuration_carries_it(tmp_path):
    fixed = fixed_values(_space(tmp_path))
    varied = {"backbone", "cut", "unfreeze", "head_units", "learning_rate"}
    assert set(fixed) == set(CONFIG_KEYS) - varied
    assert fixed["head_dropout"] == 0.3 and fixed["image_size"] == 96 and fixed["optimizer"] == "adam"
    # Every backbone keeping its whole self is one cut; one kept list per backbone is not.
    one_cut = _space(tmp_path, SPEC.replace("backbone: [inception_v3, resnet50, mobilenet_v2_0.35]",
                                            "backbone: [resnet50, mobilenet_v2_0.35]")
                     .replace("resnet50: [full, conv4_block6_out]", "resnet50: [full]")
                     .replace("units: [[], [32], [256, 32]]", "units: [64]"))
    assert fixed_values(one_cut)["cut"] == "full" and fixed_values(one_cut)["head_units"] == "[64]"


def test_space_size(tmp_path):
    assert space_size(_space(tmp_path)) is None  # a continuous learning rate
    finite = SPEC.replace("{low: 1.0e-5, high: 1.0e-2, log: true}", "[1.0e-3, 1.0e-4]")
    # inception: 2 cuts, resnet50: 2 cuts, mobilenet: 1 cut; times unfreeze 2 x units 3 x lr 2
    assert space_size(_space(tmp_path, finite)) == (2 + 2 + 1) * 2 * 3 * 2
    stepped = finite.replace("unfreeze: [0, 20]", "unfreeze: {low: 0, high: 20, step: 10}")
    assert space_size(_space(tmp_path, stepped)) == (2 + 2 + 1) * 3 * 3 * 2
    # A float step that does not reach `high` exactly: Optuna lowers `high` onto the grid (0.1, 0.25, 0.4).
    dropout = finite.replace("dropout: 0.3", "dropout: {low: 0.1, high: 0.5, step: 0.15}")
    assert space_size(_space(tmp_path, dropout)) == (2 + 2 + 1) * 2 * 3 * 2 * 3
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = {round(study.ask().suggest_float("d", 0.1, 0.5, step=0.15), 9) for _ in range(60)}
    assert drawn == {0.1, 0.25, 0.4}


GRID = """
data: {train: data}
budget: {search: grid, trials: 100}
space:
  backbone: [mobilenet_v2_0.35, mobilenet_0.25]
  unfreeze: [0, 20]
  head: {units: [[], [64]], dropout: 0.2}
  optimizer: [adam, sgd]
  learning_rate: [1.0e-4, 1.0e-3, 1.0e-2]
"""


def test_a_grid_walks_every_configuration_once(tmp_path):
    from sweeper.search_space import grid_space, trial_count

    (tmp_path / "data" / "a").mkdir(parents=True)
    spec = parse_spec(__import__("yaml").safe_load(GRID), write_spec(tmp_path, GRID))
    grid = grid_space(spec.space)
    assert grid == {"backbone": ["mobilenet_v2_0.35", "mobilenet_0.25"], "unfreeze": [0, 20],
                    "head_units": ["[]", "[64]"], "optimizer": ["adam", "sgd"], "learning_rate": [1e-4, 1e-3, 1e-2]}
    assert trial_count(spec) == space_size(spec.space) == 48  # not the 100 trials asked for
    from sweeper.search_space import AskTellGrid

    study = optuna.create_study(sampler=AskTellGrid(grid, seed=0))
    seen = set()
    for _ in range(48):
        trial = study.ask()
        seen.add(tuple(sorted(DefineByRun(spec.space)(trial).items())) + tuple(sorted(trial.params.items())))
        study.tell(trial, 0.0)
    assert len(seen) == 48


def test_a_grid_refuses_ranges_and_per_backbone_cut_lists(tmp_path):
    import pytest
    import yaml

    from sweeper.errors import SpecError

    (tmp_path / "data" / "a").mkdir(parents=True)
    raw = yaml.safe_load(GRID)
    raw["space"]["learning_rate"] = {"low": 1e-4, "high": 1e-2, "log": True}
    with pytest.raises(SpecError, match="budget.search: grid: space.learning_rate: a grid needs a list of values"):
        parse_spec(raw, write_spec(tmp_path, GRID))
    raw = yaml.safe_load(GRID)
    raw["space"]["backbone"] = ["inception_v3", "mobilenet_v2_0.35"]
    raw["space"]["cut"] = {"inception_v3": ["full", "mixed7"]}
    with pytest.raises(SpecError, match="space.cut: a grid takes one cut per backbone"):
        parse_spec(raw, write_spec(tmp_path, GRID))


FINITE = """
data: {train: data}
space:
  backbone: [mobilenet_v2_0.35, resnet50]
  head: {units: [[], [32]], dropout: [0.0, 0.3]}
  learning_rate: [1.0e-3, 3.0e-3]
"""


def test_the_searcher_hands_out_each_configuration_once_and_learns_from_none_twice(tmp_path):
    """TPE proposes configurations it has tried on a finite space (about 3 in 12 trials of 16
    configurations, searcher.py); the searcher asks again instead, to the last configuration."""
    space = _space(tmp_path, FINITE)
    assert space_size(space) == 16
    searcher = DistinctOptunaSearch(DefineByRun(space), metric="val_accuracy", mode="max",
                                    sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=4))
    seen = set()
    for i in range(16):
        config = searcher.suggest(f"t{i}")
        key = tuple(config[k] for k in ("backbone", "head_units", "head_dropout", "learning_rate"))
        assert key not in seen, f"trial {i} repeats {key}"
        seen.add(key)
        # An objective TPE soon grows sure of: the larger learning rate and mobilenet are best.
        value = 0.5 + 0.3 * (config["learning_rate"] == 3.0e-3) + 0.1 * (config["backbone"] == "mobilenet_v2_0.35")
        searcher.on_trial_complete(f"t{i}", {"val_accuracy": value, "training_iteration": 1})
    study = searcher._ot_study
    complete = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert len(complete) == 16 and len(seen) == 16
    repeats = [t for t in study.get_trials() if t.user_attrs.get(REPEAT)]
    assert repeats and all(t.state.name == "FAIL" for t in repeats)  # TPE did propose repeats, told as failed


def test_an_extended_search_goes_on_to_the_new_total_and_a_plain_resume_keeps_the_saved_one():
    """Tune restores a search's saved state over the new one (set_state): its total and whether it
    had finished. ExtendableSearch keeps the total this driver asks for when that is larger."""
    from ray.tune.search import ConcurrencyLimiter

    from sweeper.searcher import ExtendableSearch

    def search(total):
        searcher = DistinctOptunaSearch(DefineByRun(Space()), metric="val_accuracy", mode="max")
        return ExtendableSearch(ConcurrencyLimiter(searcher, max_concurrent=2), total=total)

    saved = {"counter": 6, "total_samples": 6, "finished": True, "experiment": None}
    extended = search(10)
    extended.set_state(dict(saved))
    assert (extended.total_samples, extended.is_finished()) == (10, False)
    plain = search(6)
    plain.set_state(dict(saved))
    assert (plain.total_samples, plain.is_finished()) == (6, True)


TWO = """
data: {train: data}
budget: {trials: 2, concurrent_trials: 2}
space: {augment: [false, true]}
"""


@pytest.mark.parametrize("liar", [False, True])
def test_concurrent_proposals_on_a_finite_space_never_collide(tmp_path, liar):
    """Issue 22 found 2 concurrent trials of a 2-configuration space running the same one twice:
    proposals handed out while others run are distinct too, with or without the constant liar."""
    import yaml

    from sweeper.search_space import constant_liar, sampler_for

    (tmp_path / "data" / "a").mkdir(parents=True, exist_ok=True)
    for seed in range(10):
        spec = parse_spec(yaml.safe_load(TWO.replace("concurrent_trials: 2", f"concurrent_trials: 2, seed: {seed}")),
                          write_spec(tmp_path, TWO))
        with constant_liar(liar):
            searcher = DistinctOptunaSearch(DefineByRun(spec.space), metric="val_accuracy", mode="max",
                                            sampler=sampler_for(spec))
        assert searcher._ot_study.sampler._constant_liar is liar
        assert {searcher.suggest("a")["augment"], searcher.suggest("b")["augment"]} == {False, True}
