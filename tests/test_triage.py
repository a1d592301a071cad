"""Triage: closed-form scores of frozen features (LogME, a ridge probe) and `sweeper triage` on real data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ASSETS, WEIGHTS, needs_assets, write_spec

from sweeper import transferability


def _direct_log_evidence(features, y, log_alpha, log_beta) -> float:
    """log N(y; 0, F F^T / alpha + I / beta) per image: the evidence LogME maximises, written out."""
    from scipy.stats import multivariate_normal

    n = len(y)
    cov = features @ features.T / np.exp(log_alpha) + np.eye(n) / np.exp(log_beta)
    return multivariate_normal(mean=np.zeros(n), cov=cov).logpdf(y) / n


@pytest.mark.parametrize("n, d", [(60, 8), (20, 50)])  # more images than features, and fewer
def test_logme_is_the_maximum_of_the_evidence_over_alpha_and_beta(n, d):
    from scipy.optimize import minimize

    rng = np.random.default_rng(n)
    features = rng.normal(size=(n, d))
    y = features[:, :3] @ rng.normal(size=3) + 0.5 * rng.normal(size=n)
    standardised = (y - y.mean()) / y.std()
    best = minimize(lambda p: -_direct_log_evidence(features, standardised, *p), x0=[0.0, 0.0], method="Nelder-Mead",
                    options={"xatol": 1e-6, "fatol": 1e-9})
    assert transferability.logme(features, y, task="regression") == pytest.approx(-best.fun, abs=1e-5)


def test_informative_features_score_above_noise_on_both_scores():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=300)
    noise = rng.normal(size=(300, 16))
    informative = noise.copy()
    informative[:, :3] += 2.0 * np.eye(3)[labels]  # one direction per class
    assert transferability.logme(informative, labels, task="classification") > \
        transferability.logme(noise, labels, task="classification") + 0.1
    assert transferability.probe(informative, labels, task="classification") >= 0.9
    assert transferability.probe(noise, labels, task="classification") < 0.55  # chance is 1/3
    values = informative[:, 0] * 3.0 + 0.1 * rng.normal(size=300)
    assert transferability.probe(informative, values, task="regression") < 0.5 < \
        transferability.probe(noise, values, task="regression")  # RMSE: lower is better


@needs_assets
def test_triage_ranks_real_backbones_and_cuts_and_a_trial_reuses_its_features(tmp_path, capsys, ray_session):
    """On cats_vs_dogs with real ImageNet weights; the features triage computed are the ones a
    trial of `unfreeze: 0` trains on: the sweep after it adds no feature cache entry."""
    from sweeper.cli import main

    cats = ASSETS / "datasets" / "cats_vs_dogs"
    spec = write_spec(tmp_path, f"""
name: triaged
data: {{train: {cats}/training_set, validation: {cats}/test_set}}
image_size: 64
weights: imagenet
budget: {{trials: 1, max_epochs: 1, concurrent_trials: 1}}
space:
  backbone: [mobilenet_v2_0.35, mobilenet_0.25]
  cut: {{mobilenet_v2_0.35: [block_6_expand_relu, full], mobilenet_0.25: full}}
""")
    out = tmp_path / "results"
    common = ["--out", str(out), "--weights-dir", str(WEIGHTS)]
    assert main(["triage", str(spec), *common]) == 0
    printed = capsys.readouterr().out
    rows = [line.split("│")[1:-1] for line in printed.splitlines() if line.count("│") == 9]
    ranked = [(r[1].strip(), r[2].strip(), float(r[4]), float(r[5]), r[7].strip()) for r in rows]
    assert sorted((b, c) for b, c, *_ in ranked) == [("mobilenet_0.25", "full"), ("mobilenet_v2_0.35", "block_6_expand_relu"),
                                                     ("mobilenet_v2_0.35", "full")]
    assert [logme for _, _, logme, _, _ in ranked] == sorted((logme for _, _, logme, _, _ in ranked), reverse=True)
    assert all(0.6 < probe <= 1.0 for *_, probe, _ in ranked)  # real features tell cats from dogs
    assert {features for *_, features in ranked} == {"computed"}
    assert "triage: 3 pairs ranked in" in printed and "(3 computed, 0 from the cache)" in printed
    assert not any(out.glob("*/triage.json"))  # the command alone writes no sweep

    assert main(["triage", str(spec), *common]) == 0
    again = capsys.readouterr().out
    assert "(0 computed, 3 from the cache)" in again
    entries = sorted(p.name for p in (out / ".cache" / "features").iterdir() if p.is_dir())
    assert len(entries) == 3

    best = ranked[0]
    one = write_spec(tmp_path, spec.read_text().replace(
        "  backbone: [mobilenet_v2_0.35, mobilenet_0.25]\n  cut: {mobilenet_v2_0.35: [block_6_expand_relu, full], "
        "mobilenet_0.25: full}\n", f"  backbone: {best[0]}\n  cut: {{{best[0]}: {best[1]}}}\n"), "one.yaml")
    assert main(["run", str(one), *common]) == 0
    assert sorted(p.name for p in (out / ".cache" / "features").iterdir() if p.is_dir()) == entries
    rows = json.loads((out / "triaged" / "leaderboard.json").read_text())
    assert rows[0]["status"] == "completed"
