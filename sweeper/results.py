"""The sweep folder, `results/<sweep>/`: its paths (`SweepFolder`), its own record `sweep.json`,
whether it still runs, and where its Ray Tune experiment (trial folders, checkpoints, Tune's
saved state) lives.

The driver writes `sweep.json` when a sweep starts and marks it `finished` or `interrupted` when
it ends; a driver killed outright cannot, so a `running` sweep whose driver process is gone on
this machine reads as interrupted.

The experiment is `results/<sweep>/experiment/`, or `<storage>/<sweep>` with `--storage` (a
shared path, or a URI such as s3://bucket/sweeps). It is a folder of its own because Tune, on
resume, copies the experiment folder's top-level JSON files and writes them back later, stale.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from .files import LOCK_FILE, write_atomic
from .status import SweepState

SWEEP_META = "sweep.json"
SAVED_SPEC = "spec.yaml"  # the spec as run
EXPERIMENT = "experiment"  # the Tune experiment's folder in the sweep folder, without --storage
RESULTS_FILE = "result.json"  # Tune's log of every result a trial reported, one JSON object a line
CACHE = ".cache"  # the default cache folder, beside the sweeps: they share decoded images and features


@dataclass(frozen=True)
class SweepFolder:
    """Every path of `results/<sweep>/`, named once. The experiment and the cache can live
    elsewhere (--storage, --cache-dir): those are read from what the sweep recorded."""

    path: Path

    @property
    def record(self) -> Path:
        return self.path / SWEEP_META

    @property
    def spec(self) -> Path:
        return self.path / SAVED_SPEC

    @property
    def leaderboard(self) -> Path:
        return self.path / "leaderboard.json"  # the rows; leaderboard.csv beside it is for people

    @property
    def leaderboard_csv(self) -> Path:
        return self.path / "leaderboard.csv"

    @property
    def report(self) -> Path:
        return self.path / "report"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"  # one run per trial: `tensorboard --logdir <sweep>/tensorboard`

    @property
    def optuna_journal(self) -> Path:
        return self.path / "optuna.journal"  # the trials as an Optuna study: `optuna-dashboard <sweep>/optuna.journal`

    @property
    def data_summary(self) -> Path:
        return self.path / "data_summary.json"  # the classes and splits, as indexed when the sweep started

    @property
    def evaluation(self) -> Path:
        return self.path / "evaluation"  # the best trial on the test split, as the sweep finished (evaluate.report)

    @property
    def triage(self) -> Path:
        return self.path / "triage.json"  # `budget.triage`'s ranking of (backbone, cut, image size), best first

    @property
    def ray_log(self) -> Path:
        return self.path / "ray.log"  # what Ray and Tune print, kept out of the terminal

    @property
    def lock(self) -> Path:
        return self.path / LOCK_FILE

    @property
    def remote_copies(self) -> Path:
        return self.path / ".remote"  # trial folders copied from a --storage URI

    @property
    def experiment(self) -> str:
        return experiment_of(self.path)

    @property
    def cache(self) -> Path:
        """The cache the sweep recorded, while it exists; else the default one beside the sweep
        (a moved sweep decodes its images again there)."""
        recorded = read_meta(self.path).get("options", {}).get("cache_dir")
        return Path(recorded) if recorded and Path(recorded).is_dir() else default_cache(self.path.parent)


def default_cache(out: Path) -> Path:
    """The cache of sweeps written to `out` when no --cache-dir is given."""
    return Path(out) / CACHE


def write_meta(sweep_dir: Path, meta: dict) -> None:
    write_atomic(SweepFolder(Path(sweep_dir)).record, json.dumps(meta, indent=2))


def read_meta(sweep_dir: Path) -> dict:
    """The sweep's record; empty when the folder has none (or a damaged one)."""
    try:
        return json.loads(SweepFolder(Path(sweep_dir)).record.read_text())
    except (OSError, ValueError):
        return {}


def mark(sweep_dir: Path, state: SweepState) -> None:
    """Record the sweep's state: `running` (with this driver's host and pid), `finished` or `interrupted`."""
    driver = {"driver_host": socket.gethostname(), "driver_pid": os.getpid()} if state == SweepState.RUNNING else {}
    update(sweep_dir, state=state, **driver)


def update(sweep_dir: Path, **keys) -> None:
    """Set these keys of the sweep's record."""
    write_meta(sweep_dir, {**read_meta(sweep_dir), **keys})


def state_of(sweep_dir: Path) -> SweepState:
    """`running`, `finished` or `interrupted`; `unknown` for a sweep without a record of its state."""
    meta = read_meta(sweep_dir)
    try:
        state = SweepState(meta.get("state", SweepState.UNKNOWN))
    except ValueError:  # a record someone edited
        return SweepState.UNKNOWN
    if state == SweepState.RUNNING and meta.get("driver_host") == socket.gethostname() and not alive(meta.get("driver_pid")):
        return SweepState.INTERRUPTED
    return state


def alive(pid) -> bool:
    """Whether a process with this id runs on this machine (feature-cache claimers, Ray leftovers)."""
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    try:  # a zombie has a pid but is dead (a killed child its parent has not reaped)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (not Linux): the signal said it exists


def require_sweep(sweep_dir: Path) -> dict:
    """The sweep's record; a clear error for a folder that is not a sweep."""
    from .errors import SweeperError

    meta = read_meta(sweep_dir)
    if not SweepFolder(Path(sweep_dir)).spec.is_file() or "spec_path" not in meta:
        raise SweeperError(f"{sweep_dir}: no spec.yaml or sweep.json here; is this a sweep folder (results/<sweep>)?")
    return meta


def saved_spec(sweep_dir: Path):
    """The spec the sweep was run with, read back from the sweep folder."""
    import yaml

    from .spec import parse_spec

    meta = require_sweep(sweep_dir)
    saved = SweepFolder(Path(sweep_dir)).spec
    # Relative paths in the saved spec are relative to the spec file the sweep was run from.
    return parse_spec(yaml.safe_load(saved.read_text()), Path(meta["spec_path"]))


def experiment_location(sweep_dir: Path, storage: str | None = None) -> str:
    """Where a sweep's Tune experiment goes: a local path, or a URI with --storage."""
    sweep_dir = Path(sweep_dir)
    if storage is None:
        return str(sweep_dir / EXPERIMENT)
    if "://" in storage:
        return f"{storage.rstrip('/')}/{sweep_dir.name}"
    return str(Path(storage).expanduser().resolve() / sweep_dir.name)


def experiment_of(sweep_dir: Path) -> str:
    """The sweep's Tune experiment, as recorded in sweep.json: relative to the sweep folder when
    inside it, so a moved sweep still finds its own (absolute in sweeps recorded before that)."""
    recorded = read_meta(sweep_dir).get("experiment")
    if recorded and "://" not in recorded and not Path(recorded).is_absolute():
        return str(Path(sweep_dir) / recorded)
    if recorded and ("://" in recorded or Path(recorded).exists() or not (Path(sweep_dir) / EXPERIMENT).is_dir()):
        return recorded
    return experiment_location(sweep_dir)


def recorded_experiment(sweep_dir: Path, storage: str | None) -> str:
    """What sweep.json records of `experiment_location`: relative when it is the sweep's own folder."""
    location = experiment_location(sweep_dir, storage)
    return EXPERIMENT if location == str(Path(sweep_dir) / EXPERIMENT) else location


def filesystem(location: str):
    """A pyarrow filesystem and the path in it, for a local path or a URI."""
    import pyarrow.fs

    if "://" in location:
        return pyarrow.fs.FileSystem.from_uri(location)
    return pyarrow.fs.LocalFileSystem(), location


def listing(fs, path: str) -> list:
    """The entries of a folder on a pyarrow filesystem (none when it does not exist)."""
    import pyarrow.fs

    return fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))


def trial_folder(sweep_dir: Path, trial_id: str) -> Path:
    """A trial's folder (result.json, checkpoints) on this machine; a remote experiment's is copied
    into `<sweep>/.remote/` first."""
    location = experiment_of(sweep_dir)
    if "://" not in location:
        return Path(location) / f"trial_{trial_id}"
    import pyarrow.fs

    fs, path = filesystem(location)
    local = SweepFolder(Path(sweep_dir)).remote_copies / f"trial_{trial_id}"
    if not local.is_dir() or state_of(sweep_dir) != SweepState.FINISHED:  # a running sweep's trials change
        local.mkdir(parents=True, exist_ok=True)
        pyarrow.fs.copy_files(f"{path}/trial_{trial_id}", str(local), source_filesystem=fs,
                              destination_filesystem=pyarrow.fs.LocalFileSystem())
    return local


def trial_results(experiment: str, trial_id: str) -> list[dict]:
    """Every result a trial of the experiment (a path or a URI) reported."""
    fs, path = filesystem(experiment)
    return read_results(f"{path}/trial_{trial_id}", fs)


def read_results(trial_path, fs=None) -> list[dict]:
    """The results in a trial folder's result.json, on `fs` (default: this machine's files); a line
    cut short by a kill or still being written is skipped."""
    import pyarrow.fs

    fs = fs or pyarrow.fs.LocalFileSystem()
    try:
        with fs.open_input_stream(Path(trial_path, RESULTS_FILE).as_posix()) as stream:
            lines = stream.readall().decode(errors="replace").splitlines()
    except (FileNotFoundError, OSError):
        return []
    results = []
    for line in lines:
        try:
            results.append(json.loads(line))
        except ValueError:
            continue
    return results
