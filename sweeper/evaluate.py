"""Evaluation of the best trial on the held-out test split, at the end of a sweep.

Predictions run in a Ray task (which imports TensorFlow); the driver turns them into
scikit-learn's report, a confusion matrix or a predicted-versus-true plot, under
`results/<sweep>/evaluation/`, and returns the test metrics for the leaderboard.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .data import DatasetIndex
from .plotting import pyplot


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
    if index.task == "regression":
        return _regression(truth.astype(float), outputs.reshape(-1).astype(float), split, folder)
    return _classification(truth, outputs, index.classes, split, folder)


def _classification(truth, outputs, classes, split: str, folder: Path) -> dict[str, float]:
    from sklearn.metrics import classification_report, confusion_matrix

    predicted = (outputs.reshape(-1) >= 0.5).astype(int) if outputs.shape[-1] == 1 else outputs.argmax(axis=-1)
    labels = list(range(len(classes)))
    text = classification_report(truth, predicted, labels=labels, target_names=list(classes), zero_division=0)
    as_dict = classification_report(truth, predicted, labels=labels, target_names=list(classes), zero_division=0,
                                    output_dict=True)
    (folder / "classification_report.txt").write_text(text)
    (folder / "classification_report.json").write_text(json.dumps(as_dict, indent=2))
    matrix = confusion_matrix(truth, predicted, labels=labels)
    header = "true \\ predicted," + ",".join(classes)
    lines = [header] + [f"{name}," + ",".join(map(str, row)) for name, row in zip(classes, matrix)]
    (folder / "confusion_matrix.csv").write_text("\n".join(lines) + "\n")
    _plot_confusion(matrix, classes, split, folder / "confusion_matrix.png")
    return {f"{split}_accuracy": float(as_dict["accuracy"]), f"{split}_images": int(len(truth))}


def _regression(truth, predicted, split: str, folder: Path) -> dict[str, float]:
    from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

    metrics = {
        f"{split}_rmse": float(root_mean_squared_error(truth, predicted)),
        f"{split}_mae": float(mean_absolute_error(truth, predicted)),
        f"{split}_r2": float(r2_score(truth, predicted)),
        f"{split}_images": int(len(truth)),
    }
    (folder / "regression_metrics.json").write_text(json.dumps(metrics, indent=2))
    table = "true,predicted\n" + "".join(f"{t},{p}\n" for t, p in zip(truth, predicted))
    (folder / "predictions.csv").write_text(table)
    _plot_predicted_vs_true(truth, predicted, metrics, split, folder / "predicted_vs_true.png")
    return metrics


def _plot_confusion(matrix, classes, split: str, path: Path) -> None:
    plt = pyplot()
    size = max(4.0, 0.5 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), labels=classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), labels=classes)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > matrix.max() / 2 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"Confusion matrix on the {split} split ({matrix.sum()} images)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_predicted_vs_true(truth, predicted, metrics, split: str, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(truth, predicted, s=14, alpha=0.7)
    low, high = float(min(truth.min(), predicted.min())), float(max(truth.max(), predicted.max()))
    ax.plot([low, high], [low, high], color="grey", linestyle="--", label="predicted = true")
    ax.set_xlabel("true value")
    ax.set_ylabel("predicted value")
    ax.set_title(f"{split} split: RMSE {metrics[f'{split}_rmse']:.3g}, MAE {metrics[f'{split}_mae']:.3g}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
