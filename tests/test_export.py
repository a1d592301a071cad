"""Export and predict on real sweeps (ImageNet weights, real photographs): the bundle is the model
that earned its leaderboard score, in every format, and `predict` gives what the evaluation gave."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import ASSETS, WEIGHTS, needs_assets, write_spec

from sweeper import leaderboard, load_bundle
from sweeper.bundle import MANIFEST, read_manifest
from sweeper.cli import main
from sweeper.data import build_index
from sweeper.errors import SweeperError
from sweeper.images import decode
from sweeper.native_stderr import quiet_native_stderr
from sweeper.spec import load_spec

CATS = ASSETS / "datasets" / "cats_vs_dogs"
BCCD = ASSETS / "datasets" / "bccd_blood_cell_counts"


def _run(*argv) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([str(a) for a in argv]) == 0
    return out.getvalue()


# --- bundles that are not right say so ------------------------------------------------------------


def test_a_folder_that_is_not_a_bundle_or_is_damaged_is_a_clear_error(tmp_path):
    with pytest.raises(SweeperError, match="not a sweeper bundle"):
        read_manifest(tmp_path)
    manifest = {"format": 1, "task": "classification", "classes": ["cat", "dog"], "image_size": 96,
                "members": [], "files": ["model.keras", "labels.json"]}
    (tmp_path / MANIFEST).write_text(json.dumps({k: v for k, v in manifest.items() if k != "classes"}))
    with pytest.raises(SweeperError, match="missing classes"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps({**manifest, "format": 99}))
    with pytest.raises(SweeperError, match="bundle format 99"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    (tmp_path / "labels.json").write_text("{}")
    with pytest.raises(SweeperError, match="incomplete: model.keras missing"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(SweeperError, match="not valid JSON"):
        read_manifest(tmp_path)


def test_native_stderr_is_held_back_unless_something_unexpected_fails(capfd):
    with quiet_native_stderr():
        os.write(2, b"absl banner\n")
    assert capfd.readouterr().err == ""
    with pytest.raises(SweeperError), quiet_native_stderr():
        os.write(2, b"converter chatter\n")
        raise SweeperError("a user error says it all")
    assert capfd.readouterr().err == ""
    with pytest.raises(RuntimeError), quiet_native_stderr():
        os.write(2, b"why it broke\n")
        raise RuntimeError("unexpected")
    assert capfd.readouterr().err == "why it broke\n"


def test_limits_choose_among_the_trials_they_allow_and_never_an_unmeasured_one(monkeypatch):
    from sweeper import export
    from sweeper.export import ExportOptions, _choose, within_limits_line

    monkeypatch.setattr(export, "_has_checkpoint", lambda sweep_dir, trial_id: True)
    rows = [{"trial_id": "a", "status": "stopped", "val_accuracy": 0.97, "latency_ms": None, "size_mb": 9.0},
            {"trial_id": "b", "status": "completed", "val_accuracy": 0.95, "latency_ms": 7.4, "size_mb": 9.0},
            {"trial_id": "c", "status": "completed", "val_accuracy": 0.93, "latency_ms": 3.1, "size_mb": 4.2},
            {"trial_id": "d", "status": "completed", "val_accuracy": 0.90, "latency_ms": 2.0, "size_mb": 1.5}]
    chosen = _choose(rows, "val_accuracy", ExportOptions(limits={"latency_ms": 5.0}), Path("s"))
    assert [r["trial_id"] for r in chosen] == ["c"]
    assert within_limits_line(rows, chosen, "val_accuracy", {"latency_ms": 5.0}) == (
        "within latency_ms <= 5: trial c (val_accuracy 0.93; latency_ms 3.1); the best trial overall, a "
        "(val_accuracy 0.97), has no latency_ms measured")
    both = {"latency_ms": 5.0, "size_mb": 2.0}
    assert [r["trial_id"] for r in _choose(rows, "val_accuracy", ExportOptions(limits=both, top=1), Path("s"))] == ["d"]
    with pytest.raises(SweeperError, match=r"^no trial with a checkpoint is within latency_ms <= 1 \(of 4; the "
                                           r"smallest latency_ms: 2\)$"):
        _choose(rows, "val_accuracy", ExportOptions(limits={"latency_ms": 1.0}), Path("s"))
    with pytest.raises(SweeperError, match="--trial and the --max-\\* limits"):
        _choose(rows, "val_accuracy", ExportOptions(trial="b", limits={"latency_ms": 5.0}), Path("s"))


def test_an_int8_model_that_loses_too_much_is_refused():
    from sweeper.errors import ParityError
    from sweeper.export import _check_int8, int8_drop

    formats = {"model.keras": {"val_accuracy": 0.95}, "tflite": {"val_accuracy": 0.95},
               "tflite_int8": {"val_accuracy": 0.935}}
    assert int8_drop(formats, "classification") == pytest.approx(1.5)
    _check_int8({"formats": formats}, "classification", 2.0)
    with pytest.raises(ParityError, match=r"^the int8 TFLite model loses 1.50 points of accuracy against the float "
                                          r"model on the validation split \(allowed: 1, --int8-max-drop\); the "
                                          r"bundle was not written$"):
        _check_int8({"formats": formats}, "classification", None)  # the default, 1 point
    regression = {"model.keras": {"val_rmse": 2.0}, "tflite_int8": {"val_rmse": 2.1}}
    assert int8_drop(regression, "regression") == pytest.approx(5.0)
    with pytest.raises(ParityError, match="loses 5.00 % of RMSE"):
        _check_int8({"formats": regression}, "regression", 4.0)
    assert int8_drop({"model.keras": {"val_accuracy": 0.9}}, "classification") is None  # no int8 model: no check
    _check_int8({"formats": {"model.keras": {"val_accuracy": 0.9}}}, "classification", 0.0)


# --- real sweeps ---------------------------------------------------------------------------------

CATS_SPEC = f"""
name: export-cats
data:
  train: {CATS / "training_set"}
  test: {CATS / "test_set"}
  validation_split: 0.25
image_size: 64
weights: {WEIGHTS}
budget: {{trials: 6, max_epochs: 2, grace_epochs: 2, concurrent_trials: 1, seed: 0}}
space:
  backbone: [mobilenet_v2_0.35, mobilenet_0.25]
  unfreeze: [0, 10]
  head: {{pooling: avg, units: [[], [16]], dropout: 0.2}}
  optimizer: adam
  learning_rate: {{low: 1.0e-3, high: 3.0e-3, log: true}}
  batch_size: 32
"""


@pytest.fixture(scope="module")
def cats_sweep(tmp_path_factory, ray_session):
    folder = tmp_path_factory.mktemp("export")
    _run("run", write_spec(folder, CATS_SPEC), "--out", folder / "results")
    return folder / "results" / "export-cats"


@needs_assets
@pytest.mark.ray
@pytest.mark.assets
def test_the_best_trial_exports_exactly_and_predict_matches_the_evaluation(cats_sweep, tmp_path):
    rows = leaderboard.read(cats_sweep)
    best = rows[0]
    # The int8 model's loss is bounded loosely here (the default bound is tested on its own, above):
    # the point is the bundle's files and their parity.
    printed = _run("export", cats_sweep, "--out", tmp_path / "bundle", "--int8", "--int8-max-drop", "5")
    assert f"trial {best['trial_id']} reported" in printed and "int8 TFLite: loses " in printed
    bundle = tmp_path / "bundle"
    for name in ("model.keras", "saved_model/saved_model.pb", "model.tflite", "model_int8.tflite", "model.onnx",
                 "labels.json", "preprocessing.json", "model_card.md", MANIFEST):
        assert (bundle / name).exists(), name
    manifest = json.loads((bundle / MANIFEST).read_text())
    checks = manifest["checks"]
    assert manifest["members"][0]["trial_id"] == best["trial_id"] and manifest["classes"] == ["cats", "dogs"]
    assert checks["val_accuracy"] == pytest.approx(best["val_accuracy"], abs=1e-6)
    for name in ("saved_model", "saved_model_bytes", "tflite", "onnx"):
        assert checks["formats"][name]["max_abs_difference"] <= 1e-4
        assert checks["formats"][name]["val_accuracy"] == pytest.approx(best["val_accuracy"], abs=1e-6)
    assert checks["test"]["test_accuracy"] == pytest.approx(best["test_accuracy"], abs=1e-6)
    card = (bundle / "model_card.md").read_text()
    assert best["trial_id"] in card and manifest["data_fingerprint"] in card and "tensorflow:" in card
    assert "| test | model.keras | test_accuracy |" in card and "name: export-cats" in card

    # `sweeper predict` on the test images gives the evaluation's accuracy.
    predicted = json.loads(_run("predict", bundle, CATS / "test_set", "--format", "json"))
    assert len(predicted) == 200 and set(predicted[0]) == {"path", "label", "confidence"}
    accuracy = np.mean([p["label"] in p["path"].split("/")[-2] for p in predicted])
    assert accuracy == pytest.approx(best["test_accuracy"], abs=1e-9)
    # The table prints a file name as it is: `[edited]` is text, not rich markup.
    renamed = tmp_path / "IMG [edited].jpg"
    shutil.copy(predicted[0]["path"], renamed)
    assert "IMG [edited].jpg" in _run("predict", bundle, renamed)

    # The Python API takes arrays of any size too; an unreadable file is reported, not fatal.
    model = load_bundle(bundle)
    first = predicted[0]["path"]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    big = decode(first, 300)
    out = model.predict([decode(first, 64), broken, big])
    assert out[0]["label"] == predicted[0]["label"] and out[0]["confidence"] == pytest.approx(predicted[0]["confidence"], abs=1e-6)
    assert out[1]["error"].startswith("unreadable image") and out[2]["label"] in ("cats", "dogs")
    # One path or one array is one image, not a sequence of characters or of rows.
    assert [r["label"] for r in model.predict(first)] == [predicted[0]["label"]]
    assert len(model.predict(big)) == 1

    # The SavedModel serves raw uint8 images of any size, labels included.
    import tensorflow as tf

    saved_model = tf.saved_model.load(str(bundle / "saved_model"))
    served = saved_model.serve(tf.constant(big[None]))
    assert served["label"].numpy()[0].decode() in ("cats", "dogs") and served["probabilities"].shape == (1, 2)
    # And a JPEG file's bytes, as TF Serving's REST clients send them: decoded in the graph.
    jpegs = [path.read_bytes() for path in sorted((CATS / "test_set" / "cats").glob("*.jpg"))[:3]]
    from_bytes = saved_model.serve_bytes(tf.constant(jpegs))["probabilities"].numpy()
    decoded = [saved_model.serve(tf.io.decode_jpeg(jpeg, channels=3)[None])["probabilities"].numpy()[0] for jpeg in jpegs]
    np.testing.assert_allclose(from_bytes, decoded, atol=1e-6)

    # The TFLite and ONNX files carry the class names: each is enough alone on a device.
    from ai_edge_litert.interpreter import Interpreter

    from sweeper.export import labels_inside

    assert labels_inside(bundle, 2) == {name: ["cats", "dogs"] for name in ("model.tflite", "model_int8.tflite", "model.onnx")}
    lite = Interpreter(model_path=str(bundle / "model.tflite")).get_signature_runner("tflite")(
        images=decode(first, manifest["image_size"])[None])
    assert lite["label"][0].decode() == ["cats", "dogs"][int(np.argmax(lite["probabilities"][0]))]
    import onnxruntime

    session = onnxruntime.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map["task"] == "classification"
    assert "onnx" in json.loads((bundle / "preprocessing.json").read_text())

    # An existing bundle is not overwritten without --force.
    assert main(["export", str(cats_sweep), "--out", str(bundle)]) == 2


@needs_assets
@pytest.mark.ray
@pytest.mark.assets
def test_a_trial_fine_tuned_on_cached_activations_exports_exactly(cats_sweep, tmp_path):
    tuned = next(r for r in leaderboard.read(cats_sweep) if r["unfreeze"] > 0)
    (tmp_path / "tuned").mkdir()  # an older bundle, as far as --force can tell: its manifest lists its files
    (tmp_path / "tuned" / "stale.txt").write_text("an older model")
    (tmp_path / "tuned" / MANIFEST).write_text(json.dumps({"format": 1, "files": ["stale.txt", MANIFEST]}))
    _run("export", cats_sweep, "--trial", tuned["trial_id"], "--out", tmp_path / "tuned", "--force")
    assert not (tmp_path / "tuned" / "stale.txt").exists()  # --force replaced the bundle as a whole
    assert not list(tmp_path.glob(".tuned.*"))  # the old one, moved aside, and the temp folder are gone
    manifest = json.loads((tmp_path / "tuned" / MANIFEST).read_text())
    assert manifest["members"][0]["config"]["unfreeze"] == tuned["unfreeze"] > 0
    assert manifest["checks"]["val_accuracy"] == pytest.approx(tuned["val_accuracy"], abs=1e-6)
    assert manifest["checks"]["formats"]["tflite"]["max_abs_difference"] <= 1e-4


@needs_assets
@pytest.mark.ray
@pytest.mark.assets
def test_an_ensemble_of_the_top_2_predicts_end_to_end(cats_sweep, tmp_path):
    rows = leaderboard.read(cats_sweep)
    printed = _run("export", cats_sweep, "--top", "2", "--out", tmp_path / "top2")
    assert f"the best single trial: {rows[0]['val_accuracy']:.6g}" in printed
    manifest = json.loads((tmp_path / "top2" / MANIFEST).read_text())
    assert [m["trial_id"] for m in manifest["members"]] == [r["trial_id"] for r in rows[:2]]
    assert manifest["checks"]["formats"]["saved_model"]["max_abs_difference"] <= 1e-4
    predicted = load_bundle(tmp_path / "top2").predict(sorted((CATS / "test_set" / "dogs").glob("*.jpg"))[:20])
    assert len(predicted) == 20 and all(p["label"] in ("cats", "dogs") and 0.5 <= p["confidence"] <= 1 for p in predicted)
    assert np.mean([p["label"] == "dogs" for p in predicted]) >= 0.6


@needs_assets
@pytest.mark.ray
@pytest.mark.assets
def test_limits_export_the_best_trial_within_them_and_say_why(cats_sweep, tmp_path, capsys):
    rows = leaderboard.read(cats_sweep)
    timed = [r for r in rows if r["latency_ms"] is not None]
    bound = min(r["latency_ms"] for r in timed)  # the fastest architecture's: at least one trial is within
    within = [r for r in leaderboard.scored(rows, "val_accuracy") if r["latency_ms"] is not None and r["latency_ms"] <= bound]
    printed = _run("export", cats_sweep, "--out", tmp_path / "fast", "--max-latency-ms", str(bound))
    chosen = json.loads((tmp_path / "fast" / MANIFEST).read_text())["members"][0]["trial_id"]
    assert chosen == within[0]["trial_id"]
    assert f"within latency_ms <= {bound:g}: trial {chosen}" in printed
    if rows[0]["trial_id"] != chosen:  # the best overall is slower, or was stopped before its latency was measured
        assert f"the best trial overall, {rows[0]['trial_id']}" in printed
    assert main(["export", str(cats_sweep), "--out", str(tmp_path / "none"), "--max-size-mb", "0.001"]) == 2
    err = capsys.readouterr().err
    assert "no trial with a checkpoint is within size_mb <= 0.001" in err and "the smallest size_mb: " in err
    assert not (tmp_path / "none").exists()


@needs_assets
@pytest.mark.ray
@pytest.mark.assets
def test_max_tflite_ms_measures_the_best_trials_in_litert_until_one_is_within(cats_sweep):
    """The sweep did not bound tflite_ms, so it has none: the export measures the best trial's first."""
    from rich.console import Console

    from sweeper import export, results
    from sweeper.export import ExportOptions

    rows = leaderboard.read(cats_sweep)
    before = results.SweepFolder(cats_sweep).leaderboard.read_bytes()
    assert all(r.get("tflite_ms") is None for r in rows)
    best = leaderboard.scored(rows, "val_accuracy")[0]
    index = export._sweep_data(cats_sweep, results.read_meta(cats_sweep))
    export._measure_tflite_where_missing(rows, "val_accuracy", {"tflite_ms": 1000.0}, cats_sweep, index, Console())
    assert [r["trial_id"] for r in rows if r.get("tflite_ms") is not None] == [best["trial_id"]]
    assert 0 < best["tflite_ms"] < 1000  # a MobileNetV2 at the sweep's size, on one thread
    chosen = export._choose(rows, "val_accuracy", ExportOptions(limits={"tflite_ms": 1000.0}), cats_sweep)
    assert chosen[0]["trial_id"] == best["trial_id"]
    assert results.SweepFolder(cats_sweep).leaderboard.read_bytes() == before  # the sweep's files as they were


@needs_assets
@pytest.mark.ray
@pytest.mark.assets
def test_an_int8_export_measures_what_quantization_loses(cats_sweep, tmp_path):
    printed = _run("export", cats_sweep, "--out", tmp_path / "int8", "--int8", "--int8-max-drop", "100")
    formats = json.loads((tmp_path / "int8" / MANIFEST).read_text())["checks"]["formats"]
    assert (tmp_path / "int8" / "model_int8.tflite").stat().st_size < (tmp_path / "int8" / "model.tflite").stat().st_size
    drop = 100 * (formats["model.keras"]["val_accuracy"] - formats["tflite_int8"]["val_accuracy"])
    assert f"int8 TFLite: loses {drop:.2f} points of accuracy against the float model on the validation split" in printed


@needs_assets
@pytest.mark.ray
@pytest.mark.assets
def test_a_mismatch_with_the_leaderboard_fails_the_export_and_writes_nothing(cats_sweep, tmp_path, capsys):
    copy = tmp_path / "results" / "copy"
    shutil.copytree(cats_sweep, copy)
    rows = leaderboard.read(copy)
    rows[0]["val_accuracy"] = rows[0]["val_accuracy"] - 0.01  # as if the checkpoint were another epoch's
    leaderboard.write(copy, rows, "val_accuracy")
    assert main(["export", str(copy), "--out", str(tmp_path / "bad")]) == 2
    assert "the bundle was not written" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad.tmp-*"))


@needs_assets
@pytest.mark.ray
@pytest.mark.assets
def test_a_regression_bundle_reproduces_rmse_and_predicts_the_test_values(tmp_path, ray_session):
    spec_path = write_spec(tmp_path, f"""
name: export-bccd
task: regression
data:
  csv: {BCCD / "counts_per_image.DERIVED.csv"}
  images: {BCCD / "BCCD" / "JPEGImages"}
  path_column: image
  target_column: total_count
  validation_split: 0.2
  test_split: 0.1
image_size: 64
weights: {WEIGHTS}
budget: {{trials: 2, max_epochs: 2, grace_epochs: 2, concurrent_trials: 2, seed: 0}}
space:
  backbone: mobilenet_v2_0.35
  head: {{pooling: avg, units: [[64]], dropout: 0.1}}
  optimizer: adam
  learning_rate: [1.0e-3, 3.0e-3]
  batch_size: 32
""")
    _run("run", spec_path, "--out", tmp_path / "results")
    sweep = tmp_path / "results" / "export-bccd"
    best = leaderboard.read(sweep)[0]
    _run("export", sweep, "--out", tmp_path / "bundle")
    manifest = json.loads((tmp_path / "bundle" / MANIFEST).read_text())
    assert manifest["task"] == "regression" and manifest["classes"] == []
    assert manifest["checks"]["val_rmse"] == pytest.approx(best["val_rmse"], rel=1e-6)
    assert manifest["checks"]["formats"]["tflite"]["max_abs_difference"] <= 1e-4

    index = build_index(load_spec(spec_path).data, "regression")
    test = index.indices("test")
    predicted = load_bundle(tmp_path / "bundle").predict([index.paths[i] for i in test])
    values = np.array([p["value"] for p in predicted])
    rmse = float(np.sqrt(np.mean((values - index.targets[test]) ** 2)))
    assert rmse == pytest.approx(best["test_rmse"], rel=1e-5)
    csv_lines = _run("predict", tmp_path / "bundle", index.paths[test[0]], "--format", "csv").splitlines()
    assert csv_lines[0] == "path,value" and float(csv_lines[1].split(",")[1]) == pytest.approx(values[0], rel=1e-5)
