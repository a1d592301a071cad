"""The spec's `constraints`: parsed with one-line errors, checked against an architecture's measured
costs, told to Optuna's TPE, and not counted against the budget (real sweeps: tests/test_sweep.py)."""

from __future__ import annotations

import math

import optuna
import pytest
from conftest import write_spec
from ray.tune.search import ConcurrencyLimiter

from sweeper.constraints import INFEASIBLE, Constraints
from sweeper.errors import SpecError
from sweeper.search_space import DefineByRun
from sweeper.searcher import REPEAT, DistinctOptunaSearch, ExtendableSearch
from sweeper.spec import load_spec

SPEC = """
data: {{train: {data}}}
space: {{backbone: [mobilenet_v2_0.35, resnet50], learning_rate: [1.0e-3, 3.0e-3], head: {{units: [[], [32]]}}}}
{constraints}
"""


def _spec(tmp_path, constraints: str):
    (tmp_path / "data" / "a").mkdir(parents=True, exist_ok=True)
    return load_spec(write_spec(tmp_path, SPEC.format(data=tmp_path / "data", constraints=constraints)))


def test_constraints_are_upper_bounds_on_named_costs(tmp_path):
    spec = _spec(tmp_path, "constraints: {latency_ms: 5.0, params: 2.0e6}")
    assert spec.constraints == Constraints(latency_ms=5.0, params=2.0e6)
    assert spec.constraints.summary() == "latency_ms <= 5, params <= 2,000,000"
    assert _spec(tmp_path, "").constraints == Constraints() and not _spec(tmp_path, "").constraints
    for text, message in (("constraints: {latency: 5}", r"constraints\.latency: unknown key; allowed: latency_ms, "
                                                        r"tflite_ms, size_mb, params$"),
                          ("constraints: {size_mb: 0}", r"constraints\.size_mb: 0 must be above 0 \(an upper bound\)$"),
                          ("constraints: {tflite_ms: fast}", r"constraints\.tflite_ms: 'fast' must be a number$"),
                          ("constraints: 5", r"constraints: must be a mapping of upper bounds")):
        with pytest.raises(SpecError, match=r"spec\.yaml: " + message):
            _spec(tmp_path, text)


def test_a_cost_above_its_bound_breaks_it_and_says_by_how_much():
    bounds = Constraints(latency_ms=5.0, tflite_ms=3.0, params=98_000)
    costs = {"latency_ms": 7.214, "params": 109_994, "size_mb": 0.42}  # tflite_ms not measured: breaks nothing
    assert bounds.broken(costs) == {"latency_ms": 7.214, "params": 109_994}
    assert bounds.why(costs) == "latency_ms 7.214 > 5, params 109,994 > 98,000"
    assert bounds.violations(costs) == pytest.approx({"latency_ms": 0.4428, "params": 0.12239}, rel=1e-3)
    assert not bounds.broken({"latency_ms": 5.0, "tflite_ms": 2.9, "params": 98_000})  # at the bound is within


def _searcher(tmp_path, constraints: Constraints):
    space = _spec(tmp_path, "").space
    return DistinctOptunaSearch(DefineByRun(space), metric="val_accuracy", mode="max", constraints=constraints,
                                sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=4))


def test_tpe_is_told_each_trial_s_constraints_and_an_infeasible_one_has_no_value(tmp_path):
    searcher = _searcher(tmp_path, Constraints(params=1.0e6))
    for i in range(8):
        config = searcher.suggest(f"t{i}")
        params = 4.1e5 if config["backbone"] == "mobilenet_v2_0.35" else 2.36e7
        if params > 1.0e6:
            result = {"val_accuracy": math.nan, "params": params, "epoch": 0, INFEASIBLE: "params > 1,000,000"}
            searcher.on_trial_result(f"t{i}", {**result, "training_iteration": 1})  # no value: nothing reported
        else:
            result = {"val_accuracy": 0.8, "params": params, "epoch": 1, "training_iteration": 1}
        searcher.on_trial_complete(f"t{i}", result)
    trials = [t for t in searcher._ot_study.get_trials() if not t.user_attrs.get(REPEAT)]
    infeasible = [t for t in trials if t.params["backbone"] == "resnet50"]
    assert infeasible and len(infeasible) < len(trials)
    for trial in trials:
        if trial in infeasible:
            assert trial.state.name == "PRUNED" and trial.value is None and not trial.intermediate_values
            assert trial.constraints == {"params": pytest.approx(22.6)}  # (2.36e7 - 1e6) / 1e6
        else:
            assert trial.state.name == "COMPLETE" and trial.value == 0.8
            assert trial.constraints == {"params": pytest.approx(-0.59)}


def test_an_infeasible_trial_adds_one_to_the_total_up_to_the_budget_s_trials_again(tmp_path):
    searcher = _searcher(tmp_path, Constraints(params=1.0e6))
    search = ExtendableSearch(ConcurrencyLimiter(searcher, max_concurrent=1), total=2)
    search._total_samples = 2
    for i in range(4):
        search.searcher.suggest(f"t{i}")
        search.on_trial_complete(f"t{i}", {"val_accuracy": math.nan, "params": 2.0e6, INFEASIBLE: "params"})
    # Two infeasible trials are replaced; a third and a fourth come out of the budget.
    assert (search.total_samples, search.infeasible) == (4, 2)
    assert search.get_state()["infeasible"] == 2
    replayed = ExtendableSearch(ConcurrencyLimiter(_searcher(tmp_path, Constraints(params=1.0e6)), max_concurrent=1),
                                total=2)
    replayed.set_state(search.get_state())  # a resumed sweep keeps the count, and the total it made
    assert (replayed.total_samples, replayed.infeasible) == (4, 2)


def test_a_dry_run_measures_every_architecture_and_says_which_fit(tmp_path, digits_dir, capsys):
    """The figures go to the cache, where the sweep's trials find them (tests/test_sweep.py runs one)."""
    from sweeper import latency
    from sweeper.cli import main

    spec = write_spec(tmp_path, f"""
name: small
data: {{train: {digits_dir}}}
image_size: 16
weights: none
constraints: {{params: 98000}}
space: {{backbone: simple_cnn, head: {{pooling: [avg, flatten], units: [[], [32]]}}}}
""")
    out = tmp_path / "results"
    assert main(["run", str(spec), "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr()
    lines = [line for line in printed.out.splitlines() if "simple_cnn" in line]
    assert len(lines) == 4 and "feasibility under params <= 98,000 (CPU on 1 thread; LiteRT on 1)" in printed.out
    assert [("yes" in line, "flatten" in line) for line in lines] == [(True, False), (True, False), (False, True),
                                                                     (False, True)]
    assert "no: params 109,994 > 98,000" in lines[3] and "2 of 4 architectures within the constraints" in printed.out
    assert "oneDNN" not in printed.err  # TensorFlow's start-up lines held back
    records = sorted(p.name for p in (out / ".cache" / "latency").glob("*.json"))
    assert len(records) == 8  # latency and sizes, for each of the four
    key = records[0].split("-")[0].removesuffix(".json")
    assert latency.recorded(out / ".cache", key)["ms"] > 0
    assert main(["run", str(spec), "--out", str(out), "--dry-run"]) == 0  # read back, not measured again
    assert sorted(p.name for p in (out / ".cache" / "latency").glob("*.json")) == records
    assert [line for line in capsys.readouterr().out.splitlines() if "simple_cnn" in line] == lines


def test_a_resumed_sweep_tells_an_infeasible_trial_again_as_it_ended():
    """Tune's saved state can lag behind the leaderboard: such a trial reports the same again, untrained."""
    from sweeper.resumable import ended_trials

    row = {"trial_id": "a1", "status": "infeasible", "params": 109_994, "size_mb": 0.42, "latency_ms": 0.46,
           "tflite_ms": None, "error": "params 109,994 > 98,000"}
    told = ended_trials([row], "results/small/experiment", "val_accuracy")["a1"]["result"]
    assert math.isnan(told.pop("val_accuracy"))
    assert told == {"params": 109_994, "size_mb": 0.42, "latency_ms": 0.46, "epoch": 0,
                    INFEASIBLE: "params 109,994 > 98,000"}


def test_an_objective_list_is_a_validation_metric_then_costs_to_minimize(tmp_path):
    spec = _spec(tmp_path, "objective: [val_accuracy, latency_ms, size_mb]")
    assert spec.objective == "val_accuracy" and spec.objectives == ("val_accuracy", "latency_ms", "size_mb")
    assert spec.modes == ("max", "min", "min") and spec.mode == "max" and not spec.measures_tflite
    assert _spec(tmp_path, "objective: [val_f1, tflite_ms]").measures_tflite  # a conversion per architecture
    assert _spec(tmp_path, "objective: val_f1").objectives == ("val_f1",)
    for text, message in (("objective: [val_accuracy]", r"objective: a list names the objective and the costs"),
                          ("objective: [latency_ms, val_accuracy]", r"objective\[0\]: 'latency_ms' is not allowed for "
                                                                   r"task classification \(a validation metric comes first\)"),
                          ("objective: [val_accuracy, val_loss]", r"objective\[1\]: 'val_loss' is not allowed \(after "
                                                                 r"the first, costs to minimize\); allowed: latency_ms, "
                                                                 r"tflite_ms, size_mb, params$"),
                          ("objective: [val_accuracy, params, params]", r"objective: .* names a cost twice")):
        with pytest.raises(SpecError, match=r"spec\.yaml: " + message):
            _spec(tmp_path, text)


def test_several_objectives_make_a_multi_objective_study_and_infeasible_trials_stay_out_of_it(tmp_path):
    space = _spec(tmp_path, "").space
    searcher = DistinctOptunaSearch(DefineByRun(space), metric=["val_accuracy", "params"], mode=["max", "min"],
                                    constraints=Constraints(params=1.0e6),
                                    sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=2))
    for i in range(6):
        config = searcher.suggest(f"t{i}")
        params = 4.1e5 if config["backbone"] == "mobilenet_v2_0.35" else 2.36e7
        result = {"val_accuracy": 0.7 + 0.01 * i, "params": params, "epoch": 1}
        if params > 1.0e6:
            result = {**result, "val_accuracy": math.nan, "epoch": 0, INFEASIBLE: "params > 1,000,000"}
        searcher.on_trial_complete(f"t{i}", result)
    study = searcher._ot_study
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    trials = [t for t in study.get_trials() if not t.user_attrs.get(REPEAT)]
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    for trial in trials:
        if trial.state.name == "COMPLETE":
            assert trial.params["backbone"] == "mobilenet_v2_0.35" and trial.values[1] == 4.1e5
        else:
            assert trial.params["backbone"] == "resnet50" and trial.constraints["params"] > 0


def test_the_pareto_mark_is_on_rows_no_other_row_beats_in_every_objective():
    from sweeper import leaderboard

    rows = [{"trial_id": "a", "status": "completed", "val_accuracy": 0.90, "latency_ms": 3.0},
            {"trial_id": "b", "status": "completed", "val_accuracy": 0.95, "latency_ms": 6.0},
            {"trial_id": "c", "status": "stopped", "val_accuracy": 0.85, "latency_ms": 3.0},  # a beats it
            {"trial_id": "d", "status": "completed", "val_accuracy": 0.80, "latency_ms": 1.0},
            {"trial_id": "e", "status": "infeasible", "val_accuracy": None, "latency_ms": 0.5},
            {"trial_id": "f", "status": "error", "val_accuracy": 0.99, "latency_ms": 0.1}]
    marked = leaderboard.mark_pareto(rows, ("val_accuracy", "latency_ms"), ("max", "min"))
    assert {r["trial_id"] for r in marked if r["pareto"]} == {"a", "b", "d"}
    one = {"trial_id": "a", "status": "completed", "val_accuracy": 0.90, "latency_ms": 3.0}
    assert "pareto" not in leaderboard.mark_pareto([one], ("val_accuracy",), ("max",))[0]  # one objective: no mark
