"""What the benchmark scripts share: where the real assets are, and running `sweeper run` timed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"
WEIGHTS = ASSETS / "weights"
CATS = ASSETS / "datasets" / "cats_vs_dogs"
SWEEPER = [sys.executable, "-m", "sweeper"]


CATS_SPEC = """\
name: {name}
data:
  train: {cats}/training_set
  validation: {cats}/test_set
image_size: {size}
weights: imagenet
budget: {{trials: {trials}, max_epochs: {epochs}, grace_epochs: {epochs}, concurrent_trials: 2, cpus_per_trial: 1}}
space:
  backbone: mobilenet_v2_0.35
  unfreeze: {unfreeze}
  head: {{pooling: avg, units: {units}, dropout: 0.2}}
  optimizer: adam
  learning_rate: {{low: 1.0e-4, high: {lr_high}, log: true}}
  batch_size: 32
"""


def cats_spec(name: str, *, size: int, trials: int, epochs: int, unfreeze: int = 0, units: str = "[]",
              lr_high: float = 1e-2) -> str:
    """A spec sweeping MobileNetV2-0.35's learning rate on cats_vs_dogs, 2 trials at a time, no early stopping."""
    return CATS_SPEC.format(name=name, cats=CATS, size=size, trials=trials, epochs=epochs, unfreeze=unfreeze,
                            units=units, lr_high=lr_high)


def require_assets() -> None:
    if not (WEIGHTS.is_dir() and CATS.is_dir()):
        sys.exit(f"the real assets are not at {ASSETS}; benchmarks need ../shared/assets beside the repo")


def run_sweeper(spec_text: str, folder: Path, *extra: str, cpu: CpuSampler | None = None) -> tuple[float, list[dict]]:
    """Run `sweeper run` on a spec in a fresh folder; returns its wall time and leaderboard rows.

    With `cpu`, the machine's CPU use is sampled while it runs.
    """
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "spec.yaml"
    spec.write_text(spec_text)
    out = folder / "results"
    command = [*SWEEPER, "run", str(spec), "--out", str(out), "--weights-dir", str(WEIGHTS), *extra]
    started = time.perf_counter()
    if cpu:
        cpu.start()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    seconds = time.perf_counter() - started
    if cpu:
        cpu.stop()
    if done.returncode != 0:
        sys.exit(f"sweeper run failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    name = next(p for p in out.iterdir() if not p.name.startswith("."))
    return seconds, json.loads((name / "leaderboard.json").read_text())


class CpuSampler:
    """Samples the whole machine's CPU use from /proc/stat (Linux) while a sweep runs.

    `share()` is the busy share of all cores over the whole run; `share(trials=True)` only over
    the samples taken while at least one trial worker (a `ray::ImplicitFunc` process) was alive.
    """

    def __init__(self, interval: float = 0.25):
        self.interval = interval
        self.samples: list[tuple[float, float, bool]] = []  # (busy, total, trial workers alive)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.samples.clear()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def share(self, trials: bool = False) -> float:
        kept = [(busy, total) for busy, total, alive in self.samples if alive or not trials]
        total = sum(t for _, t in kept)
        return sum(b for b, _ in kept) / total if total else float("nan")

    def summary(self) -> str:
        return (f"CPU use {self.share() * 100:.0f} % of all cores over the run, "
                f"{self.share(trials=True) * 100:.0f} % while trial workers were alive")

    def _run(self) -> None:
        previous = _cpu_times()
        while not self._stop.wait(self.interval):
            now = _cpu_times()
            busy, total = now[0] - previous[0], now[1] - previous[1]
            self.samples.append((busy, total, _trial_workers_alive()))
            previous = now


def _cpu_times() -> tuple[float, float]:
    fields = [float(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _trial_workers_alive() -> bool:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"ray::ImplicitFunc" in cmdline.read_bytes():
                return True
        except OSError:
            continue
    return False
