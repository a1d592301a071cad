"""`sweeper predict` streams: a batch of images at a time, rows written as they are ready, in
every format the same predictions. A real bundle: a one-trial sweep of the small CNN on the digits."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import write_spec

import sweeper
from sweeper import bundle as bundle_module
from sweeper import load_bundle
from sweeper.cli import main

SPEC = """
name: digits-bundle
data: {{train: {digits}, validation_split: 0.2}}
image_size: 32
weights: none
budget: {{trials: 1, max_epochs: 2, concurrent_trials: 1, seed: 0}}
space: {{backbone: simple_cnn, learning_rate: 0.002}}
"""


@pytest.fixture(scope="module")
def digits_bundle(tmp_path_factory, digits_dir, ray_session):
    folder = tmp_path_factory.mktemp("predict")
    assert main(["run", str(write_spec(folder, SPEC.format(digits=digits_dir))), "--out", str(folder / "results")]) == 0
    assert main(["export", str(folder / "results" / "digits-bundle"), "--out", str(folder / "bundle")]) == 0
    images = folder / "images"
    for digit in ("3", "7"):
        (images / digit).mkdir(parents=True)
        for path in sorted((digits_dir / digit).glob("*.png"))[:60]:
            shutil.copy(path, images / digit / path.name)
    (images / "7" / "broken.png").write_bytes(b"not a png")  # in the middle of the files, sorted
    return folder / "bundle", images


@pytest.mark.ray
def test_predict_holds_one_batch_and_every_format_gives_the_same_rows(digits_bundle, monkeypatch, capsys):
    bundle, images = digits_bundle
    seen = []
    outputs = bundle_module.Bundle.outputs
    monkeypatch.setattr(bundle_module, "PREDICT_BATCH", 16)
    monkeypatch.setattr(bundle_module.Bundle, "predict_batches",
                        lambda self, items, batch_size=16, original=bundle_module.Bundle.predict_batches:
                        original(self, items, batch_size))
    monkeypatch.setattr(bundle_module.Bundle, "outputs", lambda self, pixels: seen.append(len(pixels)) or outputs(self, pixels))

    printed = {}
    for fmt in ("csv", "json", "jsonl"):
        capsys.readouterr()
        assert main(["predict", str(bundle), str(images), "--format", fmt]) == 0
        out, err = capsys.readouterr()
        printed[fmt] = out
        assert err.count("skipped") == 1 and "broken.png: unreadable image" in err
    # 121 files, one broken: 8 batches of 16 and one of 9, each predicted on its own.
    assert max(seen) <= 16 and sum(seen) == 3 * 120 and len(seen) == 3 * 8
    from_csv = list(csv.DictReader(io.StringIO(printed["csv"])))
    from_json = json.loads(printed["json"])
    from_jsonl = [json.loads(line) for line in printed["jsonl"].splitlines()]
    assert len(from_csv) == len(from_json) == len(from_jsonl) == 120
    assert [r["label"] for r in from_csv] == [r["label"] for r in from_json] == [r["label"] for r in from_jsonl]
    assert [float(r["confidence"]) for r in from_csv] == pytest.approx([r["confidence"] for r in from_jsonl], abs=1e-9)
    # The same as the Python API, all files at once; the model is better than chance on the digits.
    api = [r for r in load_bundle(bundle).predict(sorted(images.rglob("*.png"))) if "error" not in r]
    assert [r["label"] for r in api] == [r["label"] for r in from_json]
    right = np.mean([r["label"] == r["path"].split("/")[-2] for r in from_json])
    assert right > 0.5, right


@pytest.mark.ray
def test_predict_says_when_a_bundle_was_made_by_another_sweeper(digits_bundle, tmp_path, capsys):
    bundle, images = digits_bundle
    one = sorted(images.rglob("*.png"))[0]
    assert main(["predict", str(bundle), str(one), "--format", "json"]) == 0
    assert "was made by" not in capsys.readouterr().err
    older = tmp_path / "older"
    shutil.copytree(bundle, older)
    manifest = json.loads((older / "bundle.json").read_text())
    manifest["versions"]["sweeper"] = "0.0.1"
    (older / "bundle.json").write_text(json.dumps(manifest))
    assert main(["predict", str(older), str(one), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)[0]["label"] in "0123456789"  # stdout stays JSON: the note is on stderr
    assert (f"note: the bundle {older} was made by sweeper 0.0.1; this is sweeper {sweeper.__version__}"
            in " ".join(err.split()))


@pytest.mark.ray
def test_load_bundle_in_a_script_keeps_tensorflows_start_up_lines_off_its_stderr(digits_bundle):
    """As `sweeper predict` does: no oneDNN, CPU-feature or CUDA lines from TensorFlow's C++ in a
    user's script or notebook (they came through, 5 to 8 lines, before load_bundle held them back)."""
    bundle, images = digits_bundle
    one = sorted((images / "7").glob("digit_*.png"))[0]  # not broken.png
    code = ("import sys; from sweeper import load_bundle; "
            "print(load_bundle(sys.argv[1]).predict([sys.argv[2]])[0]['label'])")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # conftest quiets the tests' TensorFlow
    done = subprocess.run([sys.executable, "-c", code, str(bundle), str(one)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"\d\n", done.stdout)  # a digit's label: the model loaded and predicted
    said = ("oneDNN", "cpu_feature_guard", "cuDNN", "cuda", "absl::", "rebuild TensorFlow")
    tensorflow = [line for line in done.stderr.splitlines()
                  if re.match(r"[IWEF]\d{4} ", line) or any(word in line for word in said)]
    assert tensorflow == [], done.stderr
