"""The results folder's own record of a sweep, `results/<sweep>/sweep.json`, and whether it still runs.

The driver writes `sweep.json` when a sweep starts and marks it `finished` or `interrupted` when
it ends; a driver killed outright cannot, so a `running` sweep whose driver process is gone on
this machine reads as interrupted.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

SWEEP_META = "sweep.json"


def write_meta(sweep_dir: Path, meta: dict) -> None:
    path = Path(sweep_dir) / SWEEP_META
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, path)


def read_meta(sweep_dir: Path) -> dict:
    """The sweep's record; empty when the folder has none (or a damaged one)."""
    try:
        return json.loads((Path(sweep_dir) / SWEEP_META).read_text())
    except (OSError, ValueError):
        return {}


def mark(sweep_dir: Path, state: str) -> None:
    """Record the sweep's state: `running` (with this driver's host and pid), `finished` or `interrupted`."""
    meta = read_meta(sweep_dir)
    meta["state"] = state
    if state == "running":
        meta.update(driver_host=socket.gethostname(), driver_pid=os.getpid())
    write_meta(sweep_dir, meta)


def state_of(sweep_dir: Path) -> str:
    """`running`, `finished` or `interrupted`; `unknown` for a sweep without a record of its state."""
    meta = read_meta(sweep_dir)
    state = meta.get("state", "unknown")
    if state == "running" and meta.get("driver_host") == socket.gethostname() and not alive(meta.get("driver_pid")):
        return "interrupted"
    return state


def alive(pid) -> bool:
    """Whether a process with this id runs on this machine (the feature cache asks it of chunk claimers)."""
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True
