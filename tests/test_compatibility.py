"""A sweep interrupted under an earlier release resumes under this one.

Ray pickles sweeper's classes (the space's types, the stoppers, the trial-folder namer) into
Tune's saved state under their module paths; moving them must not strand a sweep. The earlier
release is checked out from this repository's own history (a git worktree) and run for real.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, write_spec

from sweeper import results
from sweeper.cli import main

RELEASE = "19bf1d8"  # main before the modules moved (space.py, tuner.py, sweep_callbacks.py)


@pytest.fixture
def earlier_release(tmp_path):
    git = shutil.which("git")
    known = git and subprocess.run([git, "-C", str(ROOT), "cat-file", "-e", f"{RELEASE}^{{commit}}"],
                                   capture_output=True).returncode == 0
    if not known:
        pytest.skip(f"commit {RELEASE} is not in this checkout's history")
    folder = tmp_path / "release"
    subprocess.run([git, "-C", str(ROOT), "worktree", "add", "--detach", str(folder), RELEASE], check=True,
                   capture_output=True)
    yield folder
    subprocess.run([git, "-C", str(ROOT), "worktree", "remove", "--force", str(folder)], capture_output=True)


@pytest.mark.ray
def test_a_sweep_interrupted_under_the_earlier_release_resumes(tmp_path, digits_dir, earlier_release, capsys):
    # The fault-injection spec as the release had it: it knows none of the hyperparameters added since.
    source = (earlier_release / "benchmarks" / "fault_injection.py").read_text()
    spec_text = source.split('SPEC = """\\\n', 1)[1].split('"""', 1)[0]
    spec = write_spec(tmp_path, spec_text.format(digits=digits_dir, trials=4, epochs=3, seed=0))
    out = tmp_path / "results"
    sweep = out / "faults"
    env = {**os.environ, "PYTHONPATH": str(earlier_release)}  # the release's sweeper, in the driver and its workers
    driver = subprocess.Popen([sys.executable, "-m", "sweeper", "run", str(spec), "--out", str(out)], env=env,
                              cwd=tmp_path,  # not the repository: `-m` would import this checkout's sweeper first
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not any(p.stat().st_size for p in sweep.glob("experiment/trial_*/result.json")):
        time.sleep(0.05)
    driver.send_signal(signal.SIGINT)
    output, _ = driver.communicate(timeout=120)
    assert driver.returncode == 130, output
    assert "weights_dirs" not in json.loads((sweep / "sweep.json").read_text())["options"]  # the release's record

    assert main(["resume", str(sweep)]) == 0
    rows = json.loads((sweep / "leaderboard.json").read_text())
    assert results.state_of(sweep) == "finished" and len(rows) == 4
    assert all(r["status"] in ("completed", "stopped") for r in rows), rows
    # Its trials kept the release's training: a constant learning rate, no decay, no smoothing.
    trained = [r for row in rows for r in results.read_results(results.trial_folder(sweep, row["trial_id"]))
               if "lr" in r and not r.get("replayed")]
    assert trained and all(r["lr"] == r["config"]["learning_rate"] for r in trained)
    assert all(r["config"].get("weight_decay", 0.0) == 0.0 == r["config"].get("label_smoothing", 0.0) for r in trained)
