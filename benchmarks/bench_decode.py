"""Decoding a data set: straight into the cache's .npy file (sweeper) against decoding into memory,
dropping unreadable files with a copy, then saving (how sweeper did it before, and what a script
does by hand). Side by side in one run, alternating, on the same files with one unreadable file
among them; prints the time and Python's peak allocations of each, and their ratios.

    .venv/bin/python benchmarks/bench_decode.py [--size 160] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _common import CATS, require_assets

from sweeper import images


def in_memory(paths: list[str], size: int, target: Path) -> dict[int, str]:
    """The whole set in one array, decoded in parallel; bad rows dropped by a copy; then saved."""
    out = np.zeros((len(paths), size, size, 3), dtype=np.uint8)
    bad: dict[int, str] = {}

    def work(i: int) -> None:
        try:
            out[i] = images.decode(paths[i], size)
        except Exception as exc:  # PIL raises many types for broken files
            bad[i] = f"{type(exc).__name__}"

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(work, range(len(paths))))
    if bad:
        out = out[np.array([i not in bad for i in range(len(paths))])]
    with open(target, "wb") as f:
        np.save(f, out)
        f.flush()
        os.fsync(f.fileno())
    return bad


def measure(run) -> tuple[float, int]:
    tracemalloc.start()
    started = time.perf_counter()
    run()
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    require_assets()
    with tempfile.TemporaryDirectory() as folder:
        broken = Path(folder) / "broken.jpg"
        broken.write_bytes(b"not a jpeg")
        paths = sorted(str(p) for p in CATS.rglob("*.jpg"))
        paths.insert(len(paths) // 2, str(broken))
        data_mb = len(paths) * args.size**2 * 3 / 2**20
        print(f"{len(paths)} files (one unreadable) at {args.size} px: {data_mb:.0f} MB decoded")
        images.decode_all(paths[:8], args.size, Path(folder) / "warm-up.npy")  # imports, thread start-up
        figures: dict[str, list[tuple[float, int]]] = {"in memory": [], "sweeper": []}
        for repeat in range(args.repeats):
            order = ("in memory", "sweeper") if repeat % 2 == 0 else ("sweeper", "in memory")
            for name in order:
                target = Path(folder) / f"{name.replace(' ', '_')}.npy"
                if name == "sweeper":
                    figures[name].append(measure(lambda t=target: images.decode_all(paths, args.size, t)))
                else:
                    figures[name].append(measure(lambda t=target: in_memory(paths, args.size, t)))
                target.unlink()
        medians = {name: (float(np.median([s for s, _ in runs])), max(p for _, p in runs)) for name, runs in figures.items()}
        for name, (seconds, peak) in medians.items():
            print(f"  {name:9s}  {seconds:6.2f} s (median of {args.repeats})  peak Python allocations "
                  f"{peak / 2**20:7.1f} MB ({peak / 2**20 / data_mb:.2f}x the data set)")
        (s_new, p_new), (s_old, p_old) = medians["sweeper"], medians["in memory"]
        print(f"sweeper decode: {s_new / s_old:.2f}x the time of decoding in memory, {p_new / p_old:.3f}x its peak memory")


if __name__ == "__main__":
    main()
