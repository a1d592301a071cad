"""Warm starts: earlier sweeps' best configurations proposed first, same data before the nearest data."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import write_spec

from sweeper import warm_start
from sweeper.spec import parse_spec
from sweeper.triage import Pair, Ranked, write_ranking

SPACE = """
data: {train: data}
space:
  backbone: [mobilenet_v2_0.35, resnet50]
  cut: {resnet50: [conv4_block6_out, full]}
  head: {units: [[], [32]]}
  learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}
"""


def _spec(tmp_path, text=SPACE):
    (tmp_path / "data" / "a").mkdir(parents=True, exist_ok=True)
    return parse_spec(yaml.safe_load(text), write_spec(tmp_path, text))


def _row(trial_id, value, backbone="resnet50", cut="full", units="[]", lr=1e-3, status="completed"):
    return {"trial_id": trial_id, "status": status, "val_accuracy": value, "backbone": backbone, "cut": cut,
            "unfreeze": 0, "head_pooling": "avg", "head_units": units, "head_dropout": 0.2, "optimizer": "adam",
            "learning_rate": lr, "batch_size": 32, "augment": False, "image_size": 160, "schedule": "constant",
            "warmup_epochs": 0, "weight_decay": 0.0, "label_smoothing": 0.0, "unfreeze_blocks": 0}


def _sweep(folder, name, *, fingerprint, rows, task="classification", scores=None):
    sweep = folder / name
    sweep.mkdir(parents=True)
    (sweep / "sweep.json").write_text(json.dumps({"name": name, "task": task, "objective": "val_accuracy",
                                                  "mode": "max", "data_fingerprint": fingerprint}))
    (sweep / "leaderboard.json").write_text(json.dumps(rows))
    if scores:
        write_ranking(_ranking(scores), sweep / "triage.json")


def _ranking(scores: dict) -> list[Ranked]:
    ranked = [Ranked(Pair(b, c, 160), logme=v, probe=0.5, seconds=1.0, cached=True) for (b, c), v in scores.items()]
    return sorted(ranked, key=lambda r: -r.logme)


PAIRS = [("mobilenet_v2_0.35", "full"), ("resnet50", "conv4_block6_out"), ("resnet50", "full")]


def test_same_data_first_then_the_nearest_by_triage_and_only_configurations_of_this_space(tmp_path):
    spec = _spec(tmp_path)
    earlier = tmp_path / "results"
    _sweep(earlier, "same", fingerprint="ours", rows=[
        _row("s1", 0.80, lr=3e-3), _row("s2", 0.90, units="[64]"),  # [64] is not among this space's heads
        _row("s3", 0.70, backbone="mobilenet_v2_0.35"), _row("s4", 0.95, status="error"),
        _row("s5", 0.85, lr=0.1)])  # outside the learning rate's range
    _sweep(earlier, "alike", fingerprint="other", scores=dict(zip(PAIRS, [1.0, 2.0, 3.0])),
           rows=[_row("a1", 0.99, cut="conv4_block6_out"), _row("a2", 0.60, lr=3e-3)])  # a2 repeats s1
    _sweep(earlier, "unlike", fingerprint="third", scores=dict(zip(PAIRS, [3.0, 2.0, 1.0])),
           rows=[_row("u1", 0.99, units="[32]")])
    _sweep(earlier, "untriaged", fingerprint="fourth", rows=[_row("n1", 0.99)])
    _sweep(earlier, "regression", fingerprint="ours", task="regression", rows=[_row("r1", 0.99)])
    ranked = _ranking(dict(zip(PAIRS, [0.1, 0.2, 0.3])))

    found = warm_start.seeds(spec, earlier, fingerprint="ours", ranked=ranked, count=10, exclude=tmp_path / "new")
    assert [(s.sweep, s.trial_id) for s in found] == [("same", "s1"), ("same", "s3"), ("alike", "a1"), ("unlike", "u1")]
    assert [s.why for s in found] == ["same data", "same data", "nearest data (triage correlation 1.00)",
                                      "nearest data (triage correlation -1.00)"]
    assert found[0].params == {"backbone": "resnet50", "cut@resnet50": "full", "head_units": "[]",
                               "learning_rate": 3e-3}
    assert found[1].params == {"backbone": "mobilenet_v2_0.35", "head_units": "[]", "learning_rate": 1e-3}
    assert [s.trial_id for s in warm_start.seeds(spec, earlier, fingerprint="ours", ranked=None, count=10,
                                                 exclude=tmp_path)] == ["s1", "s3"]  # no triage: same data alone
    assert len(warm_start.seeds(spec, earlier, fingerprint="ours", ranked=ranked, count=1, exclude=tmp_path)) == 1
    assert warm_start.seeds(spec, earlier, fingerprint="ours", ranked=ranked, count=10,
                            exclude=earlier / "same")[0].sweep == "alike"


def test_warm_start_is_a_folder_relative_to_the_spec(tmp_path):
    from sweeper.errors import SpecError

    (tmp_path / "results").mkdir()
    assert _spec(tmp_path, SPACE + "warm_start: results\n").warm_start == (tmp_path / "results").resolve()
    with pytest.raises(SpecError, match=r"spec.yaml: warm_start: 'nowhere': no such folder"):
        _spec(tmp_path, SPACE + "warm_start: nowhere\n")


DIGITS = """
name: {name}
data: {{train: {digits}, validation_split: 0.2}}
image_size: 16
weights: none
budget: {{trials: {trials}, max_epochs: 1, concurrent_trials: 1, seed: {seed}}}
space:
  backbone: simple_cnn
  head: {{pooling: avg, units: [[], [32]], dropout: 0.1}}
  learning_rate: [1.0e-4, 1.0e-3, 3.0e-3]
  batch_size: 64
"""


@pytest.mark.ray
def test_a_warm_started_sweep_trains_the_earlier_sweep_s_best_configurations_first(tmp_path, digits_dir, ray_session,
                                                                                   capsys):
    from sweeper.cli import main

    out = tmp_path / "results"
    first = write_spec(tmp_path, DIGITS.format(name="first", digits=digits_dir, trials=4, seed=0), "first.yaml")
    assert main(["run", str(first), "--out", str(out)]) == 0
    earlier = json.loads((out / "first" / "leaderboard.json").read_text())
    best_two = [(r["head_units"], r["learning_rate"]) for r in earlier[:2]]

    second = write_spec(tmp_path, DIGITS.format(name="second", digits=digits_dir, trials=2, seed=7), "second.yaml")
    capsys.readouterr()
    assert main(["run", str(second), "--out", str(out), "--warm-start", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"warm start: 2 configurations from earlier sweeps in {out.resolve()} go first" in printed
    assert f"trial {earlier[0]['trial_id']} of first (same data): val_accuracy" in printed
    rows = json.loads((out / "second" / "leaderboard.json").read_text())
    assert sorted((r["head_units"], r["learning_rate"]) for r in rows) == sorted(best_two)
    recorded = json.loads((out / "second" / "sweep.json").read_text())["warm_start"]
    assert [c["trial_id"] for c in recorded["configurations"]] == [r["trial_id"] for r in earlier[:2]]
