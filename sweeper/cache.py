"""The cache folder's entries: decoded images and frozen features, each with a manifest that says
what it holds and when it was last used; listed, held by the processes using them, and pruned.

An entry is a decoded data set (`images/<name>.npy`) or a frozen-features entry
(`features/<key>/`); beside it, `<entry>.json` is its manifest. A process that uses an entry
holds a shared lock on the manifest until it exits, so `prune` (which takes it exclusively, without
waiting) never removes what a running sweep reads. Removing happens under the entry's creation
lock too: nobody can be between finding an entry and holding it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from .files import write_atomic

_HELD: dict[str, int] = {}  # manifest path -> the open file this process holds it through


@dataclass(frozen=True)
class Entry:
    path: Path  # the .npy file or the features folder
    kind: str  # "decoded" or "features"
    about: dict  # the manifest ({} for an entry made before manifests were written)
    size: int  # bytes on disk
    last_used: float  # seconds since the epoch

    @property
    def manifest(self) -> Path:
        return manifest_of(self.path)

    @property
    def lock(self) -> Path:
        return Path(f"{self.path}.lock")

    @property
    def files(self) -> list[Path]:
        """Everything that belongs to the entry, the manifest last (the mark of a whole entry)."""
        skipped = self.about.get("skipped_file")  # the unreadable files found as it was decoded
        return [self.path, *([self.path.with_name(skipped)] if skipped else []), self.manifest]

    def describe(self) -> str:
        a = self.about
        if self.kind == "decoded":
            return f"images at {a.get('image_size', '?')} px"
        if not a:
            return "frozen features"
        return f"{a.get('backbone')} {a.get('cut')} unfreeze {a.get('unfreeze')} at {a.get('image_size')} px"


def manifest_of(path: Path) -> Path:
    path = Path(path)
    return path.with_suffix(".json") if path.suffix == ".npy" else path.with_name(f"{path.name}.json")


def write_manifest(path: Path, about: dict) -> None:
    write_atomic(manifest_of(path), json.dumps(about))


def hold(path: Path) -> None:
    """Hold the entry at `path` for the rest of this process (a shared lock on its manifest), and
    mark it used now. Call it under the entry's creation lock, once the entry is known to exist."""
    manifest = manifest_of(path)
    if str(manifest) in _HELD:
        _touch(manifest)
        return
    if not manifest.exists() and Path(path).exists():  # made by an older version: give it a manifest now
        write_manifest(path, {})
    try:
        fd = os.open(manifest, os.O_RDONLY)
    except FileNotFoundError:  # removed a moment ago: this process keeps its mapped copy
        return
    fcntl.flock(fd, fcntl.LOCK_SH)
    _HELD[str(manifest)] = fd
    _touch(manifest)


def release_all() -> None:
    """Let go of every entry this process holds (as its end would): for a long-lived process that
    has finished with its sweeps, and for tests."""
    while _HELD:
        os.close(_HELD.popitem()[1])


def _touch(manifest: Path) -> None:
    try:
        os.utime(manifest)
    except OSError:
        pass  # read-only cache: last-used times stay as they were


def entries(cache_dir: Path) -> list[Entry]:
    """Every whole entry in the cache, least recently used first. Work in progress is left out, and
    so is a file without a manifest: sweeper's entries have one (an older version's gets one when
    next used), so such a file is someone else's, never listed, never removed."""
    cache_dir = Path(cache_dir)
    found = []
    for path in sorted((cache_dir / "images").glob("*.npy")):
        if not path.name.endswith(".tmp.npy"):
            found.append(_entry(path, "decoded", lambda p: p.stat().st_size))
    for path in sorted((cache_dir / "features").glob("*")):
        if path.is_dir() and path.suffix not in (".parts", ".tmp"):
            found.append(_entry(path, "features", lambda p: sum(f.stat().st_size for f in p.rglob("*") if f.is_file())))
    return sorted((e for e in found if e is not None), key=lambda e: e.last_used)


def _entry(path: Path, kind: str, size) -> Entry | None:
    manifest = manifest_of(path)
    try:
        about = json.loads(manifest.read_text())
        return Entry(path, kind, about if isinstance(about, dict) else {}, size(path), manifest.stat().st_mtime)
    except (OSError, ValueError):
        return None


def in_use(entry: Entry) -> bool:
    """Whether a running process holds the entry (probed without waiting)."""
    try:
        fd = os.open(entry.manifest, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def remove(entry: Entry) -> bool:
    """Remove an entry no process holds; False (and nothing removed) when one does or is making it."""
    try:
        with FileLock(str(entry.lock), timeout=0):
            fd = os.open(entry.manifest, os.O_RDONLY | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            try:
                for path in entry.files:
                    if path.is_dir():
                        shutil.rmtree(path)
                    else:
                        path.unlink(missing_ok=True)
            finally:
                os.close(fd)
    except Timeout:
        return False
    return True  # the empty lock file stays: a process waiting on it must lock the file others will


def prune(cache_dir: Path, *, max_size: int | None = None, older_than: float | None = None,
          now: float | None = None) -> tuple[list[Entry], list[Entry]]:
    """Remove entries last used more than `older_than` seconds ago, then the least recently used
    until the cache is within `max_size` bytes; entries in use stay. Returns (removed, kept in use)."""
    now = time.time() if now is None else now
    every = entries(cache_dir)
    total = sum(e.size for e in every)
    removed, busy = [], []
    for entry in every:  # least recently used first
        old = older_than is not None and now - entry.last_used > older_than
        over = max_size is not None and total > max_size
        if not (old or over):
            continue
        if remove(entry):
            removed.append(entry)
            total -= entry.size
        else:
            busy.append(entry)
    return removed, busy


def show(cache_dir: Path, console) -> None:
    """`sweeper cache list`: a row per entry, least recently used first, and the total."""
    from datetime import datetime

    from rich.table import Table
    from rich.text import Text

    from .units import format_size, plural

    found = entries(cache_dir)
    if not found:
        console.print(f"{cache_dir}: no cache entries", markup=False, highlight=False)
        return
    table = Table(title=f"{cache_dir}: least recently used first", title_justify="left")
    for name, right in (("entry", False), ("data set", False), ("holds", False), ("images", True),
                        ("size", True), ("last used", False), ("in use", False)):
        table.add_column(name, justify="right" if right else "left", overflow="fold")
    for entry in found:
        images = entry.about.get("images")
        table.add_row(Text(str(entry.path.relative_to(cache_dir))), Text(str(entry.about.get("data", "?"))),
                      Text(entry.describe()), "" if images is None else f"{images:,}", format_size(entry.size),
                      datetime.fromtimestamp(entry.last_used).strftime("%Y-%m-%d %H:%M"),
                      "yes" if in_use(entry) else "")
    console.print(table)
    console.print(f"{plural(len(found), 'entry')}, {format_size(sum(e.size for e in found))}", highlight=False)


def prune_and_say(cache_dir: Path, console, *, max_size: int | None = None, older_than: float | None = None) -> None:
    """`sweeper cache prune`, and a sweep's size cap: remove, then say what went and what stayed."""
    from .units import format_size, plural

    removed, busy = prune(cache_dir, max_size=max_size, older_than=older_than)
    freed = sum(e.size for e in removed)
    line = f"cache {cache_dir}: removed {plural(len(removed), 'entry')} ({format_size(freed)})"
    if busy:
        line += f"; kept {len(busy)} that running sweeps use ({format_size(sum(e.size for e in busy))})"
    if removed or busy:
        console.print(line, markup=False, highlight=False)
