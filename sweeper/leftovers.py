"""The local Ray processes a killed driver leaves behind, and ending them (those, and no others).

A driver started without `--address` starts its own Ray: a GCS server, a raylet, a dashboard,
monitors, and the workers and agents under the raylet. `kill -9` of the driver leaves them all
running (about ten processes, some ignoring SIGTERM), holding memory and CPU. `ray stop --force`
would end them, and also every other Ray on the machine, other users' included. So the driver
records its Ray session's name in sweep.json, and `sweeper resume` ends exactly the processes
whose command line names that session, with their descendants (Linux; elsewhere nothing is done).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

from .private_apis import ray_node
from .results import alive


def current_session() -> dict | None:
    """This process's local Ray session, to record: {"host", "name"}; None without one."""
    name = getattr(ray_node(), "session_name", None)
    return {"host": socket.gethostname(), "name": name} if name else None


def end_session(recorded: dict | None, grace_s: float = 3.0) -> int:
    """End the recorded session's processes on this host (SIGTERM, then SIGKILL after `grace_s`);
    returns how many there were. A session of another host, or the one this process is attached
    to, is left alone."""
    if not recorded or recorded.get("host") != socket.gethostname() or not recorded.get("name"):
        return 0
    attached = current_session()
    if attached and attached["name"] == recorded["name"]:
        return 0
    found = session_processes(recorded["name"])
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in found:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + grace_s
        while sig == signal.SIGTERM and time.monotonic() < deadline and any(alive(p) for p in found):
            time.sleep(0.1)
    return len(found)


def session_processes(name: str) -> list[int]:
    """Processes whose command line names the session, and all their descendants."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    parent: dict[int, int] = {}
    named: set[int] = set()
    uid = os.getuid()
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue  # never someone else's
            stat = (entry / "stat").read_text()
            parent[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            if name.encode() in (entry / "cmdline").read_bytes():
                named.add(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = set(named), set(named)
    while frontier:
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier and pid not in found}
        found |= frontier
    return sorted(found)
