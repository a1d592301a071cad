"""The objectives people choose by: macro F1, AUC and top-5 accuracy beside accuracy (and RMSE,
MAE for regression), as a trial computes them on each epoch and as the test evaluation reports
them, each checked against scikit-learn; and which of them a data set allows."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from conftest import write_spec
from sklearn.metrics import f1_score, roc_auc_score, top_k_accuracy_score

from sweeper import baseline, evaluate
from sweeper.data import DatasetIndex
from sweeper.errors import SpecError
from sweeper.metrics import MacroF1, for_task
from sweeper.objective import available
from sweeper.preparation import index_data
from sweeper.spec import load_spec
from sweeper.training import EpochLoop

RNG = np.random.default_rng(0)


def test_macro_f1_is_scikit_learns_over_batches_with_a_class_never_predicted_and_one_never_seen():
    # Four classes; class 3 is never the truth, and the outputs never favour class 2.
    truth = RNG.choice([0, 1, 2], 50)
    outputs = RNG.random((50, 4)) * np.array([1.0, 1.0, 0.1, 1.0])
    metric = MacroF1(4)
    metric.update_state(truth[:20], outputs[:20])
    metric.update_state(truth[20:], outputs[20:])  # accumulated over the epoch's batches, not averaged
    expected = f1_score(truth, outputs.argmax(-1), average="macro", labels=range(4), zero_division=0)
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6) and 0 < expected < 0.5
    metric.reset_state()
    assert float(metric.result()) == 0.0

    binary = MacroF1(2)  # one sigmoid column, cut at 0.5, both classes' F1 averaged
    truth, scores = RNG.choice([0, 1], 40), RNG.random((40, 1))
    binary.update_state(truth, scores)
    expected = f1_score(truth, (scores[:, 0] > 0.5).astype(int), average="macro", zero_division=0)
    assert float(binary.result()) == pytest.approx(expected, abs=1e-6)
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(binary)).n_classes == 2


@pytest.mark.parametrize("task, n_classes", [("regression", 0), ("classification", 2), ("classification", 3),
                                             ("classification", 7)])
def test_a_trial_reports_every_objective_the_data_set_allows(task, n_classes):
    n_out = 1 if task == "regression" or n_classes == 2 else n_classes
    inputs = keras.Input((4,))
    activation = None if task == "regression" else ("sigmoid" if n_out == 1 else "softmax")
    model = keras.Model(inputs, keras.layers.Dense(n_out, activation=activation)(inputs))
    loss = "mse" if task == "regression" else ("binary_crossentropy" if n_out == 1 else "sparse_categorical_crossentropy")
    model.compile(optimizer="adam", loss=loss, metrics=for_task(task, n_classes))
    x = RNG.random((32, 4)).astype("float32")
    y = RNG.random(32).astype("float32") if task == "regression" else RNG.integers(0, n_classes, 32).astype("float32")
    reported = {f"val_{name}" for name in EpochLoop(model).evaluate(x, y, batch_size=8)}
    assert reported == set(available(task, n_classes))
    if n_classes > 5:  # top-5 of 7 classes on outputs of one untrained layer: checked against scikit-learn
        probabilities = model.predict(x, verbose=0)
        value = EpochLoop(model).evaluate(x, y, batch_size=8)["top5_accuracy"]
        assert value == pytest.approx(top_k_accuracy_score(y.astype(int), probabilities, k=5, labels=range(7)))


def _index(targets, classes, split="test"):
    return DatasetIndex(paths=tuple(f"/x/{i}.png" for i in range(len(targets))), targets=np.array(targets),
                        splits=np.array([split] * len(targets)), classes=classes)


def test_the_test_evaluation_reports_them_all(tmp_path):
    truth = RNG.choice([0, 1], 60)
    scores = np.clip(truth * 0.4 + RNG.random(60) * 0.6, 0, 1).reshape(-1, 1)
    found = evaluate.report(_index(truth, ("cat", "dog")), scores, "test", tmp_path / "binary")
    predicted = (scores[:, 0] > 0.5).astype(int)
    assert found["test_f1"] == pytest.approx(f1_score(truth, predicted, average="macro"))
    assert found["test_auc"] == pytest.approx(roc_auc_score(truth, scores[:, 0])) and found["test_auc"] > 0.7
    assert "test_top5_accuracy" not in found

    truth = RNG.choice(range(7), 70)
    outputs = RNG.random((70, 7))
    found = evaluate.report(_index(truth, tuple("abcdefg")), outputs, "test", tmp_path / "seven")
    assert found["test_top5_accuracy"] == pytest.approx(top_k_accuracy_score(truth, outputs, k=5))
    assert found["test_f1"] == pytest.approx(f1_score(truth, outputs.argmax(-1), average="macro"))
    assert set(found) == {"test_accuracy", "test_f1", "test_top5_accuracy", "test_images"}
    assert json.loads((tmp_path / "seven" / "classification_report.json").read_text())["macro avg"]["f1-score"] == \
        pytest.approx(found["test_f1"])


def test_each_has_a_baseline():
    # Training: 4 a, 2 b, 1 of c..g; validation: a, b, b, g, g, h (h never in training).
    train = [0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6]
    validation = [0, 1, 1, 6, 6, 7]
    index = DatasetIndex(paths=tuple(f"/x/{i}" for i in range(17)), targets=np.array(train + validation),
                         splits=np.array(["train"] * 11 + ["validation"] * 6), classes=tuple("abcdefgh"))
    # Always "a": F1 of a = 2·1 / (2·1 + 5 + 0), the seven other classes 0.
    assert baseline.compute(index, "val_f1")["value"] == pytest.approx(2 / 7 / 8, abs=1e-6)
    # The five most common training classes: a, b, c, d, e; validation's a, b, b are among them.
    assert baseline.compute(index, "val_top5_accuracy")["value"] == pytest.approx(0.5)
    two = _index([0, 1, 1], ("cat", "dog"), split="train")
    two = DatasetIndex(paths=two.paths + ("/x/v",), targets=np.array([0, 1, 1, 0]),
                       splits=np.array(["train"] * 3 + ["validation"]), classes=two.classes)
    assert baseline.compute(two, "val_auc")["value"] == 0.5
    said, warning = baseline.lines(baseline.compute(two, "val_auc"), {"val_auc": 0.51})
    assert warning and "does not beat the baseline by 2 points of auc" in said[1]


def test_an_objective_the_data_set_cannot_give_is_one_line_naming_the_key(tmp_path, digits_dir):
    spec_path = write_spec(tmp_path, f"""
name: digits
data: {{train: {digits_dir}}}
image_size: 16
weights: none
objective: val_auc
space: {{backbone: simple_cnn}}
""")
    spec = load_spec(spec_path)  # a classification objective: the class count is not known yet
    with pytest.raises(SpecError) as error:
        index_data(spec, tmp_path)
    assert str(error.value) == (f"{spec_path}: objective: val_auc needs exactly two classes; this data set has 10; "
                                "allowed here: val_accuracy, val_f1, val_top5_accuracy, val_loss")
    spec_path.write_text(spec_path.read_text().replace("val_auc", "val_top5_accuracy"))
    assert index_data(load_spec(spec_path), tmp_path).classes == tuple(str(i) for i in range(10))
    spec_path.write_text(spec_path.read_text().replace("val_top5_accuracy", "val_r2"))
    with pytest.raises(SpecError, match=r"objective: 'val_r2' is not allowed for task classification; allowed: "
                                        r"val_accuracy, val_f1, val_auc, val_top5_accuracy, val_loss"):
        load_spec(spec_path)


def test_auc_needs_both_classes_in_the_validation_split(tmp_path):
    for name in ("train/cat/a.png", "train/cat/b.png", "train/dog/c.png", "train/dog/d.png", "val/cat/e.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()  # indexing reads names, not pixels
    spec_path = write_spec(tmp_path, """
data: {train: train, validation: val}
objective: val_auc
space: {backbone: simple_cnn}
""")
    with pytest.raises(SpecError) as error:
        index_data(load_spec(spec_path), tmp_path)
    assert str(error.value) == f"{spec_path}: objective: val_auc needs both classes in the validation split; it has cat"
    (tmp_path / "val" / "dog").mkdir()
    (tmp_path / "val" / "dog" / "f.png").touch()
    assert index_data(load_spec(spec_path), tmp_path).classes == ("cat", "dog")
