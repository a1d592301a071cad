"""Memory and time per stage on a data set larger than a quarter of the machine's memory.

Writes, once, a synthetic learnable data set of 50,000 JPEGs (stripes, horizontal or vertical,
of random frequency, phase and colours over noise; 192-256 px a side), then, for 10,000 and for
50,000 of them decoded at 224 px, runs from an empty cache:

  (a) a sweep on cached spatial features: MobileNetV2-0.35, `unfreeze: 14` (activations inside
      the backbone), 2 trials, 2 at a time, 1 epoch;
  (b) a sweep on pixels with augmentation (`augment: true`, frozen MobileNetV2-0.35), 2 trials,
      1 epoch, ended by `time_limit` where an epoch takes longer (the memory is that of steady
      streaming well before then);
  (c) `sweeper predict --format jsonl` over 20,000 of the files with the bundle exported from (a).

A sampler reads RssAnon (anonymous resident memory: what the processes themselves hold, not the
page cache of memory-mapped files) of the whole process tree every 0.5 s: the driver, Ray's
processes and every worker. Stages are told apart by what appears in the cache: the decoded
file, then the features entry, then training to the end.

Last, the 1,000-image cats_vs_dogs side by side: 8 trials x 5 epochs of frozen MobileNetV2-0.35
(and 2 x 2 of augmented ones) with inputs held in memory, sweeper's default, against streamed
from the cache files (`SWEEPER_MEMORY_BUDGET=0`).

    .venv/bin/python benchmarks/bench_memory.py [--data DIR] [--sizes 10000 50000] [--skip-cats]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from _common import CATS, SWEEPER, WEIGHTS, require_assets, run_sweeper

GIB = 2**30
IMAGE_SIZE = 224


# --- the data set -------------------------------------------------------------------------------

def _write_one(args: tuple[Path, int]) -> None:
    from PIL import Image

    root, i = args
    rng = np.random.default_rng(i)
    label = "vertical" if i % 2 else "horizontal"
    h, w = rng.integers(192, 257, 2)
    period, phase = rng.uniform(8, 40), rng.uniform(0, 2 * np.pi)
    axis = np.arange(w if label == "vertical" else h)
    wave = (np.sin(2 * np.pi * axis / period + phase) > 0).astype(np.float32)
    stripes = np.broadcast_to(wave[None, :] if label == "vertical" else wave[:, None], (h, w))
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    image = stripes[..., None] * a + (1 - stripes[..., None]) * b + rng.normal(0, 40, (h, w, 3))
    path = root / label / f"{i:06d}.jpg"
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path, quality=85)


def write_dataset(root: Path, count: int) -> list[Path]:
    """`count` JPEGs in root/horizontal and root/vertical, written once (kept for later runs)."""
    for label in ("horizontal", "vertical"):
        (root / label).mkdir(parents=True, exist_ok=True)
    missing = [i for i in range(count) if not (root / ("vertical" if i % 2 else "horizontal") / f"{i:06d}.jpg").exists()]
    if missing:
        started = time.perf_counter()
        with Pool(os.cpu_count() or 2) as pool:
            pool.map(_write_one, [(root, i) for i in missing], chunksize=256)
        print(f"wrote {len(missing):,} JPEGs to {root} in {time.perf_counter() - started:.0f} s", flush=True)
    return [root / ("vertical" if i % 2 else "horizontal") / f"{i:06d}.jpg" for i in range(count)]


def subset_csv(root: Path, files: list[Path], folder: Path) -> Path:
    csv = folder / f"images_{len(files)}.csv"
    csv.write_text("path,label\n" + "".join(f"{f.relative_to(root)},{f.parent.name}\n" for f in files))
    return csv


# --- memory of a process tree -------------------------------------------------------------------

def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def tree_rss_anon(root: int) -> int:
    """Bytes of RssAnon summed over `root` and all its descendants (Ray's processes, its workers)."""
    tree, total, stack = _children(), 0, [root]
    while stack:
        pid = stack.pop()
        stack += tree.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


class StageSampler:
    """Samples a process tree's RssAnon every 0.5 s, under the stage `stage()` names at the time."""

    def __init__(self, pid: int, stage):
        self.pid, self.stage = pid, stage
        self.peaks: dict[str, int] = {}
        self.first_seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            stage = self.stage()
            self.first_seen.setdefault(stage, time.perf_counter())
            self.peaks[stage] = max(self.peaks.get(stage, 0), tree_rss_anon(self.pid))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_sampled(command: list[str], stage, env=None, stdout=None) -> tuple[float, StageSampler, subprocess.CompletedProcess]:
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=stdout or subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "COLUMNS": "200", **(env or {})})
    sampler = StageSampler(process.pid, stage)
    out, err = process.communicate()
    sampler.stop()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        sys.exit(f"{' '.join(command[:4])} failed ({process.returncode}):\n{(out or '')[-3000:]}\n{err[-3000:]}")
    sampler.first_seen["end"] = time.perf_counter()
    return seconds, sampler, subprocess.CompletedProcess(command, 0, out, err)


# --- the stages ---------------------------------------------------------------------------------

SPEC = """\
name: {name}
data: {{csv: {csv}, images: {root}, path_column: path, target_column: label, validation_split: 0.2}}
image_size: {size}
weights: {weights}
budget: {{trials: 2, max_epochs: 1, grace_epochs: 1, concurrent_trials: 2, cpus_per_trial: 1{limit}}}
space:
  backbone: mobilenet_v2_0.35
  unfreeze: {unfreeze}
  augment: {augment}
  head: {{pooling: avg, units: [], dropout: 0.2}}
  optimizer: adam
  learning_rate: [3.0e-4, 1.0e-3]
  batch_size: 64
"""


def sweep_stage(cache: Path, features: bool):
    """decode (the driver); then, for a sweep on features, Ray's start and the workers' until the
    first chunk is claimed, and the features; then training to the end."""
    def stage() -> str:
        if not any(p for p in (cache / "images").glob("*.npy") if not p.name.endswith(".tmp.npy")):
            return "decode"
        if not features:
            return "train"
        found = list((cache / "features").glob("*")) if (cache / "features").is_dir() else []
        if not found:
            return "start"
        return "train" if any(p.is_dir() and p.suffix not in (".parts", ".tmp") for p in found) else "features"
    return stage


def run_sweep(folder: Path, name: str, csv: Path, root: Path, cache: Path, *, unfreeze: int, augment: bool,
              time_limit: int | None) -> dict:
    spec = folder / f"{name}.yaml"
    spec.write_text(SPEC.format(name=name, csv=csv, root=root, size=IMAGE_SIZE, weights=WEIGHTS, unfreeze=unfreeze,
                                augment=str(augment).lower(), limit=f", time_limit: {time_limit}s" if time_limit else ""))
    seconds, sampler, done = run_sampled(
        [*SWEEPER, "run", str(spec), "--out", str(folder / "results"), "--cache-dir", str(cache)],
        sweep_stage(cache, features=not augment))
    rows = json.loads((folder / "results" / name / "leaderboard.json").read_text())
    stages = sorted(sampler.first_seen.items(), key=lambda kv: kv[1])
    times = {stage: round(after - at, 1) for (stage, at), (_, after) in zip(stages, stages[1:])}
    return {"seconds": round(seconds, 1), "peaks": sampler.peaks, "stage_s": times, "rows": rows}


def run_predict(bundle: Path, files: list[Path], folder: Path) -> dict:
    listing = folder / "predict_files"
    listing.mkdir(exist_ok=True)
    for f in files:  # one folder of links: the command line stays short
        link = listing / f"{f.parent.name}_{f.name}"
        if not link.exists():
            link.symlink_to(f)
    with open(folder / "predictions.jsonl", "w") as out:
        seconds, sampler, _ = run_sampled([*SWEEPER, "predict", str(bundle), str(listing), "--format", "jsonl"],
                                          lambda: "predict", stdout=out)
    lines = (folder / "predictions.jsonl").read_text().splitlines()
    right = sum(json.loads(line)["label"] in Path(json.loads(line)["path"]).name for line in lines)
    return {"seconds": round(seconds, 1), "peak": sampler.peaks.get("predict", 0), "rows": len(lines), "right": right}


def gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "sweeper-bench-memory-data",
                        help="where the synthetic JPEGs are written once and kept")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--predict", type=int, default=20_000, help="files to predict")
    parser.add_argument("--time-limit", type=int, default=300, help="seconds for the augmented sweep")
    parser.add_argument("--skip-cats", action="store_true")
    args = parser.parse_args()
    require_assets()
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    files = write_dataset(args.data, max(args.sizes))
    largest = max(args.sizes) * IMAGE_SIZE * IMAGE_SIZE * 3
    print(f"machine: {os.cpu_count()} cores, {gib(memory)}; {max(args.sizes):,} images decoded at {IMAGE_SIZE} px: "
          f"{gib(largest)} ({largest / memory:.2f} of the machine's memory)", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        for n in args.sizes:
            folder = Path(tmp) / str(n)
            folder.mkdir()
            csv, cache = subset_csv(args.data, files[:n], folder), folder / "cache"
            a = run_sweep(folder, "spatial", csv, args.data, cache, unfreeze=14, augment=False, time_limit=None)
            best = max(r["val_accuracy"] or 0 for r in a["rows"])
            print(f"{n:,} images (a) spatial features: {a['seconds']} s {a['stage_s']}; peak RssAnon "
                  f"{ {k: gib(v) for k, v in a['peaks'].items()} }; best val_accuracy {best:.3f}", flush=True)
            b = run_sweep(folder, "augmented", csv, args.data, cache, unfreeze=0, augment=True,
                          time_limit=args.time_limit)
            epochs = [r["epochs"] for r in b["rows"]]
            print(f"{n:,} images (b) pixels, augmented: {b['seconds']} s {b['stage_s']}; peak RssAnon "
                  f"{ {k: gib(v) for k, v in b['peaks'].items()} }; epochs finished per trial {epochs}", flush=True)
            bundle = folder / "bundle"
            subprocess.run([*SWEEPER, "export", str(folder / "results" / "spatial"), "--out", str(bundle),
                            "--cache-dir", str(cache)], check=True, capture_output=True)
            c = run_predict(bundle, files[:args.predict], folder)
            print(f"{n:,} images (c) predict {c['rows']:,} files: {c['seconds']} s; peak RssAnon {gib(c['peak'])}; "
                  f"{c['right'] / max(1, c['rows']):.3f} right", flush=True)
            sweep_peak = max([*a["peaks"].values(), *b["peaks"].values()])
            print(f"{n:,} images: peak process-tree RssAnon: sweep {gib(sweep_peak)} (target 4 GiB), "
                  f"predict {gib(c['peak'])} (target 2 GiB)", flush=True)

        if not args.skip_cats:
            cats(Path(tmp))


CATS_SPEC = """\
name: {name}
data: {{train: {cats}/training_set, validation: {cats}/test_set}}
image_size: 160
weights: imagenet
budget: {{trials: {trials}, max_epochs: {epochs}, grace_epochs: {epochs}, concurrent_trials: 2, cpus_per_trial: 1}}
space:
  backbone: mobilenet_v2_0.35
  augment: {augment}
  head: {{pooling: avg, units: [], dropout: 0.2}}
  optimizer: adam
  learning_rate: {{low: 1.0e-4, high: 1.0e-2, log: true}}
  batch_size: 32
"""


def cats(tmp: Path) -> None:
    """Held (the default) against streamed, side by side, alternating, on cats_vs_dogs."""
    for label, trials, epochs, augment in (("frozen features", 8, 5, "false"), ("augmented pixels", 2, 2, "true")):
        spec = CATS_SPEC.format(name="cats", cats=CATS, trials=trials, epochs=epochs, augment=augment)
        times: dict[str, list[float]] = {"held": [], "streamed": []}
        for run in range(2):
            for way in ("held", "streamed"):
                os.environ.pop("SWEEPER_MEMORY_BUDGET", None)
                if way == "streamed":
                    os.environ["SWEEPER_MEMORY_BUDGET"] = "0"
                seconds, rows = run_sweeper(spec, tmp / f"cats-{label[:6]}-{way}-{run}")
                times[way].append(seconds)
                print(f"cats_vs_dogs {label} {way}: {seconds:.1f} s, best val_accuracy "
                      f"{max(r['val_accuracy'] for r in rows):.3f}", flush=True)
        os.environ.pop("SWEEPER_MEMORY_BUDGET", None)
        ratio = np.median(times["streamed"]) / np.median(times["held"])
        print(f"cats_vs_dogs {label}: streamed takes {ratio:.2f}x the time of held (medians of 2)", flush=True)


if __name__ == "__main__":
    main()
