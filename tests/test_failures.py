"""Trials that fail: an exception (a damaged weights file), a diverging loss (learning rate 10),
and a sweep in which every trial fails. Real sweeps on the digits (their value as a regression
target: plain SGD at learning rate 10 overflows the squared error), tier 2."""

from __future__ import annotations

import re

import pytest
from conftest import write_spec

from sweeper import leaderboard
from sweeper.cli import main

pytestmark = pytest.mark.ray

SPEC = """
name: {name}
task: regression
data: {{csv: {csv}, images: {digits}, path_column: file, target_column: value, validation_split: 0.2}}
image_size: 32
weights: {weights}
budget: {{trials: {trials}, max_epochs: 2, grace_epochs: 2, concurrent_trials: {concurrent}, max_failures: {retries}, seed: {seed}}}
space:
  backbone: {backbones}
  head: {{pooling: avg, units: [[], [32]], dropout: 0.1}}
  optimizer: sgd
  learning_rate: [3.0e-2, 10.0]
  batch_size: 64
"""


@pytest.fixture
def digits_csv(tmp_path, digits_dir):
    lines = ["file,value"] + [f"{p.relative_to(digits_dir).as_posix()},{p.parent.name}"
                              for p in sorted(digits_dir.rglob("*.png"))]
    (tmp_path / "values.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "values.csv"


@pytest.fixture
def damaged_weights(tmp_path):
    """A weights folder whose MobileNetV2-0.35 file is not HDF5 at all: building that backbone raises."""
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5").write_bytes(b"not hdf5" * 100)
    return folder


def test_raising_and_diverging_trials_end_with_their_status_and_the_sweep_goes_on(
        tmp_path, digits_dir, digits_csv, damaged_weights, ray_session, capsys):
    # One trial at a time, and seed 5: TPE's first draws are a damaged MobileNet, simple_cnn at
    # learning rate 10, then simple_cnn at 0.03; so a trial reports before the failure guard could trip.
    spec = write_spec(tmp_path, SPEC.format(name="faults", digits=digits_dir, csv=digits_csv, weights=damaged_weights, trials=4,
                                            concurrent=1, retries=1, backbones="[simple_cnn, mobilenet_v2_0.35]", seed=5))
    assert main(["run", str(spec), "--out", str(tmp_path / "results")]) == 0
    rows = leaderboard.read(tmp_path / "results" / "faults")
    assert len(rows) == 4
    by_status = {}
    for row in rows:
        by_status.setdefault(row["status"], []).append(row)
    print({status: len(group) for status, group in by_status.items()})
    assert set(by_status) == {"completed", "diverged", "error"}
    for row in by_status["error"]:  # the damaged file, named by the error
        assert row["backbone"] == "mobilenet_v2_0.35" and "file signature not found" in row["error"]
        assert row["val_rmse"] is None
    for row in by_status["diverged"]:
        assert row["backbone"] == "simple_cnn" and row["learning_rate"] == 10.0
        assert re.match(r"the loss became (nan|-?inf) at epoch \d \(learning rate 10, sgd\)", row["error"]), row
    for row in by_status["completed"]:
        assert row["learning_rate"] == 0.03 and row["epochs"] == 2 and row["error"] == ""
        assert 0 < row["val_rmse"] < 10  # finite, and within the targets' range (0 to 9)
    assert rows[0]["status"] == "completed"  # the failed trials rank last
    printed = capsys.readouterr().out
    assert "diverged" in printed and "error" in printed


def test_a_sweep_whose_trials_all_fail_stops_early_with_a_summary(tmp_path, digits_dir, digits_csv,
                                                                  damaged_weights, ray_session, capsys):
    spec = write_spec(tmp_path, SPEC.format(name="hopeless", digits=digits_dir, csv=digits_csv, weights=damaged_weights, trials=12,
                                            concurrent=2, retries=0, backbones="mobilenet_v2_0.35", seed=0))
    assert main(["run", str(spec), "--out", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    # The space holds 4 configurations: the 4th was running when the 3rd failure stopped the sweep, or failed too.
    assert re.match(r"error: the first (3 trials all failed, so the sweep stopped instead of running 1 more|4 trials all "
                    r"failed); the first error: OSError: Unable to synchronously open file", err), err
    assert len(err.strip().splitlines()) == 1
    rows = leaderboard.read(tmp_path / "results" / "hopeless")
    assert 3 <= len(rows) < 12 and sum(r["status"] == "error" for r in rows) >= 3
    assert all(r["status"] in ("error", "stopped") for r in rows)  # one may have been starting when it stopped


def test_a_trial_whose_worker_is_killed_ends_as_error_and_the_sweep_goes_on(tmp_path, digits_dir, digits_csv):
    """What the kernel's out-of-memory killer does to a trial: SIGKILL its worker process."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    spec = write_spec(tmp_path, SPEC.format(name="killed", digits=digits_dir, csv=digits_csv, weights="none", trials=2,
                                            concurrent=1, retries=0, backbones="simple_cnn", seed=0)
                      # 10 epochs: the killed trial is surely still running a poll (0.05 s) after its first
                      # report, however fast the machine, so the kill cannot hit the next trial instead.
                      .replace("max_epochs: 2, grace_epochs: 2", "max_epochs: 10, grace_epochs: 10")
                      .replace("[3.0e-2, 10.0]", "3.0e-2"))
    out = tmp_path / "results"
    driver = subprocess.Popen([sys.executable, "-m", "sweeper", "run", str(spec), "--out", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first, deadline = None, time.time() + 300
    while first is None and time.time() < deadline:
        time.sleep(0.05)
        for path in (out / "killed" / "experiment").glob("trial_*/result.json"):
            lines = path.read_text().splitlines()
            if lines:
                first = json.loads(lines[0])
    assert first is not None, "no trial reported"
    os.kill(first["pid"], signal.SIGKILL)
    output, _ = driver.communicate(timeout=300)
    assert driver.returncode == 0, output
    rows = {r["trial_id"]: r for r in leaderboard.read(out / "killed")}
    killed = rows.pop(first["trial_id"])
    assert killed["status"] == "error" and "worker process died: killed by the system" in killed["error"], killed
    assert [r["status"] for r in rows.values()] == ["completed"]
