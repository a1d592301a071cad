"""Interrupting and resuming sweeps: Ctrl+C, SIGKILL of the driver at random moments, and the
cases `sweeper resume` refuses. Real sweeps of a small CNN on the digits, tier 2."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import write_spec
from fault_injection import SPEC, inject

import sweeper
from sweeper import leaderboard, results
from sweeper.cli import main
from sweeper.files import DriverLock


@pytest.mark.ray
def test_three_sigkills_of_the_driver_lose_and_repeat_no_trial(tmp_path):
    figures = inject(tmp_path, kills=3, trials=6, epochs=3, seed=1, say=lambda _: None)
    assert figures["kills"] == 3, figures
    assert figures["state"] == "finished" and figures["trials"] == 6
    assert figures["trials_lost"] == 0 and figures["trials_duplicated"] == 0
    assert figures["folders_match_rows"] and figures["optuna_matches_rows"]
    assert figures["optuna_trials"] == 6 and figures["optuna_unfinished"] == 0
    assert figures["ended_trials_retrained"] == 0
    # Every trial resumed from the checkpoint its saved state named: none ended in an error.
    assert set(figures["statuses"]) <= {"completed", "stopped"}, figures
    assert figures["most_checkpoints_in_a_trial"] == 1 and figures["checkpoints_not_the_best_epoch"] == 0
    # A trial continued after a kill picked its learning-rate schedule up at its epoch.
    assert figures["epochs_off_their_schedule"] == 0
    # The kills left each driver's local Ray running; the resumes ended it all.
    assert figures["processes_left_by_killed_drivers"] > 0 and figures["processes_left_after_the_resumes"] == 0


@pytest.mark.ray
def test_ctrl_c_stops_gracefully_prints_the_resume_command_and_resume_finishes(tmp_path, digits_dir, capsys):
    """With the experiment at a `--storage` URI: Tune and sweeper read it through a pyarrow
    filesystem (here `file://`, the same code path as `s3://`)."""
    spec = write_spec(tmp_path, SPEC.format(digits=digits_dir, trials=5, epochs=3, seed=0))
    out, store = tmp_path / "results", tmp_path / "store"
    uri = f"file://{store}"
    sweep = out / "faults"
    driver = subprocess.Popen([sys.executable, "-m", "sweeper", "run", str(spec), "--out", str(out), "--storage", uri],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not _reported(sweep):  # interrupt mid-trial, right after a first epoch
        time.sleep(0.05)
    driver.send_signal(signal.SIGINT)
    stdout, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 130, stdout + stderr
    assert f"interrupted; continue it with: sweeper resume {sweep}" in stderr
    assert results.state_of(sweep) == "interrupted"
    assert results.experiment_of(sweep) == f"{uri}/faults" and not (sweep / "experiment").exists()
    before = {r["trial_id"]: r for r in leaderboard.read(sweep)}
    assert before and len(before) < 5

    assert main(["resume", str(sweep)]) == 0
    assert "resuming;" in capsys.readouterr().out
    rows = leaderboard.read(sweep)
    assert results.state_of(sweep) == "finished"
    assert len(rows) == 5 and all(r["status"] in ("completed", "stopped") for r in rows)
    for row in rows:  # trials that had ended kept their results; those cut off went on from a checkpoint
        if before.get(row["trial_id"], {}).get("status") in ("completed", "stopped"):
            assert row == {**before[row["trial_id"]], "rank": row["rank"]}
    folders = sorted(p.name.removeprefix("trial_") for p in (store / "faults").glob("trial_*"))
    assert folders == sorted(r["trial_id"] for r in rows)

    # The report reads each trial's results through the URI (copied into the sweep folder).
    assert main(["report", str(sweep)]) == 0
    page = (sweep / "report" / "report.html").read_text()
    assert all(r["trial_id"] in page for r in rows)
    copied = (sweep / ".remote" / f"trial_{rows[0]['trial_id']}" / "result.json").read_text().splitlines()
    assert json.loads(copied[-1])["epoch"] == rows[0]["epochs"]

    # A finished sweep is not resumed again. One made by another sweeper says so first.
    capsys.readouterr()
    assert main(["resume", str(sweep)]) == 2
    out, err = capsys.readouterr()
    assert "this sweep has finished, with 5 trials; nothing to resume" in err and "was made by" not in out
    meta = json.loads((sweep / "sweep.json").read_text())
    (sweep / "sweep.json").write_text(json.dumps({**meta, "sweeper_version": "0.0.1"}))
    assert main(["resume", str(sweep)]) == 2
    assert (f"note: {sweep} was made by sweeper 0.0.1; this is sweeper {sweeper.__version__} (pip install "
            "'sweeper-tune==0.0.1' gives the one that made it); it resumes with this version's code") in \
        " ".join(capsys.readouterr().out.split())


def _reported(sweep: Path) -> bool:
    try:
        return any(r["epochs"] for r in json.loads((sweep / "leaderboard.json").read_text()))
    except (OSError, ValueError):
        return False


def test_a_second_driver_on_a_sweep_exits_2_at_once_naming_the_first(tmp_path, capsys):
    """The lock is an flock: held here by the test, as a running driver holds it; a driver killed
    with -9 releases it with its process, so a stale pid (pid 1 in a container) blocks nothing."""
    sweep = tmp_path / "results" / "busy"
    sweep.mkdir(parents=True)
    (sweep / "spec.yaml").write_text("data: {train: d}\n")
    results.write_meta(sweep, {"spec_path": str(tmp_path / "spec.yaml"), "state": "running",
                               "driver_host": socket.gethostname(), "driver_pid": 1})
    with DriverLock(sweep):
        before = _files(sweep)
        assert main(["resume", str(sweep)]) == 2
        assert _files(sweep) == before
    err = capsys.readouterr().err
    assert f"another sweeper driver is running this sweep (host {socket.gethostname()}, pid {os.getpid()}" in err
    assert len(err.strip().splitlines()) == 1


def test_two_runs_of_one_spec_at_once_the_second_exits_2(tmp_path, digits_dir, capsys):
    spec = write_spec(tmp_path, SPEC.format(digits=digits_dir, trials=2, epochs=2, seed=0))
    sweep = tmp_path / "results" / "faults"
    sweep.mkdir(parents=True)
    with DriverLock(sweep):  # the first run, still preparing its data
        assert main(["run", str(spec), "--out", str(tmp_path / "results")]) == 2
    assert "another sweeper driver is running this sweep" in capsys.readouterr().err
    assert sorted(p.name for p in sweep.iterdir()) == [".driver.lock"]


def test_resume_refuses_a_damaged_saved_state(tmp_path):
    from sweeper.errors import SweeperError
    from sweeper.saved_state import check_experiment_state

    (tmp_path / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": [')
    with pytest.raises(SweeperError, match="the saved state of the sweep cannot be read"):
        check_experiment_state(str(tmp_path), trials_recorded=1)


def test_resume_refuses_recorded_trials_without_a_saved_state(tmp_path):
    """Tune, finding no state, would start over and the recorded trials would be lost."""
    from sweeper.errors import SweeperError
    from sweeper.saved_state import check_experiment_state

    check_experiment_state(str(tmp_path), trials_recorded=0)  # killed before any trial: starts afresh
    with pytest.raises(SweeperError, match=f"{tmp_path}: no saved state of the sweep here .* records 3 trials"):
        check_experiment_state(str(tmp_path), trials_recorded=3)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_asha_reads_its_rungs_back_from_restored_trials(tmp_path):
    """A resumed ASHA judges new trials against the old ones, as if it had never stopped."""
    import pyarrow.fs

    from sweeper.resumable import ResumableASHA

    def asha():
        return ResumableASHA(time_attr="training_iteration", metric="val_accuracy", mode="max", max_t=8,
                             grace_period=1, reduction_factor=2)

    def rungs(scheduler):  # milestone -> {trial: value}; ASHA keeps no public view of them
        return {milestone: recorded for milestone, recorded in scheduler._brackets[0]._rungs}

    history = {"a": [0.5, 0.6, 0.7, 0.8], "b": [0.4, 0.45], "c": [0.9, 0.95, 0.96, 0.97], "d": [0.2]}
    original, resumed = asha(), asha()
    for trial_id, values in history.items():
        results = [{"training_iteration": i, "val_accuracy": v} for i, v in enumerate(values, 1)]
        folder = tmp_path / f"trial_{trial_id}"
        folder.mkdir()
        (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in results))
        storage = SimpleNamespace(trial_fs_path=str(folder), storage_filesystem=pyarrow.fs.LocalFileSystem())
        # The first session, as it ran: one result at a time.
        original.on_trial_add(None, SimpleNamespace(trial_id=trial_id, last_result={}))
        for result in results:
            original.on_trial_result(None, SimpleNamespace(trial_id=trial_id), result)
        # The resumed session: Tune adds each restored trial with its last result.
        resumed.on_trial_add(None, SimpleNamespace(trial_id=trial_id, storage=storage, last_result=results[-1]))

    assert rungs(resumed) == rungs(original)
    assert rungs(resumed)[1] == {"a": 0.5, "b": 0.4, "c": 0.9, "d": 0.2}
    assert rungs(resumed)[4] == {"a": 0.8, "c": 0.97}
