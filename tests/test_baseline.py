"""The baseline a sweep states beside its best trial: what never looking at the image scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sweeper import baseline
from sweeper.data import DatasetIndex


def _index(targets, splits, classes=("cat", "dog", "fox")) -> DatasetIndex:
    return DatasetIndex(paths=tuple(f"/x/{i}.png" for i in range(len(targets))), targets=np.array(targets),
                        splits=np.array(splits), classes=classes)


def test_classification_answers_the_training_majority_and_its_class_frequencies():
    # Training: 3 dogs, 1 cat; validation: 2 cats, 1 dog, 1 fox.
    index = _index([1, 1, 0, 1, 0, 0, 1, 2], ["train"] * 4 + ["validation"] * 4)
    assert baseline.compute(index, "val_accuracy") == {"objective": "val_accuracy", "value": 0.25,
                                                       "what": "always the most common class, dog"}
    # Cross-entropy of the training frequencies (cat 1/4, dog 3/4, fox never: clipped at 1e-7).
    expected = np.mean(-np.log([0.25, 0.25, 0.75, 1e-7]))
    assert baseline.compute(index, "val_loss")["value"] == pytest.approx(expected, rel=1e-5)


def test_regression_answers_the_training_mean_and_gives_r2():
    index = _index(np.array([1.0, 3.0, 2.0, 6.0], np.float32), ["train", "train", "validation", "validation"], ())
    found = baseline.compute(index, "val_rmse")  # mean 2: errors 0 and 4
    assert found["value"] == pytest.approx(math.sqrt(8)) and found["what"] == "always the training mean, 2"
    assert found["validation_variance"] == pytest.approx(4.0)
    assert baseline.compute(index, "val_mae")["value"] == pytest.approx(2.0)
    assert baseline.r2(1.0, 4.0) == pytest.approx(0.75) and baseline.r2(1.0, 0.0) is None
    assert baseline.compute(_index(np.array([1.0], np.float32), ["train"], ()), "val_rmse") is None  # no validation


def test_a_best_trial_that_does_not_clearly_beat_the_baseline_is_flagged():
    accuracy = {"objective": "val_accuracy", "value": 0.5, "what": "always the most common class, dog"}
    said, warning = baseline.lines(accuracy, {"val_accuracy": 0.93})
    assert said == ["baseline (always the most common class, dog): val_accuracy 0.5"] and not warning
    said, warning = baseline.lines(accuracy, {"val_accuracy": 0.51})
    assert warning and "does not beat the baseline by 2 points of accuracy" in said[1]
    rmse = {"objective": "val_rmse", "value": 10.0, "what": "always the training mean, 70", "validation_variance": 100.0}
    said, warning = baseline.lines(rmse, {"val_rmse": 9.8})  # 2 % lower: not clearly better; R² 0.04
    assert warning and "R² 0.040 on validation" in said[0] and "by 5 % of its val_rmse" in said[1]
    assert baseline.lines(rmse, {"val_rmse": 6.0})[1] is False
    assert baseline.lines(None, {"val_rmse": 6.0}) == ([], False)  # a sweep recorded before baselines
    assert baseline.lines(rmse, None) == (["baseline (always the training mean, 70): val_rmse 10"], False)
