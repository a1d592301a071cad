"""Durable writes of sweeper's own files, and the lock that keeps one driver per sweep.

Every file sweeper rewrites (leaderboard, sweep.json, reports, caches) is written to a temp file
of a unique name beside it, fsynced, and renamed over the old one: a reader never sees half a
file, a crash or power cut leaves the old or the new one whole, and two writers cannot delete
each other's temp file (with one fixed temp name, two drivers crashed each other).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from .errors import SweeperError


def write_atomic(path: Path, data: bytes | str) -> None:
    """Replace `path` with `data` all at once; the temp file is removed if anything fails."""
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """fsync every file and folder under `folder`, before it is renamed into place."""
    for root, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(Path(root))


LOCK_FILE = ".driver.lock"


class DriverLock:
    """An exclusive lock on a sweep folder for the life of one driver (`run` or `resume`).

    It is an flock on `<sweep>/.driver.lock`, so the kernel releases it when the driver ends in
    any way, `kill -9` included; the file names the holder (host, pid, start time) for the error
    the next driver prints. flock is per host on some network file systems: two drivers on two
    machines sharing a results folder over NFS may not see each other's lock.
    """

    def __init__(self, sweep_dir: Path):
        self.path = Path(sweep_dir) / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> DriverLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise SweeperError(
                f"{self.path.parent}: another sweeper driver is running this sweep "
                f"(host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, since {holder.get('started', '?')}); "
                "wait for it to end, or stop it with Ctrl+C"
            ) from None
        holder = {"host": socket.gethostname(), "pid": os.getpid(),
                  "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock; the file stays, naming the last holder
            self.fd = None

    def __enter__(self) -> DriverLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> dict:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}
