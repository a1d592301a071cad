"""Kill a sweep's driver with SIGKILL at random moments, resume it each time, and check what is left.

A real sweep (a small CNN on scikit-learn's digits, 2 trials at a time, ASHA, TPE) is started
with `sweeper run`, killed, resumed with `sweeper resume`, killed again, and so on; the last
resume runs to the end. Each driver is killed right after a random number (1 to 3) of new events:
a trial started or an epoch reported. Kills follow events, not the clock, so on a fast or a
slow machine every kill lands while work is left (a sweep has at least two events a trial).
The kill takes the driver alone, as a crash does: the local Ray it started stays running, and
the next `sweeper resume` must end those processes (and no others). Then it checks:

- the sweep finished with exactly `budget.trials` trials: as many leaderboard rows, all ended,
  as trial folders in the experiment, with no id twice (trials lost, trials duplicated);
- Optuna's history (the searcher's saved state) holds every trial, each finished, and no other;
- no trial that had ended before a kill reported again after it (finished trials not retrained);
- no trial ended in an error (a resumed trial finds the checkpoint its saved state names), and
  each trial folder keeps one checkpoint, its best;
- no process of the killed drivers' Ray sessions still runs.

    .venv/bin/python benchmarks/fault_injection.py [--kills 8] [--trials 16] [--seed 0]

tests/test_resume.py runs a shorter variant.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sweeper.leftovers import session_processes
from sweeper.searcher import REPEAT
from sweeper.status import ENDED

SWEEPER = [sys.executable, "-m", "sweeper"]

SPEC = """\
name: faults
task: classification
data: {{train: {digits}, validation_split: 0.2}}
image_size: 32
weights: none
budget: {{trials: {trials}, max_epochs: {epochs}, grace_epochs: 1, reduction_factor: 2, concurrent_trials: 2, seed: {seed}}}
space:
  backbone: simple_cnn
  head: {{pooling: [avg, flatten], units: [[], [32]], dropout: 0.1}}
  optimizer: [adam, rmsprop]
  learning_rate: {{low: 1.0e-4, high: 1.0e-2, log: true}}
  batch_size: [32, 64]
  schedule: [constant, cosine]
  warmup_epochs: [0, 1]
  weight_decay: [0.0, 1.0e-3]
  label_smoothing: {{low: 0.0, high: 0.2}}
"""


def inject(folder: Path, *, kills: int, trials: int, epochs: int, seed: int,
           events_per_kill: tuple[int, int] = (1, 3), say=print) -> dict:
    """Run the sweep in `folder` through `kills` SIGKILLs of its driver; returns the figures."""
    from sweeper.demo import write_digits

    if kills * events_per_kill[1] >= 2 * trials:
        raise ValueError(f"{kills} kills of up to {events_per_kill[1]} events each could outlast "
                         f"the {2 * trials} events of {trials} trials")
    folder.mkdir(parents=True, exist_ok=True)
    digits = folder / "digits"
    if not digits.is_dir():
        write_digits(digits)
    spec = folder / "spec.yaml"
    spec.write_text(SPEC.format(digits=digits, trials=trials, epochs=epochs, seed=seed))
    sweep = folder / "results" / "faults"
    rng = random.Random(seed)
    ended: dict[str, int] = {}  # trial id -> its result lines when it was first seen ended
    seen: set[str] = set()  # every event so far, across drivers
    figures = {"kills": 0, "processes_left_by_killed_drivers": 0}
    sessions: set[str] = set()  # the local Ray sessions the killed drivers had started
    started = time.perf_counter()
    command = [*SWEEPER, "run", str(spec), "--out", str(folder / "results")]
    with open(folder / "drivers.log", "a") as log:
        while figures["kills"] < kills:
            driver = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            wanted = rng.randint(*events_per_kill)
            new = _wait_for_events(driver, sweep, seen, wanted)
            if driver.poll() is not None:
                raise RuntimeError(f"the driver exited with {driver.returncode} after {new} of {wanted} new events, "
                                   f"before its kill; see {folder / 'drivers.log'}")
            figures["processes_left_by_killed_drivers"] += kill_driver(driver)
            session = (_meta(sweep).get("ray_session") or {}).get("name")
            sessions |= {session} if session else set()
            figures["kills"] += 1
            for trial_id, lines in _ended_trials(sweep).items():
                ended.setdefault(trial_id, lines)
            say(f"kill {figures['kills']} after {new} new events: {len(ended)} trials ended so far")
            command = [*SWEEPER, "resume", str(sweep)]
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True)
    figures["wall_s"] = round(time.perf_counter() - started, 1)
    # Each resume ends what the driver before it left; none of it may still run.
    figures["processes_left_after_the_resumes"] = sum(len(session_processes(name)) for name in sessions)
    figures.update(check(sweep, trials, epochs, ended))
    return figures


def _wait_for_events(driver: subprocess.Popen, sweep: Path, seen: set[str], wanted: int,
                     timeout_s: float = 600.0) -> int:
    """Poll until the driver has made `wanted` events not in `seen` (which grows), or has exited."""
    new, deadline = 0, time.monotonic() + timeout_s
    while new < wanted and driver.poll() is None:
        if time.monotonic() > deadline:
            driver.kill()
            raise RuntimeError(f"no {wanted} new events in {timeout_s:.0f} s")
        fresh = _events(sweep) - seen
        seen |= fresh
        new += len(fresh)
        time.sleep(0.05)
    return new


def _events(sweep: Path) -> set[str]:
    """What the sweep has recorded: each trial's start (its leaderboard row) and each result line
    (a line's text is unique: it carries a timestamp), so an event counts once across drivers."""
    try:
        rows = json.loads((sweep / "leaderboard.json").read_text())
    except (OSError, ValueError):
        rows = []
    events = {f"started {r['trial_id']}" for r in rows}
    for path in (sweep / "experiment").glob("trial_*/result.json"):
        try:
            lines = path.read_text().splitlines()
        except OSError:  # dropped by a resume as we read
            continue
        events.update(line for line in lines if _complete(line))
    return events


def _complete(line: str) -> bool:
    try:
        json.loads(line)
        return True
    except ValueError:  # still being written: it counts once whole
        return False


def check(sweep: Path, trials: int, epochs: int, ended_before: dict[str, int]) -> dict:
    """The final state's figures: what a resumed sweep must get right."""
    meta = json.loads((sweep / "sweep.json").read_text())
    rows = json.loads((sweep / "leaderboard.json").read_text())
    ids = [r["trial_id"] for r in rows]
    folders = sorted(p.name.removeprefix("trial_") for p in (sweep / "experiment").glob("trial_*"))
    searcher = _searcher_state(sweep / "experiment")
    study = searcher["_ot_study"]
    retrained = [t for t, lines in ended_before.items() if _result_lines(sweep, t) != lines]
    return {
        "state": meta.get("state"),
        "trials": len(rows),
        "trials_lost": max(0, trials - len({i for i, r in zip(ids, rows) if r["status"] in ENDED})),
        "trials_duplicated": len(ids) - len(set(ids)) + max(0, len(rows) - trials),
        "folders_match_rows": folders == sorted(ids),
        # A repeat the searcher refused is in its study, marked (sweeper/searcher.py): not a trial.
        "optuna_trials": sum(not t.user_attrs.get(REPEAT) for t in study.trials),
        "optuna_matches_rows": sorted(searcher["_ot_trials"]) == sorted(ids),
        "optuna_unfinished": sum(not t.state.is_finished() for t in study.trials),
        "ended_trials_retrained": len(retrained),
        # How the kills fell: trials cut off mid-training and continued from their checkpoint (in
        # another process), and ended trials whose end Tune's saved state had missed (replayed).
        "trials_continued_from_checkpoint": sum(_continued(sweep, t) for t in ids),
        "ended_trials_replayed": sum(_replayed(sweep, t) for t in ids),
        "statuses": {s: sum(r["status"] == s for r in rows) for s in sorted({r["status"] for r in rows})},
        # Superseded checkpoints are pruned by the end; the one kept is the trial's best.
        "most_checkpoints_in_a_trial": max((len(list((sweep / "experiment" / f"trial_{t}").glob("checkpoint_*")))
                                            for t in ids), default=0),
        "checkpoints_not_the_best_epoch": sum(_kept_epoch(sweep, r["trial_id"]) != r["best_epoch"]
                                              for r in rows if r.get("best_epoch")),
        # A trial continued in another driver picks its learning-rate schedule up at its epoch.
        "epochs_off_their_schedule": sum(_off_schedule(sweep, r, epochs) for r in rows),
    }


def _off_schedule(sweep: Path, row: dict, max_epochs: int) -> int:
    """The epochs of a trial that trained at another learning rate than its schedule gives."""
    from sweeper.training import learning_rate_at

    return sum(not math.isclose(r["lr"], learning_rate_at(
        r["epoch"], learning_rate=row["learning_rate"], schedule=row["schedule"],
        warmup_epochs=row["warmup_epochs"], max_epochs=max_epochs), rel_tol=1e-9)
        for r in _results(sweep, row["trial_id"]) if not r.get("replayed"))


def _kept_epoch(sweep: Path, trial_id: str) -> int | None:
    kept = sorted((sweep / "experiment" / f"trial_{trial_id}").glob("checkpoint_*/trial.json"))
    return json.loads(kept[-1].read_text())["epoch"] if kept else None


def _ended_trials(sweep: Path) -> dict[str, int]:
    try:
        rows = json.loads((sweep / "leaderboard.json").read_text())
    except (OSError, ValueError):
        return {}
    return {r["trial_id"]: _result_lines(sweep, r["trial_id"]) for r in rows if r["status"] in ENDED}


def _result_lines(sweep: Path, trial_id: str) -> int:
    """Results the trial reported, leaving out what a resume replays (without training) of an ended trial."""
    path = sweep / "experiment" / f"trial_{trial_id}" / "result.json"
    lines = path.read_text().splitlines() if path.is_file() else []
    return sum('"replayed": true' not in line for line in lines)


def _results(sweep: Path, trial_id: str) -> list[dict]:
    path = sweep / "experiment" / f"trial_{trial_id}" / "result.json"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _continued(sweep: Path, trial_id: str) -> bool:
    return len({r["pid"] for r in _results(sweep, trial_id) if not r.get("replayed")}) > 1


def _replayed(sweep: Path, trial_id: str) -> bool:
    return any(r.get("replayed") for r in _results(sweep, trial_id))


def _searcher_state(experiment: Path) -> dict:
    newest = sorted(experiment.glob("searcher-state-*.pkl"))[-1]
    with open(newest, "rb") as f:
        return pickle.load(f)


def kill_driver(driver: subprocess.Popen) -> int:
    """SIGKILL the driver alone, as a crash would; returns how many processes of its session (the
    local Ray it started) it left running. The next `sweeper resume` must end them."""
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    time.sleep(1.0)
    return sum(_session_of(int(p.name)) == driver.pid for p in Path("/proc").iterdir() if p.name.isdigit())


def _session_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def _meta(sweep: Path) -> dict:
    try:
        return json.loads((sweep / "sweep.json").read_text())
    except (OSError, ValueError):
        return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sweeper-faults-") as tmp:
        figures = inject(Path(tmp), kills=args.kills, trials=args.trials, epochs=args.epochs, seed=args.seed)
    print(json.dumps(figures, indent=1))
    ok = (figures["state"] == "finished" and figures["trials_lost"] == 0 and figures["trials_duplicated"] == 0
          and figures["folders_match_rows"] and figures["optuna_matches_rows"] and not figures["optuna_unfinished"]
          and not figures["ended_trials_retrained"] and set(figures["statuses"]) <= {"completed", "stopped"}
          and figures["most_checkpoints_in_a_trial"] == 1 and not figures["checkpoints_not_the_best_epoch"]
          and not figures["epochs_off_their_schedule"] and figures["processes_left_after_the_resumes"] == 0)
    print(f"kills survived: {figures['kills']}, trials lost: {figures['trials_lost']}, "
          f"duplicated: {figures['trials_duplicated']}, finished trials retrained: {figures['ended_trials_retrained']}, "
          f"statuses: {figures['statuses']} -> {'OK' if ok else 'FAILED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
