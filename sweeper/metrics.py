"""The metrics a trial computes on each epoch, by task; and the one Keras lacks, macro F1 on integer labels.

Keras' F1Score wants one-hot labels, and on a single sigmoid output it scores the positive class
alone; people choosing by F1 mean scikit-learn's `f1_score(average="macro")` over every class.
`MacroF1` keeps a confusion matrix over the epoch and gives exactly that (tests/test_metrics.py
checks it against scikit-learn).
"""

from __future__ import annotations

import keras
from keras import ops

from .objective import TOP_K


def for_task(task: str, n_classes: int) -> list:
    """The compiled metrics: val_<name> of each is a trial's column and an objective
    (`objective.available` names them without importing Keras)."""
    if task == "regression":
        return [keras.metrics.RootMeanSquaredError(name="rmse"), keras.metrics.MeanAbsoluteError(name="mae")]
    if n_classes == 2:  # one sigmoid output
        return [keras.metrics.BinaryAccuracy(name="accuracy"), MacroF1(2, name="f1"), keras.metrics.AUC(name="auc")]
    metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy"), MacroF1(n_classes, name="f1")]
    if n_classes > TOP_K:
        metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=TOP_K, name=f"top{TOP_K}_accuracy"))
    return metrics


@keras.saving.register_keras_serializable(package="sweeper")
class MacroF1(keras.metrics.Metric):
    """The mean over classes of each class's F1, 2·TP / (2·TP + FP + FN), a class with none of
    those scoring 0 (scikit-learn's zero_division=0). Labels are class indices; outputs are
    probabilities, one column per class or one sigmoid column for two classes (above 0.5: the second)."""

    def __init__(self, n_classes: int, name: str = "f1", **kwargs):
        super().__init__(name=name, **kwargs)
        self.n_classes = n_classes
        self.matrix = self.add_variable(shape=(n_classes, n_classes), initializer="zeros", name="confusion")

    def update_state(self, y_true, y_pred, sample_weight=None):
        truth = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        if self.n_classes == 2 and y_pred.shape[-1] == 1:
            predicted = ops.cast(ops.reshape(y_pred, (-1,)) > 0.5, "int32")  # as BinaryAccuracy
        else:
            predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        counts = ops.matmul(ops.transpose(ops.one_hot(truth, self.n_classes)), ops.one_hot(predicted, self.n_classes))
        self.matrix.assign_add(ops.cast(counts, self.matrix.dtype))

    def result(self):
        true_positives = ops.diagonal(self.matrix)
        denominator = ops.sum(self.matrix, axis=0) + ops.sum(self.matrix, axis=1)  # 2·TP + FP + FN
        per_class = ops.where(denominator > 0, 2 * true_positives / ops.maximum(denominator, 1.0), 0.0)
        return ops.mean(per_class)

    def reset_state(self):
        self.matrix.assign(ops.zeros_like(self.matrix))

    def get_config(self):
        return {**super().get_config(), "n_classes": self.n_classes}
