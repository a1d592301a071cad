"""Evaluation of the best trial on the held-out test split, at the end of a sweep.

Predictions run in a Ray task (which imports TensorFlow); the driver turns them into
scikit-learn's report, a confusion matrix or a predicted-versus-true plot, under
`results/<sweep>/evaluation/`, and returns the test metrics for the leaderboard.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np

from .bundle import to_probabilities
from .data import DatasetIndex
from .files import write_atomic
from .objective import TOP_K
from .plotting import pyplot, save_png

TITLE_CHARS_PER_INCH = 9  # of a 12 pt title, with a margin


DPI = 120
# The files `report` writes in the evaluation folder; the sweep's report.html reads them by these names.
CLASSIFICATION_REPORT = "classification_report.json"
CONFUSION_MATRIX = "confusion_matrix.png"
REGRESSION_METRICS = "regression_metrics.json"
PREDICTED_VS_TRUE = "predicted_vs_true.png"


def predict_split(checkpoint_dir: str, index: DatasetIndex, split: str, cache_dir: str, cpus: int = 1) -> np.ndarray:
    """The checkpointed model's outputs on one split: probabilities (classification) or values."""
    from .trial import init_tensorflow

    init_tensorflow(cpus)
    from . import checkpoint, images

    model, config = checkpoint.load_model(Path(checkpoint_dir), task=index.task, n_classes=len(index.classes))
    index, pixels = images.load_images(index, config.image_size, Path(cache_dir))
    rows = index.indices(split)
    return model.predict(pixels[rows], batch_size=64, verbose=0)


def report(index: DatasetIndex, outputs: np.ndarray, split: str, folder: Path) -> dict[str, float]:
    """Write the evaluation files and return the metrics, named `<split>_<metric>`."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = index.targets[index.indices(split)]
    out = to_probabilities(np.asarray(outputs, np.float64), index.task)
    metrics = {**scores(out, truth, index.task, len(index.classes), split), f"{split}_images": int(len(truth))}
    if index.task == "regression":
        _regression_files(truth.astype(float), out, metrics, split, folder)
    else:
        _classification_files(truth, out.argmax(axis=-1), index.classes, split, folder)
    return metrics


def scores(out: np.ndarray, truth: np.ndarray, task: str, n_classes: int, split: str) -> dict[str, float]:
    """Every objective's metric on a split, by scikit-learn: the test evaluation's, and each exported
    format's. `out` is `to_probabilities`' (a class ties to the first, as Keras' accuracy counts 0.5)."""
    from sklearn import metrics

    if task == "regression":
        truth = truth.astype(np.float64)
        return {f"{split}_rmse": float(metrics.root_mean_squared_error(truth, out)),
                f"{split}_mae": float(metrics.mean_absolute_error(truth, out)),
                f"{split}_r2": float(metrics.r2_score(truth, out)) if len(truth) > 1 else float("nan")}
    labels, predicted = list(range(n_classes)), out.argmax(axis=-1)
    found = {f"{split}_accuracy": float(metrics.accuracy_score(truth, predicted)),
             f"{split}_f1": float(metrics.f1_score(truth, predicted, labels=labels, average="macro", zero_division=0))}
    if n_classes == 2 and len(np.unique(truth)) == 2:  # AUC needs both classes among the images
        found[f"{split}_auc"] = float(metrics.roc_auc_score(truth, out[:, 1]))
    if n_classes > TOP_K:
        found[f"{split}_top{TOP_K}_accuracy"] = float(metrics.top_k_accuracy_score(truth, out, k=TOP_K, labels=labels))
    return found


def _classification_files(truth, predicted, classes, split: str, folder: Path) -> None:
    from sklearn.metrics import classification_report, confusion_matrix

    labels = list(range(len(classes)))
    text = classification_report(truth, predicted, labels=labels, target_names=list(classes), zero_division=0)
    as_dict = classification_report(truth, predicted, labels=labels, target_names=list(classes), zero_division=0,
                                    output_dict=True)
    write_atomic(folder / "classification_report.txt", text)
    write_atomic(folder / CLASSIFICATION_REPORT, json.dumps(as_dict, indent=2))
    matrix = confusion_matrix(truth, predicted, labels=labels)
    header = "true \\ predicted," + ",".join(classes)
    lines = [header] + [f"{name}," + ",".join(map(str, row)) for name, row in zip(classes, matrix)]
    write_atomic(folder / "confusion_matrix.csv", "\n".join(lines) + "\n")
    _plot_confusion(matrix, classes, split, folder / CONFUSION_MATRIX)


def _regression_files(truth, predicted, metrics: dict, split: str, folder: Path) -> None:
    write_atomic(folder / REGRESSION_METRICS, json.dumps(metrics, indent=2))
    table = "true,predicted\n" + "".join(f"{t},{p}\n" for t, p in zip(truth, predicted))
    write_atomic(folder / "predictions.csv", table)
    _plot_predicted_vs_true(truth, predicted, metrics, split, folder / PREDICTED_VS_TRUE)


def _plot_confusion(matrix, classes, split: str, path: Path) -> None:
    plt = pyplot()
    # Wide enough for the cells, and for the longest class name beside them (12 characters an inch at 10 pt).
    size = max(4.0, 0.5 * len(classes) + 2 + max(map(len, classes), default=0) / 12)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), labels=classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), labels=classes)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > matrix.max() / 2 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    _title(fig, f"Confusion matrix on the {split} split ({matrix.sum()}\u00a0images)", size)  # kept on one line
    save_png(fig, path, DPI)


def _plot_predicted_vs_true(truth, predicted, metrics, split: str, path: Path) -> None:
    plt = pyplot()
    size = 5.0
    fig, ax = plt.subplots(figsize=(size, size))
    ax.scatter(truth, predicted, s=14, alpha=0.7)
    low, high = float(min(truth.min(), predicted.min())), float(max(truth.max(), predicted.max()))
    ax.plot([low, high], [low, high], color="grey", linestyle="--", label="predicted = true")
    ax.set_xlabel("true value")
    ax.set_ylabel("predicted value")
    _title(fig, f"{split} split: RMSE {metrics[f'{split}_rmse']:.3g}, MAE {metrics[f'{split}_mae']:.3g}", size)
    ax.legend()
    save_png(fig, path, DPI)


def _title(fig, text: str, width_inches: float) -> None:
    """The title, over the whole figure and wrapped to its width. Over the axes, it was cut: with two
    classes the figure is 4 inches wide, the axes narrower still, and tight_layout cannot fit a title
    wider than the figure."""
    fig.suptitle(textwrap.fill(text, int(width_inches * TITLE_CHARS_PER_INCH)))
