"""The baseline: what a model that never looks at the image scores on the validation split, and
whether the best trial beats it clearly.

For classification it always answers the training split's most common class (its loss: the
training split's class frequencies, for every image); for regression it always answers the
training split's mean. A sweep records it when it starts (sweep.json), and its summary, the
leaderboard and the report state it, so that a best model no better than it (BCCD's first
regression sweep reached a test R² of -0.05) is flagged instead of passing for a result.
"""

from __future__ import annotations

import math

import numpy as np

from .objective import BY_TASK, TOP_K

# "Clearly" better: by at least 2 points of a score (accuracy, F1, AUC), or an error (RMSE, MAE,
# loss) at least 5 % below the baseline's. Below that a sweep has learned next to nothing from the images.
ACCURACY_MARGIN = 0.02
ERROR_RATIO = 0.95


def compute(index, objective: str) -> dict | None:
    """{"objective", "value", "what"} on the validation split (and the split's target variance
    for R², in regression); None when a split is empty or the objective has no baseline."""
    train, validation = index.targets[index.indices("train")], index.targets[index.indices("validation")]
    if not len(train) or not len(validation):
        return None
    if index.task == "regression":
        mean = float(np.mean(train))
        error = validation.astype(np.float64) - mean
        value = {"val_rmse": math.sqrt(float(np.mean(error**2))), "val_mae": float(np.mean(np.abs(error))),
                 "val_loss": float(np.mean(error**2))}.get(objective)
        what = f"always the training mean, {mean:.4g}"
        extra = {"validation_variance": float(np.var(validation.astype(np.float64)))}
    else:
        counts = np.bincount(train, minlength=len(index.classes)).astype(np.float64)
        majority = int(np.argmax(counts))
        prior = np.clip(counts / counts.sum(), 1e-7, 1.0)
        top = np.argsort(-counts, kind="stable")[:TOP_K]
        value = {"val_accuracy": float(np.mean(validation == majority)),
                 "val_f1": _macro_f1_of_always(majority, validation, len(index.classes)),
                 "val_auc": 0.5,  # one score for every image ranks nothing
                 f"val_top{TOP_K}_accuracy": float(np.mean(np.isin(validation, top))),
                 "val_loss": float(np.mean(-np.log(prior[validation])))}.get(objective)
        what = f"always the most common class, {index.classes[majority]}"
        extra = {}
    if value is None:
        return None
    return {"objective": objective, "value": round(value, 6), "what": what, **extra}


def _macro_f1_of_always(label: int, truth: np.ndarray, n_classes: int) -> float:
    """Macro F1 of answering `label` for every image: that class's F1, the others' 0, averaged."""
    hits = float(np.sum(truth == label))
    return 2 * hits / (hits + len(truth)) / n_classes


def r2(rmse: float, variance: float) -> float | None:
    """The coefficient of determination on a split whose targets have this variance."""
    return None if variance <= 0 else 1.0 - rmse**2 / variance


def lines(baseline: dict | None, best: dict | None) -> tuple[list[str], bool]:
    """What a summary says of the baseline against the best row, and whether it is a warning
    (the best trial does not beat the baseline clearly)."""
    if not baseline:
        return [], False
    objective, value = baseline["objective"], baseline["value"]
    said = [f"baseline ({baseline['what']}): {objective} {value:.4g}"]
    best_value = best.get(objective) if best else None
    if not isinstance(best_value, (int, float)) or isinstance(best_value, bool) or not math.isfinite(best_value):
        return said, False
    variance = baseline.get("validation_variance")
    if objective == "val_rmse" and variance:
        said[0] += f"; the best trial {best_value:.4g}, R² {r2(best_value, variance):.3f} on validation"
    if BY_TASK["classification"].get(objective) == "max":
        clearly = best_value >= value + ACCURACY_MARGIN
        margin = f"by {ACCURACY_MARGIN * 100:.0f} points of {objective.removeprefix('val_')}"
    else:
        clearly = best_value <= value * ERROR_RATIO
        margin = f"by {100 * (1 - ERROR_RATIO):.0f} % of its {objective}"
    if not clearly:
        said.append(f"the best trial ({objective} {best_value:.4g}) does not beat the baseline {margin}: "
                    "it has learned little from the images")
    return said, not clearly
