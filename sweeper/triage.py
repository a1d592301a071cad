"""`sweeper triage`: rank the space's (backbone, cut, image size) pairs before anything trains.

Which backbone and where to cut it matter most in transfer learning, and the frozen features
they give are exactly what the feature cache already holds: triage computes them once per pair
(or finds them in the cache, where trials of `unfreeze: 0` then find them too) and scores each
in closed form (transferability.py). It trains nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from . import transferability
from .data import DatasetIndex
from .units import plural

RANKED_BY = "logme"  # "logme" or "probe"; see benchmarks/README.md (bench_search.py, triage)
PRUNE_KEEP = 0.5  # `budget.triage: prune` keeps the better half of the (backbone, cut) pairs, at least one


@dataclass(frozen=True)
class Pair:
    """What decides a trial's frozen features, apart from training: triage ranks these."""

    backbone: str
    cut: str
    image_size: int

    def label(self) -> str:
        return f"{self.backbone} {self.cut} at {self.image_size} px"


@dataclass(frozen=True)
class Ranked:
    pair: Pair
    logme: float  # higher is better
    probe: float  # held-in accuracy (higher is better) or RMSE (lower is better)
    seconds: float  # features (unless cached) and both scores
    cached: bool  # the features were in the cache already


def pairs_of(space, sizes: list[int]) -> list[Pair]:
    """Every (backbone, cut, image size) of a space; `sizes` are the image sizes the sweep decodes."""
    from .space import Range, values_of

    found = []
    for backbone in values_of(space.backbone):
        cut = space.cut_for(backbone)
        if isinstance(cut, Range):
            raise ValueError("space.cut is a range")
        found += [Pair(backbone, c, size) for c in values_of(cut) for size in sizes]
    return found


def triage(spec, index: DatasetIndex, *, cache_dir: Path, weights_dirs: tuple[str, ...], spatial_dtype: str,
           threads: int, progress=None, compute: bool = True) -> list[Ranked] | None:
    """Every pair of the spec's space scored on its frozen features of the training images, best first.

    `progress(pair, i, n)` is called before each pair. Without `compute`, from the cache alone:
    None as soon as a pair's features are not there.
    """
    from .backbones import declared
    from .native_stderr import quiet_native_stderr

    pairs = pairs_of(spec.space, _sizes(spec))
    pooling = _pooling(spec.space)
    found = []
    with declared(spec.backbones), quiet_native_stderr():  # TensorFlow's start-up lines
        from .trial import init_tensorflow

        init_tensorflow(threads)
        for i, pair in enumerate(pairs, start=1):
            if progress:
                progress(pair, i, len(pairs))
            started = time.perf_counter()
            features, cached, rows_of = pooled_features(pair, pooling, spec=spec, index=index, cache_dir=cache_dir,
                                                        weights_dirs=weights_dirs, spatial_dtype=spatial_dtype,
                                                        compute=compute)
            if features is None:
                return None
            rows = rows_of.indices("train")
            x, y = np.asarray(features[rows], np.float32), rows_of.targets[rows]
            scores = {"logme": transferability.logme(x, y, task=spec.task),
                      "probe": transferability.probe(x, y, task=spec.task, seed=spec.budget.seed or 0)}
            found.append(Ranked(pair, **scores, seconds=round(time.perf_counter() - started, 2), cached=cached))
    return sorted(found, key=lambda r: -merit(r, spec.task))


def merit(ranked: Ranked, task: str) -> float:
    """The score the ranking is by (RANKED_BY), turned so that larger is better."""
    value = getattr(ranked, RANKED_BY)
    return -value if RANKED_BY == "probe" and task == "regression" else value  # the probe's RMSE


def _pooling(space) -> str:
    """Triage scores pooled vectors: average pooling where the space has it (the default head)."""
    from .space import Range, values_of

    if isinstance(space.head_pooling, Range):
        return "avg"
    poolings = values_of(space.head_pooling)
    return "avg" if "avg" in poolings else poolings[0]


def pooled_features(pair: Pair, pooling: str, *, spec, index: DatasetIndex, cache_dir: Path,
                    weights_dirs: tuple[str, ...], spatial_dtype: str,
                    compute: bool = True) -> tuple[np.ndarray | None, bool, DatasetIndex]:
    """The frozen, pooled features of every image for `pair`, whether the cache held them, and the
    index they are rows of (unreadable images left out); without `compute`, no features where the
    cache lacks them (nothing is decoded, downloaded or computed).

    Built and keyed exactly as a trial of `unfreeze: 0` builds and keys them, so each finds the
    other's entry."""
    import keras

    from . import feature_cache, images, weight_files
    from .backbones import get_backbone
    from .model import TrialConfig, build_model, build_trial_model
    from .precision import building_in

    config = TrialConfig(backbone=pair.backbone, cut=pair.cut, image_size=pair.image_size, head_pooling=pooling,
                         unfreeze=0, unfreeze_blocks=0, augment=False)
    with building_in(spec.budget.precision):  # the sweep's trials compute in it: so do their features
        if compute:
            index, pixels = images.load_images(index, pair.image_size, cache_dir, spec.data.on_bad_image)
            model, weights_used = build_trial_model(config, task=spec.task, n_classes=len(index.classes),
                                                    weights=spec.weights, weights_dir=weights_dirs)
        else:
            weights_used = weight_files.resolve(get_backbone(pair.backbone), pair.image_size, spec.weights,
                                                weights_dirs)
            if weights_used == "imagenet" or not images.is_decoded(cache_dir, index, pair.image_size):
                return None, False, index  # weights still to download (their file is part of the key), or images to decode
            index, pixels = images.load_images(index, pair.image_size, cache_dir, spec.data.on_bad_image)
            model = build_model(config, task=spec.task, n_classes=len(index.classes), weights=weights_used)
        split = feature_cache.split_model(model)
    key = feature_cache.key_for(model, split, backbone=pair.backbone, cut=pair.cut, image_size=pair.image_size,
                                weights_used=weights_used, fingerprint=index.fingerprint, spatial_dtype=spatial_dtype)
    cached = (Path(cache_dir) / "features" / key).is_dir()
    if not (cached or compute):
        keras.backend.clear_session()
        return None, False, index
    about = {"data": index.folder, "backbone": pair.backbone, "cut": pair.cut, "unfreeze": "0",
             "image_size": pair.image_size}
    features = feature_cache.frozen_features(split.prefix, pixels, Path(cache_dir), key, about=about,
                                             spatial_dtype=spatial_dtype)
    keras.backend.clear_session()  # the next pair starts from nothing held
    return features[0], cached, index


def print_ranking(ranked: list[Ranked], *, task: str, seconds: float, console: Console) -> None:
    probe = "probe accuracy" if task == "classification" else "probe RMSE"
    table = Table(title="triage: frozen features of the training images, best first (nothing trained)",
                  title_justify="left")
    for column in ("rank", "backbone", "cut", "image_size", "LogME", probe, "seconds", "features"):
        table.add_column(column, justify="left" if column in ("backbone", "cut", "features") else "right")
    for rank, r in enumerate(ranked, start=1):
        table.add_row(str(rank), r.pair.backbone, r.pair.cut, str(r.pair.image_size), f"{r.logme:.4f}",
                      f"{r.probe:.4f}" if task == "classification" else f"{r.probe:.4g}", f"{r.seconds:.1f}",
                      "cached" if r.cached else "computed")
    console.print(table)
    computed = sum(not r.cached for r in ranked)
    console.print(f"triage: {plural(len(ranked), 'pair')} ranked in {seconds:.1f} s ({computed} computed, "
                  f"{len(ranked) - computed} from the cache)", markup=False, highlight=False)


def run_triage(spec, *, cache_dir: Path, weights_dirs: tuple[str, ...], spatial_dtype: str,
               console: Console) -> list[Ranked]:
    """`sweeper triage SPEC`: the data indexed and decoded (into the cache `run` uses), then every pair ranked."""
    from .preparation import check_cache_dir, prepare_data

    check_cache_dir(cache_dir)
    index = prepare_data(spec, cache_dir, console)
    started = time.perf_counter()
    with console.status("triage") as status:
        ranked = triage(spec, index, cache_dir=cache_dir, weights_dirs=weights_dirs, spatial_dtype=spatial_dtype,
                        threads=max(1, int(spec.budget.cpus_per_trial)),
                        progress=lambda pair, i, n: status.update(f"triage: {pair.label()} ({i} of {n})"))
    print_ranking(ranked, task=spec.task, seconds=time.perf_counter() - started, console=console)
    return ranked


def print_cached_ranking(spec, index: DatasetIndex, *, cache_dir: Path, weights_dirs: tuple[str, ...],
                         spatial_dtype: str, console: Console) -> None:
    """`sweeper run --dry-run`: the ranking when every pair's features are in the cache, else one line."""
    from .images import is_decoded

    started = time.perf_counter()
    ranked = None
    if all(is_decoded(cache_dir, index, size) for size in _sizes(spec)):  # else no features either: no TensorFlow
        with console.status("triage: reading the cached frozen features"):
            ranked = triage(spec, index, cache_dir=cache_dir, weights_dirs=weights_dirs, spatial_dtype=spatial_dtype,
                            threads=max(1, int(spec.budget.cpus_per_trial)), compute=False)
    if ranked is None:
        console.print(f"triage: not every pair's frozen features are cached yet; `sweeper triage {spec.path}` "
                      "computes them and ranks the pairs", markup=False, highlight=False)
        return
    print_ranking(ranked, task=spec.task, seconds=time.perf_counter() - started, console=console)


# --- in a sweep (`budget.triage`) --------------------------------------------------------------


def rank_for_sweep(spec, index: DatasetIndex, *, cache_dir: Path, weights_dirs: tuple[str, ...], spatial_dtype: str,
                   console: Console) -> list[Ranked]:
    """`triage` in a Ray task of the trials' size: the driver never imports TensorFlow."""
    import ray

    pairs = pairs_of(spec.space, _sizes(spec))
    threads = max(1, int(spec.budget.cpus_per_trial))
    started = time.perf_counter()
    task = ray.remote(num_cpus=spec.budget.cpus_per_trial)(triage)
    with console.status(f"triage: scoring {plural(len(pairs), '(backbone, cut, image size) pair')} on frozen features"):
        ranked = ray.get(task.remote(spec, index, cache_dir=cache_dir, weights_dirs=weights_dirs,
                                     spatial_dtype=spatial_dtype, threads=threads))
    print_ranking(ranked, task=spec.task, seconds=time.perf_counter() - started, console=console)
    return ranked


def _sizes(spec) -> list[int]:
    from .preparation import decode_sizes

    return decode_sizes(spec)


def write_ranking(ranked: list[Ranked], path: Path) -> None:
    from .files import write_atomic

    rows = [{"rank": i, **asdict(r.pair), **{k: v for k, v in asdict(r).items() if k != "pair"}}
            for i, r in enumerate(ranked, start=1)]
    write_atomic(path, json.dumps(rows, indent=1))


def read_ranking(path: Path) -> list[Ranked] | None:
    """The ranking a sweep wrote (triage.json), best first; None when it has none."""
    if not path.is_file():
        return None
    rows = sorted(json.loads(path.read_text()), key=lambda row: row["rank"])
    return [Ranked(Pair(r["backbone"], r["cut"], r["image_size"]), logme=r["logme"], probe=r["probe"],
                   seconds=r["seconds"], cached=r["cached"]) for r in rows]


def scores(ranked: list[Ranked]) -> dict[tuple, float]:
    """{(backbone, cut, image_size): the score the ranking is by}, for the leaderboard's `triage` column."""
    return {(r.pair.backbone, r.pair.cut, r.pair.image_size): getattr(r, RANKED_BY) for r in ranked}


def pruned(spec, ranked: list[Ranked]):
    """The spec with the worse (backbone, cut) pairs out of its space (`budget.triage: prune`).

    A pair's place is its best over the image sizes: a cut leaves its backbone's list, and a
    backbone with no cut left leaves the space. Run and resume apply it alike to the same ranking."""
    from dataclasses import replace

    from .space import Choice, Fixed, values_of

    order = list(dict.fromkeys((r.pair.backbone, r.pair.cut) for r in ranked))  # each at its best image size
    keep = set(order[:max(1, int(np.ceil(len(order) * PRUNE_KEEP)))])
    space = spec.space
    backbones = [b for b in values_of(space.backbone) if any(k[0] == b for k in keep)]
    cuts = dict(space.cut)
    for backbone in backbones:
        kept = [c for c in values_of(space.cut_for(backbone)) if (backbone, c) in keep]
        cuts[backbone] = Fixed(kept[0]) if len(kept) == 1 else Choice(tuple(kept))
    space = replace(space, backbone=Fixed(backbones[0]) if len(backbones) == 1 else Choice(tuple(backbones)),
                    cut={b: cuts[b] for b in backbones})
    return replace(spec, space=space)


def first_points(spec, ranked: list[Ranked], count: int) -> list[dict]:
    """Optuna parameters fixing the best `count` pairs still in the spec's space, best first, to
    enqueue: the searcher draws everything else. Only the sampled parameters are named (fixed ones
    never reach Optuna)."""
    from .space import Fixed, values_of

    space, points = spec.space, []
    for r in ranked:
        pair = r.pair
        if pair.backbone not in values_of(space.backbone) or pair.cut not in values_of(space.cut_for(pair.backbone)):
            continue  # pruned
        point = {}
        if not isinstance(space.backbone, Fixed):
            point["backbone"] = pair.backbone
        if not isinstance(space.cut_for(pair.backbone), Fixed):
            point[f"cut@{pair.backbone}"] = pair.cut
        if not isinstance(space.image_size, Fixed):
            point["image_size"] = pair.image_size
        if point and point not in points:
            points.append(point)
    return points[:count]

