"""The `sweeper` command line. Exit codes: 0 success, 2 bad input (one line, no traceback), 130 interrupted
(Ctrl+C; a sweep prints its `sweeper resume` command), 1 a bug."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from rich.console import Console
from rich.text import Text

from . import __version__
from .errors import SweeperError
from .versions import DISTRIBUTION

# Each command's --help ends with its own examples; `sweeper --help` shows the first of each.
# (command line, what it does); tests/test_cli.py parses every line with the real parser.
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "demo": [
        ("sweeper demo", "a whole sweep on real digits, offline"),
        ("sweeper demo --weights-dir ~/keras-weights", "with ImageNet weights found, it sweeps a MobileNetV2 too"),
        ("sweeper demo --out /tmp/demo-results", "its data, sweep and bundle under /tmp/demo-results"),
    ],
    "run": [
        ("sweeper run search_spaces/quickstart.yaml --trials 8 --max-epochs 4", ""),
        ("sweeper run search_spaces/cats_vs_dogs.yaml --dry-run", "the space, ASHA's rungs, the epochs it would train"),
        ("sweeper run search_spaces/cats_vs_dogs.yaml --weights-dir ~/keras-weights --warm-start results/", ""),
        ("sweeper run search_spaces/cats_vs_dogs.yaml --address 10.0.0.5:6379 --storage /shared/sweeps", ""),
    ],
    "triage": [
        ("sweeper triage search_spaces/cats_vs_dogs.yaml", "backbones and cuts ranked, nothing trained"),
        ("sweeper triage search_spaces/inception_v3_mixed7.yaml --weights-dir ~/keras-weights", ""),
    ],
    "resume": [
        ("sweeper resume results/cats-vs-dogs", "after Ctrl+C, a crash or a lost driver"),
        ("sweeper resume results/cats-vs-dogs --trials 40", "a finished sweep goes on to 40 trials in all"),
        ("sweeper resume results/cats-vs-dogs --address 10.0.0.5:6379", "on a Ray cluster"),
    ],
    "leaderboard": [
        ("sweeper leaderboard results/cats-vs-dogs --top 5", ""),
        ("sweeper leaderboard results/cats-vs-dogs --format md --sort=-learning_rate", ""),
        ("sweeper leaderboard results/ --where backbone=resnet50 --where status=completed --sort latency_ms", ""),
    ],
    "report": [
        ("sweeper report results/cats-vs-dogs", "charts and one report.html in results/cats-vs-dogs/report/"),
        ("sweeper report results/face-counting", "a regression sweep: its RMSE in place of accuracy"),
    ],
    "export": [
        ("sweeper export results/cats-vs-dogs --out bundles/cats-vs-dogs --int8", ""),
        ("sweeper export results/cats-vs-dogs --top 3 --out bundles/cats-vs-dogs-top3", "the 3 best trials, averaged"),
        ("sweeper export results/cats-vs-dogs --out bundles/phone --max-tflite-ms 5 --max-size-mb 4", ""),
        ("sweeper export results/cats-vs-dogs --out bundles/cats-vs-dogs --force --mlflow sqlite:///mlflow.db", ""),
    ],
    "predict": [
        ("sweeper predict bundles/cats-vs-dogs photos/ cat.jpg", "a table of labels and confidences"),
        ("sweeper predict bundles/cats-vs-dogs photos/ --format csv", "rows as each batch is ready"),
    ],
    "backbones": [
        ("sweeper backbones", "the registry: cut points, input sizes, weights found locally"),
        ("sweeper backbones mobilenet_v2_0.35 inception_v3", "those entries only"),
        ("sweeper backbones --measure --size 160 mobilenet_v2_0.35 efficientnet_v2_b0 resnet50", "CPU latency here"),
    ],
    "cache": [
        ("sweeper cache list", "decoded images and frozen features in results/.cache"),
        ("sweeper cache prune --max-size 20GB --older-than 30d", ""),
        ("sweeper cache prune --older-than 12h --cache-dir /shared/cache", "entries a running sweep uses are kept"),
        ("sweeper cache list --cache-dir /shared/cache", ""),
    ],
}


def _epilog(examples: list[tuple[str, str]]) -> str:
    """An "examples:" block: a command a line, what it does after it."""
    lines = [f"  {command:<46}  # {what}" if what else f"  {command}" for command, what in examples]
    return "examples:\n" + "\n".join(lines) + "\n"


def _examples_of(command: str, action: str | None = None) -> dict:
    """The keywords that end a command's --help with its examples (or those of one of its actions)."""
    examples = [e for e in EXAMPLES[command] if action is None or e[0].startswith(f"sweeper {command} {action}")]
    return {"epilog": _epilog(examples), "formatter_class": argparse.RawDescriptionHelpFormatter}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit 2, like every other bad input
        raise SweeperError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sweeper",
        description="Hyperparameter sweeps for image transfer learning: Ray Tune, Optuna TPE and ASHA "
        "over pretrained Keras backbones.",
        epilog=_epilog([examples[0] for examples in EXAMPLES.values()]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sweeper {__version__} (the {DISTRIBUTION} distribution)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    run = commands.add_parser("run", help="run the sweep a spec file declares", **_examples_of("run"))
    run.add_argument("spec", type=Path, help="the spec file (YAML)")
    run.add_argument("--out", type=Path, default=Path("results"), help="results folder (default: results/)")
    run.add_argument("--trials", type=int, help="override budget.trials")
    run.add_argument("--max-epochs", type=int, help="override budget.max_epochs")
    run.add_argument("--name", help="override the sweep's name (its folder under --out)")
    run.add_argument("--address", help="attach to a running Ray cluster, e.g. 10.0.0.5:6379 or auto")
    run.add_argument("--mlflow", metavar="URI", help="also log the sweep to MLflow (override tracking.mlflow), e.g. "
                     "sqlite:///mlflow.db or http://127.0.0.1:5000")
    run.add_argument("--storage", metavar="PATH_OR_URI",
                     help="where the Ray Tune experiment (trial folders, checkpoints) goes: a path every node "
                          "sees, or a URI such as s3://bucket/sweeps (default: <out>/<sweep>/experiment)")
    run.add_argument("--warm-start", metavar="DIR", type=Path,
                     help="begin with the best configurations of the earlier sweeps in DIR (a results folder): "
                          "those of the same data first, then of the nearest data by triage (override warm_start)")
    run.add_argument("--dry-run", action="store_true",
                     help="print the space's size, the ASHA rungs, the epochs the sweep would train, the data "
                          "summary and any backbone without local weights, then stop (nothing is written)")
    run.add_argument("--no-feature-cache", dest="feature_cache", action="store_false",
                     help="train every trial on images, recomputing frozen layers each epoch (slower; for comparisons)")
    run.add_argument("--fresh-workers", dest="reuse_workers", action="store_false",
                     help="start a new worker process for every trial instead of reusing warm ones (slower; for comparisons)")
    run.add_argument("--spatial-features", choices=("float16", "float32"), default="float16",
                     help="how cached activations inside a backbone (unfreeze > 0) are stored: float16 (default) "
                          "takes half the disk and memory, float32 is exact")
    run.add_argument("--cache-max-size", type=_size("--cache-max-size"), metavar="SIZE",
                     help="keep the cache within SIZE (e.g. 50GB) when the sweep starts and ends, removing the "
                          "least recently used entries no running sweep uses")
    _add_common(run)

    triage = commands.add_parser("triage", help="rank the space's (backbone, cut, image size) pairs on their frozen "
                                 "features, training nothing", **_examples_of("triage"))
    triage.add_argument("spec", type=Path, help="the spec file (YAML)")
    triage.add_argument("--out", type=Path, default=Path("results"),
                        help="the results folder whose cache it fills (default: results/)")
    _add_common(triage)

    resume = commands.add_parser("resume", help="continue an interrupted sweep where it stopped, or extend a "
                                 "finished one", **_examples_of("resume"))
    resume.add_argument("sweep", type=Path, help="the sweep's folder, results/<sweep>")
    resume.add_argument("--address", help="the Ray cluster to continue on (default: the one it ran on, or local)")
    resume.add_argument("--trials", type=int, metavar="N",
                        help="the new total of trials, more than the sweep has: the searcher goes on from its "
                             "history, ASHA from its rungs, and no configuration is tried twice")

    board = commands.add_parser("leaderboard", help="show a sweep's trials, best first", **_examples_of("leaderboard"))
    board.add_argument("sweep", type=Path,
                       help="a sweep folder, results/<sweep>; or a folder of sweeps, merged with a `sweep` column")
    board.add_argument("--top", type=_at_least_1, metavar="K", help="show only the K best trials")
    board.add_argument("--sort", metavar="COL", help="sort by this column, ascending; descending with a minus: --sort=-learning_rate")
    board.add_argument("--where", metavar="COL=VALUE", action="append", default=[],
                       help="keep rows where COL matches; also !=, <, <=, >, >=; repeat to combine: "
                            "--where backbone=resnet50 --where 'val_accuracy>=0.9'")
    board.add_argument("--format", choices=("table", "csv", "json", "md"), default="table")

    report = commands.add_parser("report", help="write charts and a self-contained report.html for a sweep",
                                 **_examples_of("report"))
    report.add_argument("sweep", type=Path, help="a sweep folder, results/<sweep>")

    export = commands.add_parser("export", help="write the best trial (or the K best, averaged) as a deployable bundle",
                                 **_examples_of("export"))
    export.add_argument("sweep", type=Path, help="a sweep folder, results/<sweep>")
    export.add_argument("--out", type=Path, required=True, help="the bundle's folder (it must not exist, unless --force)")
    export.add_argument("--trial", metavar="ID", help="export this trial instead of the best")
    export.add_argument("--top", type=_at_least_1, default=1, metavar="K", help="average the K best trials into one model")
    export.add_argument("--int8", action="store_true", help="also write model_int8.tflite, calibrated on training images")
    export.add_argument("--int8-max-drop", type=_number(zero_allowed=True), metavar="POINTS",
                        help="refuse the bundle when the int8 model loses more than POINTS points of validation "
                             "accuracy (for regression: percent of RMSE) against the float one (default 1.0)")
    export.add_argument("--force", action="store_true", help="replace the bundle at --out")
    export.add_argument("--cache-dir", type=Path, help="the sweep's cache folder (default: <results>/.cache)")
    export.add_argument("--mlflow", metavar="URI", help="also log the bundle to this MLflow tracking URI, as a run "
                        "under the sweep's (pip install 'sweeper-tune[mlflow]')")
    export.add_argument("--max-latency-ms", type=_number(zero_allowed=False), metavar="MS",
                        help="the best trial whose latency_ms (CPU, one image, in TensorFlow) is at most MS")
    export.add_argument("--max-tflite-ms", type=_number(zero_allowed=False), metavar="MS",
                        help="the best trial whose model.tflite takes at most MS per image in LiteRT on 1 thread "
                             "(tflite_ms; measured here, best first, where the sweep did not bound it)")
    export.add_argument("--max-size-mb", type=_number(zero_allowed=False), metavar="MB", help="the best trial of at most MB (size_mb)")
    export.add_argument("--max-params", type=_number(zero_allowed=False), metavar="N", help="the best trial of at most N parameters")

    predict = commands.add_parser("predict", help="label images (or predict values) with an exported bundle",
                                  **_examples_of("predict"))
    predict.add_argument("bundle", type=Path, help="a folder written by `sweeper export`")
    predict.add_argument("images", type=Path, nargs="+", metavar="IMAGE_OR_FOLDER", help="image files or folders of them")
    predict.add_argument("--format", choices=("table", "csv", "json", "jsonl"), default="table",
                         help="csv, json and jsonl (a JSON object a line) are written as they are predicted")

    backbones = commands.add_parser("backbones", help="list the backbone registry: cut points, input sizes, "
                                                      "weights; --measure: each one's CPU latency here",
                                    **_examples_of("backbones"))
    backbones.add_argument("names", nargs="*", metavar="BACKBONE", help="only these entries")
    backbones.add_argument("--measure", action="store_true",
                           help="time one image through each entry on this machine (batch 1: the median of 30 runs "
                                "and their interquartile range)")
    backbones.add_argument("--size", type=int, default=224, help="the input size --measure uses (default 224; "
                                                                  "an entry's minimum where that is larger)")

    cache = commands.add_parser("cache", help="list or prune the cache of decoded images and frozen features",
                                **_examples_of("cache"))
    cache_commands = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION", parser_class=_Parser)
    listing = cache_commands.add_parser("list", help="every entry: data set, what it holds, size, last used, in use",
                                        **_examples_of("cache", "list"))
    prune = cache_commands.add_parser("prune", help="remove entries no running sweep uses: the oldest, or "
                                                    "the least recently used beyond a size",
                                      **_examples_of("cache", "prune"))
    prune.add_argument("--max-size", type=_size("--max-size"), metavar="SIZE",
                       help="remove the least recently used entries until the cache is within SIZE, e.g. 20GB")
    prune.add_argument("--older-than", type=_age("--older-than"), metavar="AGE",
                       help="remove entries last used longer ago than AGE, e.g. 30d, 12h")
    for action in (listing, prune):
        action.add_argument("--cache-dir", type=Path, default=Path("results") / ".cache",
                            help="the cache folder (default: results/.cache, that of `sweeper run`'s default --out)")

    demo = commands.add_parser("demo", help="run the embedded quickstart sweep on real digits, offline",
                               **_examples_of("demo"))
    demo.add_argument("--out", type=Path, default=Path("results"), help="results folder (default: results/)")
    _add_common(demo)
    return parser


def _number(*, zero_allowed: bool):
    """An argparse type: a number above 0, or from 0 with `zero_allowed`."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (value >= 0 if zero_allowed else value > 0):
            raise argparse.ArgumentTypeError(f"{text}: must be {'0 or more' if zero_allowed else 'more than 0'}")
        return value
    return parse


def _at_least_1(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be at least 1")
    return value


def _size(option: str):
    def parse(text: str) -> int:
        from .units import parse_size

        try:
            return parse_size(text, what=option)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{option}: ")) from None
    return parse


def _age(option: str):
    def parse(text: str) -> float:
        from .units import parse_age

        try:
            return parse_age(text, what=option)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{option}: ")) from None
    return parse


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights-dir", type=Path, help="folder with Keras ImageNet weight files (also: $SWEEPER_WEIGHTS)")
    parser.add_argument("--cache-dir", type=Path,
                        help="where decoded images and frozen features are cached, on a local disk "
                             "(default: <out>/.cache)")


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 prints as its own bytes
        try:
            stream.reconfigure(errors="surrogateescape")
        except (AttributeError, ValueError):
            pass
    # Piped or logged output (CI, `| tee`) is read later in a wide viewer: do not wrap it at 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    try:
        args = build_parser().parse_args(argv)
        return _dispatch(args, console)
    except SweeperError as exc:
        Console(stderr=True).print(Text.assemble(("error:", "red"), f" {exc}"), highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl+C; a sweep says how to resume it
        Console(stderr=True).print(f"interrupted; {exc}" if exc.args else "interrupted", markup=False, highlight=False,
                                   soft_wrap=True)
        return 130
    except Exception:  # a bug: show everything
        traceback.print_exc()
        return 1


def _dispatch(args, console: Console) -> int:
    if args.command == "backbones":
        names = _backbone_names(args.names)
        if args.measure:
            measure_backbones(console, names, args.size)
        else:
            print_backbones(console, names)
    elif args.command == "cache":
        from . import cache

        if not args.cache_dir.is_dir():
            raise SweeperError(f"--cache-dir {args.cache_dir}: no such folder")
        if args.cache_command == "list":
            cache.show(args.cache_dir, console)
        elif args.max_size is None and args.older_than is None:
            raise SweeperError("cache prune: give --max-size, --older-than or both (see `sweeper cache prune --help`)")
        else:
            cache.prune_and_say(args.cache_dir, console, max_size=args.max_size, older_than=args.older_than)
            cache.show(args.cache_dir, console)
    elif args.command == "leaderboard":
        from .leaderboard import show

        show(args.sweep, top=args.top, sort=args.sort, where=args.where, fmt=args.format, console=console)
    elif args.command == "report":
        from .report import write_report

        html = write_report(args.sweep)
        console.print(f"report: {html}  (charts beside it in {html.parent})", markup=False)
    elif args.command == "export":
        from .export import ExportOptions, export_bundle, limits_of
        from .spec import absolute_sqlite

        options = ExportOptions(
            trial=args.trial, top=args.top, int8=args.int8, int8_max_drop=args.int8_max_drop, force=args.force,
            cache_dir=args.cache_dir,
            mlflow=args.mlflow and absolute_sqlite(args.mlflow, Path.cwd()),
            limits=limits_of(max_latency_ms=args.max_latency_ms, max_tflite_ms=args.max_tflite_ms,
                             max_size_mb=args.max_size_mb, max_params=args.max_params),
        )
        export_bundle(args.sweep, args.out, options, console)
    elif args.command == "predict":
        from .predict import run_predict

        run_predict(args.bundle, args.images, fmt=args.format, console=console)
    elif args.command == "run":
        from .driver import RunOptions, run_sweep
        from .spec import absolute_sqlite, load_spec

        overrides = {"budget.trials": args.trials, "budget.max_epochs": args.max_epochs, "name": args.name,
                     "tracking.mlflow": args.mlflow and absolute_sqlite(args.mlflow, Path.cwd()),
                     "warm_start": args.warm_start and str(args.warm_start.resolve())}
        spec = load_spec(args.spec, overrides)
        if args.dry_run:
            from .backbones import declared
            from .gpus import dry_run_lines
            from .own_models import inspect
            from .plan import print_plan
            from .preparation import preview

            spec = inspect(spec)
            print_plan(spec, console)
            options = RunOptions(out=args.out, weights_dir=args.weights_dir, cache_dir=args.cache_dir).resolved(spec)
            for line in dry_run_lines(spec, options.cache_dir):
                console.print(line, markup=False, highlight=False)
            with declared(spec.backbones):
                index = preview(spec, options.weights_dirs, console)
            if spec.constraints:
                from .feasibility import print_feasibility

                print_feasibility(spec, n_classes=len(index.classes), cache_dir=options.cache_dir, console=console)
            _print_triage_if_cached(spec, index, options, console)
            return 0
        run_sweep(spec, RunOptions(out=args.out, address=args.address, weights_dir=args.weights_dir,
                                   cache_dir=args.cache_dir, feature_cache=args.feature_cache, storage=args.storage,
                                   reuse_workers=args.reuse_workers, cache_max_size=args.cache_max_size,
                                   spatial_features=args.spatial_features), console)
    elif args.command == "triage":
        from .backbones import declared
        from .driver import RunOptions
        from .own_models import inspect
        from .spec import load_spec
        from .triage import run_triage

        spec = inspect(load_spec(args.spec))
        options = RunOptions(out=args.out, weights_dir=args.weights_dir, cache_dir=args.cache_dir).resolved(spec)
        with declared(spec.backbones):
            run_triage(spec, cache_dir=options.cache_dir, weights_dirs=options.weights_dirs,
                       spatial_dtype=options.spatial_features, console=console)
    elif args.command == "resume":
        from .driver import resume_sweep

        resume_sweep(args.sweep, address=args.address, trials=args.trials, console=console)
    elif args.command == "demo":
        from .demo import run_demo
        from .driver import RunOptions

        run_demo(RunOptions(out=args.out, weights_dir=args.weights_dir, cache_dir=args.cache_dir), console)
    return 0


def _print_triage_if_cached(spec, index, options, console: Console) -> None:
    """The dry run shows the triage ranking (`sweeper triage`) of a space with several pairs, when cached."""
    from .backbones import declared
    from .preparation import decode_sizes
    from .triage import pairs_of, print_cached_ranking

    try:
        several = len(pairs_of(spec.space, decode_sizes(spec))) > 1
    except ValueError:  # a range of cuts: nothing to rank
        return
    if several or spec.budget.triage != "off":
        with declared(spec.backbones):
            print_cached_ranking(spec, index, cache_dir=options.cache_dir, weights_dirs=options.weights_dirs,
                                 spatial_dtype=options.spatial_features, console=console)


def _backbone_names(names: list[str]) -> list[str]:
    from .backbones import REGISTRY, get_backbone

    for name in names:
        get_backbone(name)  # an unknown name: one line naming the closest known ones
    return names or list(REGISTRY)


def _keras_table_figures(entry) -> tuple[str, str]:
    """Parameters and ImageNet top-1 as Keras's table gives them, "-" where it has no row."""
    return (f"{entry.params_m:g}M" if entry.params_m else "-", f"{entry.top1:.1f}%" if entry.top1 else "-")


def measure_backbones(console: Console, names: list[str], size: int) -> None:
    from rich.table import Table

    from .backbones import REGISTRY
    from .latency import backbone_latency
    from .trial import init_tensorflow

    if size < 1:
        raise SweeperError(f"--size {size}: give an input size in pixels, such as 224")
    init_tensorflow(os.cpu_count() or 1)
    table = Table(title=f"CPU latency per image, batch 1, {os.cpu_count()} cores, average-pooled backbone",
                  title_justify="left")
    for column in ("backbone", "px", "params", "top-1", "ms", "± IQR"):
        table.add_column(column, justify="left" if column == "backbone" else "right", no_wrap=True)
    for i, name in enumerate(names, start=1):
        entry = REGISTRY[name]
        px = max(size, entry.min_size)
        with console.status(f"measuring {name} at {px} px ({i} of {len(names)})"):
            measured = backbone_latency(entry, px)
        console.print(f"{name}: {measured.ms:.1f} ms at {px} px (interquartile range {measured.spread_ms:.2f} ms "
                      f"over {measured.runs} runs)", markup=False)
        table.add_row(name, str(px), *_keras_table_figures(entry), f"{measured.ms:.1f}", f"{measured.spread_ms:.2f}")
    console.print(table)


def print_backbones(console: Console, names: list[str]) -> None:
    from rich.table import Table

    from .backbones import REGISTRY, cut_choices
    from .weight_files import find_local, search_dirs

    table = Table(title="backbones; `space.cut` takes any name in the cut column", title_justify="left")
    table.add_column("backbone", no_wrap=True)
    table.add_column("px", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("top-1", justify="right", no_wrap=True)
    table.add_column("scaling", no_wrap=True)
    table.add_column("cut", overflow="fold")
    table.add_column("weights", no_wrap=True)
    for b in (REGISTRY[name] for name in names):
        if not b.pretrained:
            weights = "scratch"
        else:
            weights = "[green]found[/]" if find_local(b, b.default_size) else "[yellow]missing[/]"
        table.add_row(b.name, f"{b.default_size} ≥{b.min_size}", *_keras_table_figures(b), b.preprocess,
                      ", ".join(cut_choices(b)), weights)
    console.print(table)
    console.print("px: default input size ≥ minimum.  params, top-1: the whole ImageNet classifier, from Keras's table")
    console.print("(- where it has no row).  scaling: tf = [-1, 1]; caffe = BGR minus the ImageNet mean; torch = [0, 1]")
    console.print("standardised by the ImageNet mean and deviation; unit = [0, 1]; none = done inside the model.")
    console.print("scratch: no pretrained weights exist.")
    console.print(f"weights are looked for in: {', '.join(str(d) for d in search_dirs())}")
