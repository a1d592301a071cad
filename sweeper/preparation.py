"""Before the first trial: the data indexed, decoded once per size and summarised; the cache
folder checked; the ImageNet weight file of every backbone found, or downloaded by Keras.
"""

from __future__ import annotations

from pathlib import Path

import ray
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from . import disk, images
from .backbones import get_backbone
from .data import DatasetIndex, build_index
from .errors import SpecError, SweeperError
from .objective import TOP_K, available
from .space import trial_count
from .spec import Range, Spec, values_of
from .units import format_size, plural
from .weight_files import fetch, find_local, missing_message


def decode_sizes(spec: Spec) -> list[int]:
    """The image sizes decoded before the first trial (a range: its smallest)."""
    image_size = spec.space.image_size
    return [int(image_size.low)] if isinstance(image_size, Range) else sorted(values_of(image_size))


def prepare_data(spec: Spec, cache_dir: Path, console: Console) -> DatasetIndex:
    """Index the data, decode every image once at each size in the space, and summarise it."""
    return decode_data(spec, index_data(spec, cache_dir), cache_dir, console)


def index_data(spec: Spec, cache_dir: Path) -> DatasetIndex:
    """The data set's index; refuses when the cache's disk cannot hold the decoded images not yet in it."""
    index = build_index(spec.data, spec.task)
    _check_objective(spec, index)
    missing = [size for size in decode_sizes(spec) if not images.cache_path(cache_dir, index, size).is_file()]
    disk.check_free(cache_dir, {"decoded images": disk.decoded_bytes(len(index.paths), missing)})
    return index


def _check_objective(spec: Spec, index: DatasetIndex) -> None:
    allowed = available(spec.task, len(index.classes))
    if spec.objective not in allowed:
        need = "exactly two classes" if spec.objective == "val_auc" else f"more than {TOP_K} classes"
        raise SpecError(f"{spec.path}: objective: {spec.objective} needs {need}; this data set has "
                        f"{len(index.classes)}; allowed here: {', '.join(allowed)}")
    seen = set(index.targets[index.indices("validation")].tolist())
    if spec.objective == "val_auc" and len(seen) < 2:  # AUC ranks one class against the other
        only = ", ".join(index.classes[int(c)] for c in sorted(seen)) or "no images"
        raise SpecError(f"{spec.path}: objective: val_auc needs both classes in the validation split; it has {only}")


def decode_data(spec: Spec, index: DatasetIndex, cache_dir: Path, console: Console) -> DatasetIndex:
    """Decode every image once at each size in the space (unreadable ones leave the index), and summarise it."""
    for size in decode_sizes(spec):
        # Read from the cache, the images advance no bar: said so, and the bar is filled once read.
        cached = images.is_decoded(cache_dir, index, size)
        label = f"reading the images decoded at {size} px from the cache" if cached else f"decoding images at {size} px"
        with _progress(console) as progress:
            task = progress.add_task(label, total=len(index.paths))
            index, _ = images.load_images(
                index, size, cache_dir, spec.data.on_bad_image, progress=lambda: progress.advance(task)
            )
            if cached:
                progress.update(task, total=len(index.paths), completed=len(index.paths))
    print_data_summary(index, console)
    return index


def check_cache_dir(cache_dir: Path) -> None:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SweeperError(f"--cache-dir {cache_dir}: cannot be the cache folder ({exc.strerror})") from None


def preview(spec: Spec, weights_dirs: tuple[str, ...], console: Console) -> DatasetIndex:
    """What `run --dry-run` checks without training: the data as it would be indexed (not decoded)
    and the weight files each pretrained backbone in the space would use. Returns the index."""
    index = build_index(spec.data, spec.task)
    print_data_summary(index, console)
    warn_missing_weights(weight_files_of(spec, weights_dirs), console)
    return index


def weight_files_of(spec: Spec, weights_dirs: tuple[str, ...]) -> dict[str, str | None]:
    """The local weight file of each pretrained backbone in the space, at each image size the data
    was decoded at, {"backbone@size": path or None}; recorded, so that a resume can check them.
    The spec's own models have no ImageNet files: `own_models.inspect` checked them."""
    if spec.weights != "imagenet":
        return {}
    found = {}
    for name in values_of(spec.space.backbone):
        backbone = get_backbone(name)
        for px in decode_sizes(spec) if backbone.pretrained and not backbone.own else ():
            local = find_local(backbone, px, weights_dirs)
            found[f"{name}@{px}"] = str(local) if local else None
    return found


def warn_missing_weights(weight_files: dict[str, str | None], console: Console) -> None:
    for name in dict.fromkeys(key.split("@")[0] for key, path in weight_files.items() if path is None):
        console.print(
            f"[yellow]warning:[/] no local ImageNet weights for {name}; `run` will have Keras download them before "
            "the sweep starts, and stop if that fails (pass --weights-dir or set $SWEEPER_WEIGHTS to use local files)"
        )


FETCH_TIMEOUT_S = 900  # ResNet50's no-top file is 94 MB


def fetch_missing_weights(weight_files: dict[str, str | None], weights_dirs: tuple[str, ...],
                           console: Console) -> dict[str, str | None]:
    """Weights no searched folder holds are downloaded by Keras before the sweep starts, in a Ray
    worker. Trials used to try this each on their own: offline, TPE kept proposing the backbone and
    most of the budget ended in errors. A failed download stops the sweep here, in one line."""
    found = dict(weight_files)
    fetch_remote = ray.remote(num_cpus=0)(fetch)
    for key in [key for key, path in found.items() if path is None]:
        name, size = key.split("@")
        backbone = get_backbone(name)
        console.print(f"{name}: no local ImageNet weights; downloading them with Keras", markup=False)
        try:
            error = ray.get(fetch_remote.remote(backbone, int(size)), timeout=FETCH_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            error = f"no answer in {FETCH_TIMEOUT_S} s"
        local = find_local(backbone, int(size), weights_dirs)
        if local is None and error:
            raise SweeperError(f"{missing_message(backbone, int(size), weights_dirs)}; "
                               f"the download failed too ({error})")
        found[key] = str(local) if local else None  # None: downloaded on another node, where trials find it
    return found


def estimate_features(spec: Spec, cache_dir: Path, *, use_feature_cache: bool, spatial_dtype: str) -> disk.FeatureEstimate:
    """Start reading the shapes of the frozen features the space can cache (in a process of its own)."""
    return disk.FeatureEstimate(spec.space, sizes=decode_sizes(spec), trials=trial_count(spec), weights=spec.weights,
                                use_feature_cache=use_feature_cache, spatial_dtype=spatial_dtype, cache_dir=cache_dir)


def check_feature_disk(spec: Spec, index: DatasetIndex, cache_dir: Path, estimate: disk.FeatureEstimate,
                       console: Console) -> dict[str, int]:
    """Refuse when the cache's disk cannot hold the frozen features this sweep may write (an upper
    bound: its largest entries, one per trial); prints and returns the cache's sizes."""
    features = estimate.bytes_at_most(len(index.paths))
    decoded = sum(images.cache_path(cache_dir, index, size).stat().st_size for size in decode_sizes(spec))
    disk.check_free(cache_dir, {"frozen features": features})
    sizes = {"decoded_bytes": decoded, "features_bytes_at_most": features, "free_bytes": disk.free_bytes(cache_dir)}
    features_text = f"frozen features up to {format_size(features)} for this sweep" if features else "no frozen features"
    console.print(f"cache: decoded images {format_size(decoded)}, {features_text}; "
                  f"{format_size(sizes['free_bytes'])} free on its disk", highlight=False)
    return sizes


def check_weight_files(sweep_dir: Path, weight_files: dict[str, str | None]) -> None:
    """Refuse, before Ray starts, to resume a sweep whose weight files have gone since it ran."""
    gone = [(key, path) for key, path in weight_files.items() if path and not Path(path).is_file()]
    if gone:
        key, path = gone[0]
        raise SweeperError(f"{sweep_dir}: the ImageNet weights this sweep used for {key.replace('@', ' at ')} px "
                           f"are gone ({path}); put the file back to resume it")


def print_data_summary(index: DatasetIndex, console: Console) -> None:
    summary = index.summary()
    kind = plural(len(index.classes), "class") if index.classes else "regression targets"
    console.print(f"data: {plural(summary['images'], 'image')}, {kind}, fingerprint {summary['fingerprint']}")
    splits = list(summary["per_split"])
    table = Table()
    if index.classes:
        table.add_column("class")
        rows = [(name, [summary["per_split"][s][name] for s in splits]) for name in index.classes]
    else:
        table.add_column("target")
        stats = ("images", "mean", "std", "min", "max", "rmse_of_train_mean")
        rows = [(stat, [summary["per_split"][s][stat] for s in splits]) for stat in stats]
    for split in splits:
        table.add_column(split, justify="right")
    for name, values in rows:
        table.add_row(Text(name), *(f"{v:g}" for v in values))  # a class name is text, not markup
    console.print(table)
    if index.skipped:
        shown = "; ".join(f"{p} ({r})" for p, r in index.skipped[:3])
        more = f" and {len(index.skipped) - 3} more, listed in data_summary.json" if len(index.skipped) > 3 else ""
        console.print(f"[yellow]skipped {plural(len(index.skipped), 'file')}[/]: {escape(shown + more)}",
                      highlight=False)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    )
