"""Trial statuses and sweep states are named types that read and write as their plain words."""

from __future__ import annotations

import json

from sweeper import results
from sweeper.status import ENDED, FAILED, FINISHED, SweepState, TrialStatus


def test_a_status_is_its_word_in_json_in_text_and_as_a_key():
    row = {"status": TrialStatus.STOPPED}
    assert json.dumps(row) == '{"status": "stopped"}'
    read_back = json.loads(json.dumps(row))["status"]
    assert read_back == TrialStatus.STOPPED and TrialStatus(read_back) is TrialStatus.STOPPED
    assert f"{TrialStatus.ERROR}" == str(TrialStatus.ERROR) == "error" and f"{TrialStatus.ERROR:>6}" == " error"
    assert {TrialStatus.RUNNING: "cyan"}.get("running") == "cyan"  # a row read from JSON finds its style
    assert set(ENDED) == {*FINISHED, *FAILED, TrialStatus.INFEASIBLE} and TrialStatus.RUNNING not in ENDED


def test_the_recorded_state_of_a_sweep_is_a_sweep_state(tmp_path):
    assert results.state_of(tmp_path) is SweepState.UNKNOWN  # no sweep.json
    results.mark(tmp_path, SweepState.FINISHED)
    assert json.loads((tmp_path / "sweep.json").read_text())["state"] == "finished"
    assert results.state_of(tmp_path) is SweepState.FINISHED
    results.mark(tmp_path, SweepState.RUNNING)  # by this process, which is alive
    assert results.state_of(tmp_path) is SweepState.RUNNING
    results.update(tmp_path, driver_pid=2**22 + 12345)  # a driver that is gone
    assert results.state_of(tmp_path) is SweepState.INTERRUPTED
    results.update(tmp_path, state="paused")  # a state no release wrote
    assert results.state_of(tmp_path) is SweepState.UNKNOWN


def test_the_sweep_folder_reads_its_cache_from_what_the_sweep_recorded(tmp_path):
    """`--cache-dir` recorded in sweep.json is the cache export reads; a moved sweep without it
    falls back to the default beside the sweep instead of failing."""
    sweep = results.SweepFolder(tmp_path / "results" / "mine")
    sweep.path.mkdir(parents=True)
    elsewhere = tmp_path / "fast-disk" / "cache"
    elsewhere.mkdir(parents=True)
    results.write_meta(sweep.path, {"options": {"cache_dir": str(elsewhere)}, "experiment": "experiment"})
    assert sweep.cache == elsewhere and sweep.record == sweep.path / "sweep.json"
    assert sweep.experiment == str(sweep.path / "experiment")
    elsewhere.rmdir()
    assert sweep.cache == tmp_path / "results" / ".cache" == results.default_cache(tmp_path / "results")
