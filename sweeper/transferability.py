"""How well frozen features suit a task, in closed form, before anything trains.

Two scores of the features a (backbone, cut, image size) gives the training images:

- `logme`: LogME (You et al., ICML 2021), the log of the maximum evidence of a Bayesian linear
  model from the features to the targets, per image (one-hot targets for classes, the
  standardised value for regression). Higher is better; comparable between feature sets of the
  same data, not between data sets.
- `probe`: a ridge probe (scikit-learn, its regularisation chosen by efficient leave-one-out)
  fitted on 80 % of the training images and scored on the other 20 %: accuracy, or RMSE for
  regression, in the objective's own units.

Neither touches the validation images, which rank the trials.
"""

from __future__ import annotations

import numpy as np

HELD_IN = 0.2  # the share of the training images the probe is scored on
ALPHAS = np.logspace(-3, 4, 15)  # the ridge probe's candidate regularisation strengths


def logme(features: np.ndarray, targets: np.ndarray, *, task: str) -> float:
    """LogME of `features` (n x d) for `targets` (n class ids, or n values): mean log evidence per image."""
    f = np.asarray(features, np.float64)
    if task == "classification":
        classes = np.unique(targets)
        ys = [(targets == c).astype(np.float64) for c in classes]
    else:
        y = np.asarray(targets, np.float64)
        ys = [(y - y.mean()) / (y.std() or 1.0)]
    u, sigma, _ = np.linalg.svd(f, full_matrices=False)
    s = sigma**2  # eigenvalues of F^T F; the other d - rank ones are 0
    return float(np.mean([_evidence(u, s, y, d=f.shape[1]) for y in ys]))


def _evidence(u: np.ndarray, s: np.ndarray, y: np.ndarray, *, d: int, iterations: int = 100) -> float:
    """Maximum log evidence of y = F w + noise, w ~ N(0, 1/alpha), noise ~ N(0, 1/beta), per image.

    alpha and beta by MacKay's fixed point; everything in the eigenbasis of F^T F, so each
    iteration costs O(d) after the one SVD. With more features than images it converges slowly
    (50 iterations to 1e-7 on 20 x 50, where LogME's reference code stops at 11): cheap here.
    """
    n = len(y)
    x = u.T @ y  # y's coordinates along F's left singular vectors
    outside = max(float(y @ y - x @ x), 0.0)  # the part of y no weights can reach
    alpha, beta = 1.0, 1.0
    for _ in range(iterations):
        shrink = beta * s / (alpha + beta * s)
        gamma = shrink.sum()  # the effective number of parameters
        m2 = float(np.sum(shrink**2 * x**2 / np.where(s > 0, s, 1.0)))  # |m|^2, m the posterior mean
        residual = outside + float(np.sum((alpha / (alpha + beta * s)) ** 2 * x**2))  # |y - F m|^2
        new_alpha, new_beta = gamma / max(m2, 1e-12), (n - gamma) / max(residual, 1e-12)
        done = abs(new_alpha / new_beta - alpha / beta) / (alpha / beta) < 1e-5
        alpha, beta = new_alpha, new_beta
        if done:
            break
    shrink = beta * s / (alpha + beta * s)
    m2 = float(np.sum(shrink**2 * x**2 / np.where(s > 0, s, 1.0)))
    residual = outside + float(np.sum((alpha / (alpha + beta * s)) ** 2 * x**2))
    log_det = np.sum(np.log(alpha + beta * s)) + (d - len(s)) * np.log(alpha)
    evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - alpha / 2 * m2 - beta / 2 * residual
                - log_det / 2 - n / 2 * np.log(2 * np.pi))
    return float(evidence / n)


def probe(features: np.ndarray, targets: np.ndarray, *, task: str, seed: int = 0) -> float:
    """A ridge probe's score on a held-in fifth of the images: accuracy, or RMSE for regression."""
    from sklearn.linear_model import RidgeClassifierCV, RidgeCV
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    stratify = targets if task == "classification" and np.min(np.unique(targets, return_counts=True)[1]) > 1 else None
    f_fit, f_held, y_fit, y_held = train_test_split(np.asarray(features, np.float32), targets, test_size=HELD_IN,
                                                    random_state=seed, stratify=stratify)
    ridge = RidgeClassifierCV(alphas=ALPHAS) if task == "classification" else RidgeCV(alphas=ALPHAS)
    model = make_pipeline(StandardScaler(), ridge).fit(f_fit, y_fit)
    predicted = model.predict(f_held)
    if task == "classification":
        return float(np.mean(predicted == y_held))
    return float(np.sqrt(np.mean((predicted - y_held) ** 2)))
