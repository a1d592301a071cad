"""The hyperparameters added through the vocabulary alone: weight_decay, label_smoothing, and the
learning-rate schedule (constant | cosine, with warmup_epochs). What each does to the numbers,
how the spec checks it, and one real sweep that carries them from the spec to the model card."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import write_spec

from sweeper import leaderboard, results
from sweeper.cli import main
from sweeper.errors import SpecError
from sweeper.hyperparameters import OPTIMIZERS
from sweeper.spec import load_spec
from sweeper.training import learning_rate_at

# --- the schedule ------------------------------------------------------------------------------


def test_a_constant_schedule_warms_up_linearly_then_holds():
    rates = [learning_rate_at(e, learning_rate=0.1, schedule="constant", warmup_epochs=2, max_epochs=6) for e in range(1, 7)]
    assert rates == pytest.approx([0.1 / 3, 0.2 / 3, 0.1, 0.1, 0.1, 0.1])
    assert learning_rate_at(1, learning_rate=0.1, schedule="constant", warmup_epochs=0, max_epochs=6) == 0.1


def test_cosine_starts_at_the_peak_after_warm_up_and_decays_over_the_remaining_epochs():
    rates = [learning_rate_at(e, learning_rate=1.0, schedule="cosine", warmup_epochs=1, max_epochs=5) for e in range(1, 6)]
    # epoch 1 warms up at 1/2; epochs 2-5 are k = 0..3 of the 4 left: 0.5 (1 + cos(pi k / 4))
    assert rates == pytest.approx([0.5, 1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4))])
    assert all(a > b for a, b in zip(rates[1:], rates[2:])) and rates[-1] > 0


def test_an_unknown_schedule_is_an_error_not_a_silent_constant():
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        learning_rate_at(3, learning_rate=0.1, schedule="step", warmup_epochs=0, max_epochs=5)


# --- what the model does with them ---------------------------------------------------------------


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_weight_decay_is_decoupled_from_the_gradient_in_every_optimizer(name):
    """With a zero gradient the update is the decay alone: w <- w (1 - learning_rate * weight_decay)."""
    import keras

    from sweeper.model import make_optimizer

    variable = keras.Variable(np.array([1.0, -2.0, 4.0], dtype="float32"))
    optimizer = make_optimizer(name, learning_rate=0.1, weight_decay=0.5)
    optimizer.apply_gradients([(keras.ops.zeros((3,)), variable)])
    assert np.asarray(variable) == pytest.approx(np.array([1.0, -2.0, 4.0]) * (1 - 0.1 * 0.5), rel=1e-5)
    untouched = keras.Variable(np.array([1.0, -2.0, 4.0], dtype="float32"))
    make_optimizer(name, learning_rate=0.1).apply_gradients([(keras.ops.zeros((3,)), untouched)])
    assert np.asarray(untouched) == pytest.approx([1.0, -2.0, 4.0])


def test_label_smoothing_moves_the_targets_towards_uniform_for_two_and_for_many_classes():
    import keras

    from sweeper.model import _loss

    probabilities = np.array([[0.2, 0.3, 0.5], [0.7, 0.2, 0.1]], dtype="float32")
    labels = np.array([2, 0])
    smoothed = _loss("classification", 3, label_smoothing=0.3)
    targets = np.full((2, 3), 0.3 / 3) + 0.7 * np.eye(3)[labels]
    expected = np.mean(-np.sum(targets * np.log(probabilities), axis=1))
    assert float(smoothed(labels, probabilities)) == pytest.approx(expected, rel=1e-5)
    plain = keras.losses.get(_loss("classification", 3))
    assert np.mean(plain(labels, probabilities)) == pytest.approx(np.mean(-np.log([0.5, 0.7])), rel=1e-5)

    p = np.array([[0.8], [0.4]], dtype="float32")
    y = np.array([[1.0], [0.0]], dtype="float32")
    q = y * 0.8 + 0.1  # binary smoothing 0.2: 1 -> 0.9, 0 -> 0.1
    expected = np.mean(-(q * np.log(p) + (1 - q) * np.log(1 - p)))
    assert float(_loss("classification", 1, label_smoothing=0.2)(y, p)) == pytest.approx(expected, rel=1e-4)


# --- the spec ----------------------------------------------------------------------------------


SPEC = """
name: proof
task: {task}
data: {{train: {digits}, validation_split: 0.2}}
image_size: 32
weights: none
budget: {{trials: 3, max_epochs: 3, grace_epochs: 3, concurrent_trials: 1, seed: 4}}
space:
  backbone: simple_cnn
  optimizer: [adam, sgd]
  learning_rate: {{low: 3.0e-3, high: 3.0e-2, log: true}}
{extra}
"""
SEARCHED = """\
  schedule: [constant, cosine]
  warmup_epochs: [0, 1]
  weight_decay: [0.0, 1.0e-3]
  label_smoothing: {low: 0.0, high: 0.2}
"""


@pytest.mark.parametrize("extra, task, message", [
    ("  label_smoothing: 0.1", "regression", "space.label_smoothing: applies to classification only, and this spec's task is regression"),
    ("  warmup_epochs: [0, 3]", "classification", "space.warmup_epochs: 3 warm-up epochs would leave none of budget.max_epochs (3)"),
    ("  schedule: step", "classification", "space.schedule: 'step' is not allowed; allowed: constant, cosine"),
    ("  weight_decay: {low: 0.0, high: 2.0}", "classification", "space.weight_decay: 2.0 must be between 0.0 and 1.0"),
], ids=["smoothing-regression", "warmup-too-long", "unknown-schedule", "decay-too-big"])
def test_the_spec_checks_the_new_hyperparameters_and_names_the_key(tmp_path, extra, task, message):
    path = write_spec(tmp_path, SPEC.format(task=task, digits=tmp_path, extra=extra))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)


def test_the_spec_reads_the_new_hyperparameters_as_any_other(tmp_path):
    from sweeper.space import Choice, Fixed, Range, space_size

    space = load_spec(write_spec(tmp_path, SPEC.format(task="classification", digits=tmp_path, extra=SEARCHED))).space
    assert space.schedule == Choice(("constant", "cosine")) and space.warmup_epochs == Choice((0, 1))
    assert space.weight_decay == Choice((0.0, 1e-3)) and space.label_smoothing == Range(0.0, 0.2)
    assert space_size(space) is None  # a float range: infinitely many configurations
    plain = load_spec(write_spec(tmp_path, SPEC.format(task="regression", digits=tmp_path, extra=""))).space
    assert plain.label_smoothing == Fixed(0.0) and plain.schedule == Fixed("constant")


def test_a_trial_of_an_older_sweep_keeps_its_seed():
    """Seeds as release 19bf1d8 computed them (its trial._trial_seed, measured), for configurations
    with the new hyperparameters at their defaults; a new value changes the seed."""
    from sweeper.model import TrialConfig
    from sweeper.trial import _trial_seed

    plain = TrialConfig("mobilenet_v2_0.35")
    rich = TrialConfig("inception_v3", cut="mixed7", unfreeze=12, head_units=(256, 32), learning_rate=0.0123,
                       augment=True, image_size=96)
    assert (_trial_seed(0, plain), _trial_seed(7, plain)) == (449314058, 1181237528)
    assert (_trial_seed(0, rich), _trial_seed(7, rich)) == (901335768, 1704818320)
    assert _trial_seed(0, TrialConfig("mobilenet_v2_0.35", weight_decay=1e-4)) != 449314058


# --- end to end ----------------------------------------------------------------------------------


@pytest.mark.ray
def test_the_new_hyperparameters_go_from_the_spec_to_the_model_card(tmp_path, digits_dir, ray_session, capsys,
                                                                   monkeypatch):
    spec = write_spec(tmp_path, SPEC.format(task="classification", digits=digits_dir, extra=SEARCHED))
    assert main(["run", str(spec), "--out", str(tmp_path / "results")]) == 0
    sweep = tmp_path / "results" / "proof"
    rows = leaderboard.read(sweep)
    assert len(rows) == 3 and all(r["status"] == "completed" for r in rows), [r["error"] for r in rows]
    for row in rows:
        assert row["schedule"] in ("constant", "cosine") and row["warmup_epochs"] in (0, 1)
        assert row["weight_decay"] in (0.0, 1e-3) and 0.0 <= row["label_smoothing"] <= 0.2
        # Every epoch trained at the rate the schedule gives for it.
        epochs = [r for r in results.read_results(results.trial_folder(sweep, row["trial_id"])) if "lr" in r]
        assert [r["epoch"] for r in epochs] == [1, 2, 3]
        for result in epochs:
            assert result["lr"] == pytest.approx(learning_rate_at(
                result["epoch"], learning_rate=row["learning_rate"], schedule=row["schedule"],
                warmup_epochs=row["warmup_epochs"], max_epochs=3))
        # The checkpoint rebuilds the trial with them.
        meta = json.loads(next(results.trial_folder(sweep, row["trial_id"]).glob("checkpoint_*/trial.json")).read_text())
        assert {k: meta["config"][k] for k in ("schedule", "warmup_epochs", "weight_decay", "label_smoothing")} == {
            k: row[k] for k in ("schedule", "warmup_epochs", "weight_decay", "label_smoothing")}
    csv_header = (sweep / "leaderboard.csv").read_text().splitlines()[0].split(",")
    assert csv_header[csv_header.index("image_size") + 1:][:4] == ["schedule", "warmup_epochs", "weight_decay", "label_smoothing"]

    capsys.readouterr()
    monkeypatch.setenv("COLUMNS", "250")  # every column fits
    assert main(["leaderboard", str(sweep)]) == 0
    header = next(line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("#"))
    new = {"schedule": "sched", "warmup_epochs": "warmup", "weight_decay": "wd", "label_smoothing": "smooth"}
    for name, label in new.items():  # a column once some trial sets it away from its default
        assert (label in header) == any(leaderboard.is_set(row, name) for row in rows), (label, header)
    assert "smooth" in header  # drawn from a range: never exactly 0

    assert main(["report", str(sweep)]) == 0
    page = (sweep / "report" / "report.html").read_text()
    assert all(name in page for name in ("schedule", "warmup_epochs", "weight_decay", "label_smoothing"))

    assert main(["export", str(sweep), "--out", str(tmp_path / "bundle")]) == 0
    card = (tmp_path / "bundle" / "model_card.md").read_text()
    table = next(line for line in card.splitlines() if line.startswith("| trial | epoch |"))
    values = next(line for line in card.splitlines() if line.startswith(f"| {rows[0]['trial_id']} |"))
    by_column = dict(zip(*([cell.strip() for cell in line.strip("|").split("|")] for line in (table, values))))
    assert by_column["schedule"] == rows[0]["schedule"]
    assert by_column["label_smoothing"] == leaderboard.format_value(rows[0]["label_smoothing"])
