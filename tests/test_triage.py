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


def _spec(tmp_path, text: str):
    import yaml

    from sweeper.spec import parse_spec

    (tmp_path / "data" / "a").mkdir(parents=True, exist_ok=True)
    return parse_spec(yaml.safe_load(text), write_spec(tmp_path, text))


SPACE = """
data: {train: data}
budget: {triage: prune}
space:
  backbone: [mobilenet_v2_0.35, resnet50, mobilenet_0.25]
  cut: {mobilenet_v2_0.35: [block_6_expand_relu, full], resnet50: [conv4_block6_out, full], mobilenet_0.25: full}
  image_size: [64, 96]
"""


def _ranked(*pairs):
    from sweeper.triage import Pair, Ranked

    return [Ranked(Pair(*pair), logme=-i, probe=0.5, seconds=1.0, cached=False) for i, pair in enumerate(pairs)]


def test_prune_keeps_the_better_half_of_the_backbone_cut_pairs_by_their_best_image_size(tmp_path):
    from sweeper.space import Choice, Fixed, space_size
    from sweeper.triage import first_points, pairs_of, pruned

    spec = _spec(tmp_path, SPACE)
    assert len(pairs_of(spec.space, [64, 96])) == 10
    ranked = _ranked(("resnet50", "full", 96), ("mobilenet_v2_0.35", "full", 64), ("mobilenet_0.25", "full", 64),
                     ("resnet50", "full", 64), ("mobilenet_v2_0.35", "block_6_expand_relu", 96),
                     ("resnet50", "conv4_block6_out", 64), ("mobilenet_0.25", "full", 96),
                     ("mobilenet_v2_0.35", "full", 96), ("resnet50", "conv4_block6_out", 96),
                     ("mobilenet_v2_0.35", "block_6_expand_relu", 64))
    space = pruned(spec, ranked).space  # 5 (backbone, cut) pairs: the best 3 stay
    assert space.backbone == Choice(("mobilenet_v2_0.35", "resnet50", "mobilenet_0.25"))
    assert space.cut == {"mobilenet_v2_0.35": Fixed("full"), "resnet50": Fixed("full"), "mobilenet_0.25": Fixed("full")}
    assert space_size(space) == 3 * 2
    # Best first; a pair pruned away is skipped, and only parameters Optuna samples are named.
    assert first_points(pruned(spec, ranked), ranked, 4) == [
        {"backbone": "resnet50", "image_size": 96}, {"backbone": "mobilenet_v2_0.35", "image_size": 64},
        {"backbone": "mobilenet_0.25", "image_size": 64}, {"backbone": "resnet50", "image_size": 64}]
    assert first_points(spec, ranked, 2)[1] == {"backbone": "mobilenet_v2_0.35", "cut@mobilenet_v2_0.35": "full",
                                                "image_size": 64}
    alone = pruned(spec, _ranked(("mobilenet_0.25", "full", 64), *[(b, c, 64) for b, c in
                                                                  (("resnet50", "full"), ("resnet50", "conv4_block6_out"),
                                                                   ("mobilenet_v2_0.35", "full"),
                                                                   ("mobilenet_v2_0.35", "block_6_expand_relu"))]))
    assert alone.space.backbone == Choice(("resnet50", "mobilenet_0.25"))
    assert alone.space.cut == {"resnet50": Choice(("conv4_block6_out", "full")), "mobilenet_0.25": Fixed("full")}


def test_triage_is_refused_with_a_grid_in_one_line(tmp_path):
    from sweeper.errors import SpecError

    text = SPACE.replace("budget: {triage: prune}", "budget: {triage: order, search: grid}").replace(
        "[block_6_expand_relu, full]", "full").replace("[conv4_block6_out, full]", "full")
    with pytest.raises(SpecError, match=r"budget.triage: order: a grid trains every configuration"):
        _spec(tmp_path, text)
    with pytest.raises(SpecError, match=r"budget.triage: 'first' is not allowed; allowed: off, order, prune"):
        _spec(tmp_path, SPACE.replace("triage: prune", "triage: first"))


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


TRIAGED = """
name: {name}
data: {{train: {cats}/training_set, validation: {cats}/test_set}}
image_size: 32
weights: imagenet
budget: {{trials: 2, max_epochs: 1, concurrent_trials: 2, triage: {triage}}}
space:
  backbone: [mobilenet_v2_0.35, mobilenet_0.25]
  cut: {{mobilenet_v2_0.35: [block_6_expand_relu, full], mobilenet_0.25: [conv_pw_5_relu, full]}}
  learning_rate: [1.0e-3, 3.0e-3]
"""


@needs_assets
def test_a_triaged_sweep_trains_the_best_ranked_pairs_first_and_shows_each_trial_s_score(tmp_path, capsys, ray_session):
    """4 (backbone, cut) pairs and 2 trials: both trials train the two best-ranked pairs, one each
    (TPE's start-up, drawn at random without triage). `prune` takes the other two out of the space.
    The second sweep finds the features the first one's triage computed."""
    from sweeper.cli import main
    from sweeper.triage import PRUNE_KEEP

    cats = ASSETS / "datasets" / "cats_vs_dogs"
    out = tmp_path / "results"
    for mode, computed in (("order", 4), ("prune", 0)):
        spec = write_spec(tmp_path, TRIAGED.format(name=mode, cats=cats, triage=mode), f"{mode}.yaml")
        assert main(["run", str(spec), "--out", str(out), "--weights-dir", str(WEIGHTS)]) == 0
        printed = capsys.readouterr().out
        assert "triage: 4 pairs ranked in" in printed and f"({computed} computed, {4 - computed} from the cache)" in printed
        # With prune, the searcher's space holds the better half of the pairs: 2 pairs x 2 learning rates.
        assert PRUNE_KEEP == 0.5
        assert f"2 trials (tpe search) over {4 if mode == 'prune' else 8} configurations" in printed
        ranking = json.loads((out / mode / "triage.json").read_text())
        assert [r["rank"] for r in ranking] == [1, 2, 3, 4]
        assert [r["logme"] for r in ranking] == sorted((r["logme"] for r in ranking), reverse=True)
        rows = json.loads((out / mode / "leaderboard.json").read_text())
        assert {(r["backbone"], r["cut"]) for r in rows} == {(r["backbone"], r["cut"]) for r in ranking[:2]}
        scores = {(r["backbone"], r["cut"]): r["logme"] for r in ranking}
        assert all(row["triage"] == scores[(row["backbone"], row["cut"])] for row in rows)

    # The dry run shows the ranking from the cache alone, and says when it cannot.
    prune_spec = tmp_path / "prune.yaml"
    assert main(["run", str(prune_spec), "--out", str(out), "--weights-dir", str(WEIGHTS), "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "(0 computed, 4 from the cache)" in dry
    shown = [line.split("│")[2:4] for line in dry.splitlines() if line.count("│") == 9]
    assert [(b.strip(), c.strip()) for b, c in shown] == [(r["backbone"], r["cut"]) for r in ranking]
    assert main(["run", str(prune_spec), "--out", str(tmp_path / "elsewhere"), "--dry-run"]) == 0
    assert f"not every pair's frozen features are cached yet; `sweeper triage {prune_spec}`" in capsys.readouterr().out

    # A resumed sweep searches the pruned space again: 2 more trials fill it, a third would not fit.
    assert main(["resume", str(out / "prune"), "--trials", "5"]) == 2
    assert "the space holds 4 configurations" in capsys.readouterr().err
    assert main(["resume", str(out / "prune"), "--trials", "4"]) == 0
    capsys.readouterr()
    rows = json.loads((out / "prune" / "leaderboard.json").read_text())
    assert len({(r["backbone"], r["cut"], r["learning_rate"]) for r in rows}) == 4
    assert {(r["backbone"], r["cut"]) for r in rows} == {(r["backbone"], r["cut"]) for r in ranking[:2]}

    assert main(["leaderboard", str(out / "prune")]) == 0
    header = capsys.readouterr().out.splitlines()[1]
    assert header.split()[:5] == ["#", "trial", "status", "val_accuracy", "triage"]
    assert main(["report", str(out / "prune")]) == 0
    page = (out / "prune" / "report" / "report.html").read_text()
    assert "<h2>Triage</h2>" in page and page.count("conv_pw_5_relu") >= 1 and "<th>triage</th>" in page
    triage_table = page[page.index("<h2>Triage</h2>"):].split("<h2>")[1]  # up to the next section
    assert triage_table.count("<tr>") == 1 + 4  # its header and the four pairs
