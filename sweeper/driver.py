"""The driver: from a validated spec to a finished Ray Tune sweep in `results/<sweep>/`.

Optuna's TPE proposes configurations (define-by-run, for the conditional `cut`), ASHA stops
weak trials at its rungs, and a callback keeps the leaderboard files current. The driver
never imports TensorFlow: trials do, in Ray's worker processes.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import ray
import yaml
from ray import tune
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__, checkpoint, evaluate, images, leaderboard, results
from .backbones import REGISTRY
from .data import DatasetIndex, build_index
from .errors import SweeperError
from .live import LiveView, SweepInfo, ray_output_to
from .progress import ProgressBoard
from .search_space import DefineByRun, space_size
from .spec import Range, Spec, values_of
from .trial import COLD_WORKER, TrialContext, run_trial
from .weights import find_local


@dataclass(frozen=True)
class RunOptions:
    out: Path = Path("results")
    address: str | None = None  # an existing Ray cluster; None starts Ray locally
    weights_dir: Path | None = None
    cache_dir: Path | None = None  # default: <out>/.cache, shared by the sweeps in <out>
    feature_cache: bool = True  # False: every trial trains on images (for comparisons and debugging)
    reuse_workers: bool = True  # False: a new worker process per trial, TensorFlow imported anew (for comparisons)


def run_sweep(spec: Spec, options: RunOptions, console: Console | None = None) -> Path:
    """Run the whole sweep; returns the sweep folder."""
    console = console or Console()
    started = time.time()
    if options.address:
        check_address(options.address)  # before any work: Ray itself waits minutes on a wrong address
    sweep_dir = (options.out / spec.name).resolve()
    if sweep_dir.exists() and any(sweep_dir.iterdir()):
        raise SweeperError(
            f"{sweep_dir} already exists; choose another --name, or continue it with `sweeper resume {sweep_dir}`"
        )
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SweeperError(f"{options.out}: cannot create the results folder ({exc.strerror})") from None
    cache_dir = (options.cache_dir or options.out / ".cache").resolve()
    weights_dir = options.weights_dir or spec.weights_dir

    index = prepare_data(spec, cache_dir, console)
    _save_run_files(spec, sweep_dir, index, options)
    _warn_missing_weights(spec, weights_dir, console)

    _init_ray(options.address)
    board = ProgressBoard.options(runtime_env={"env_vars": {COLD_WORKER: "1"}}).remote()
    context = TrialContext(
        index=index,
        task=spec.task,
        objective=spec.objective,
        mode=spec.mode,
        max_epochs=spec.budget.max_epochs,
        weights=spec.weights,
        weights_dir=str(weights_dir) if weights_dir else None,
        cache_dir=str(cache_dir),
        cpus=max(1, int(spec.budget.cpus_per_trial)),
        seed=spec.budget.seed,
        feature_cache=options.feature_cache,
        progress=board,
    )
    size = space_size(spec.space)
    console.print(
        f"[bold]{spec.name}[/]: {spec.budget.trials} trials over "
        f"{'a continuous space' if size is None else f'{size} configurations'}, "
        f"up to {spec.budget.max_epochs} epochs each, {spec.budget.concurrent_trials} at a time; "
        f"objective {spec.objective} ({spec.mode})"
    )
    files = LeaderboardCallback(sweep_dir, spec)
    info = SweepInfo(name=spec.name, objective=spec.objective, mode=spec.mode, trials=spec.budget.trials,
                     max_epochs=spec.budget.max_epochs, time_limit=spec.budget.time_limit)
    guard = FailureGuard(min(spec.budget.trials, max(3, spec.budget.concurrent_trials + 1)))
    callbacks = [files, LiveView(info, files.rows, console, board), guard]  # files first: the view shows their rows
    leaderboard.write(sweep_dir, [], spec.objective)  # exists from the start, even if no trial reports
    tuner = _make_tuner(spec, context, sweep_dir, callbacks, guard, reuse_workers=options.reuse_workers)
    results.mark(sweep_dir, "running")
    try:
        with ray_output_to(sweep_dir / "ray.log"):
            tuner.fit()
    except BaseException:
        results.mark(sweep_dir, "interrupted")
        raise
    finally:
        ray.kill(board)

    rows = leaderboard.read(sweep_dir)
    # Tune returns normally after Ctrl+C too, with the trials it cut off still `running`.
    cut_off = any(r["status"] == "running" for r in rows)
    if np.any(index.splits == "test"):
        rows = _evaluate_best_on_test(spec, index, rows, sweep_dir, context, console)
    results.mark(sweep_dir, "interrupted" if cut_off else "finished")  # after the evaluation: its results are part of it
    if guard.stop_all():
        first = next((r["error"] for r in rows if r.get("error")), "no message")
        raise SweeperError(f"the first {guard.failed} trials all failed, so the sweep stopped instead of running "
                           f"{spec.budget.trials - len(rows)} more; the first error: {first} (all in {sweep_dir})")
    leaderboard.render(rows, spec.objective, console, title=f"{spec.name} — best {spec.objective} first")
    minutes = (time.time() - started) / 60
    console.print(f"Finished in {minutes:.1f} min. Results: {sweep_dir}")
    return sweep_dir


def prepare_data(spec: Spec, cache_dir: Path, console: Console) -> DatasetIndex:
    """Index the data, decode every image once at each size in the space, and summarise it."""
    index = build_index(spec.data, spec.task)
    image_size = spec.space.image_size
    sizes = [int(image_size.low)] if isinstance(image_size, Range) else sorted(values_of(image_size))
    for size in sizes:
        with _progress(console) as progress:
            task = progress.add_task(f"decoding images at {size} px", total=len(index.paths))
            index, _ = images.load_images(
                index, size, cache_dir, spec.data.on_bad_image, progress=lambda: progress.advance(task)
            )
    _print_data_summary(index, console)
    return index


def _make_tuner(spec: Spec, context: TrialContext, sweep_dir: Path, callbacks: list[tune.Callback],
                guard: tune.Stopper, *, reuse_workers: bool = True):
    import optuna
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    budget = spec.budget
    sampler = optuna.samplers.TPESampler(
        seed=budget.seed, multivariate=True, group=True, n_startup_trials=min(10, max(4, budget.trials // 3))
    )
    searcher = OptunaSearch(DefineByRun(spec.space), metric=spec.objective, mode=spec.mode, sampler=sampler)
    scheduler = ASHAScheduler(
        time_attr="training_iteration",
        max_t=budget.max_epochs,
        grace_period=budget.grace_epochs,
        reduction_factor=budget.reduction_factor,
    )
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, context=context),
        {"cpu": budget.cpus_per_trial, "gpu": budget.gpus_per_trial},
    )
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=spec.objective,
            mode=spec.mode,
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=budget.trials,
            max_concurrent_trials=budget.concurrent_trials,
            time_budget_s=budget.time_limit,
            reuse_actors=reuse_workers,  # keeps TensorFlow imported, and models warm, between trials
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=sweep_dir.name,
            storage_path=str(sweep_dir.parent),
            stop=tune.stopper.CombinedStopper(
                guard, *([StopAt(spec.objective, spec.mode, budget.stop_at)] if budget.stop_at is not None else [])),
            failure_config=tune.FailureConfig(max_failures=budget.max_failures),
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=spec.objective, checkpoint_score_order=spec.mode
            ),
            callbacks=callbacks,
            verbose=0,
        ),
    )


def _evaluate_best_on_test(spec, index, rows, sweep_dir: Path, context: TrialContext, console: Console) -> list[dict]:
    """Evaluate the best trial's best checkpoint on the test split; its row gains `test_*` columns."""
    best = next(iter(leaderboard.scored(rows, spec.objective)), None)
    if best is None:
        console.print("[yellow]no trial finished an epoch: nothing to evaluate on the test split[/]")
        return rows
    folder = checkpoint.find(sweep_dir, best["trial_id"])
    predict = ray.remote(num_cpus=spec.budget.cpus_per_trial)(evaluate.predict_split)
    outputs = ray.get(predict.remote(str(folder), index, "test", context.cache_dir, context.cpus))
    metrics = evaluate.report(index, outputs, "test", sweep_dir / "evaluation")
    best.update(metrics)
    leaderboard.write(sweep_dir, rows, spec.objective)
    shown = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
    console.print(f"test split, best trial {best['trial_id']}: {shown}  (files in {sweep_dir / 'evaluation'})")
    return rows


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"  # Tune's default name spells out the config and gets too long


def check_address(address: str, timeout_s: float = 5.0) -> None:
    """A one-line error when nothing answers at a `HOST:PORT` (or `ray://HOST:PORT`) cluster address.

    `auto` and other forms are left to Ray, which says itself when it finds no cluster.
    """
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        if address != "auto":
            raise SweeperError(f"--address {address}: expected HOST:PORT (e.g. 10.0.0.5:6379), ray://HOST:PORT or auto")
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise SweeperError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc}); "
                           "start one with `ray start --head` or check the address") from None


def _init_ray(address: str | None) -> None:
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 runtime_env={"worker_process_setup_hook": "sweeper.trial.warm_up_worker"})
    except (ConnectionError, RuntimeError, ValueError) as exc:
        if address:
            raise SweeperError(f"--address {address}: cannot reach a Ray cluster there ({exc})") from None
        raise


class StopAt(tune.Stopper):
    """Ends the whole sweep once any trial reaches the target value of the objective."""

    def __init__(self, metric: str, mode: str, target: float):
        self.metric, self.mode, self.target, self.reached = metric, mode, target, False

    def __call__(self, trial_id, result) -> bool:
        value = result.get(self.metric)
        if value is not None and (value >= self.target if self.mode == "max" else value <= self.target):
            self.reached = True
        return False

    def stop_all(self) -> bool:
        return self.reached


class FailureGuard(tune.Callback, tune.Stopper):
    """Stops a sweep whose first `limit` trials all failed before reporting anything, instead of
    failing through the whole budget (bad weights, data the model cannot take, a space that diverges)."""

    def __init__(self, limit: int):
        self.limit, self.failed, self.reported = limit, 0, False

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.reported = True

    def on_trial_error(self, iteration, trials, trial, **info):
        self.failed += 1

    def __call__(self, trial_id, result) -> bool:
        return False

    def stop_all(self) -> bool:
        return not self.reported and self.failed >= self.limit


class LeaderboardCallback(tune.Callback):
    """Rewrites the leaderboard files whenever a trial starts, reports or ends. `rows` is {trial_id: row}."""

    def __init__(self, sweep_dir: Path, spec: Spec):
        self.sweep_dir, self.spec = sweep_dir, spec
        self.rows: dict[str, dict] = {}

    def on_trial_start(self, iteration, trials, trial, **info):
        self._update(trial, "running", trial.last_result or {})

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._update(trial, "running", result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        status = "completed" if result.get("epoch", 0) >= self.spec.budget.max_epochs else "stopped"
        self._update(trial, status, result)

    def on_trial_error(self, iteration, trials, trial, **info):
        message = _error_message(trial)
        diverged = "TrialDiverged: " in message
        self._update(trial, "diverged" if diverged else "error", trial.last_result or {},
                     message.split("TrialDiverged: ", 1)[-1] if diverged else message)

    def on_experiment_end(self, trials, **info):
        # A sweep that ends early (stop_at, the failure guard) terminates its running trials without
        # telling on_trial_complete; trials still running now were cut off by an interruption.
        for trial in trials:
            if self.rows.get(trial.trial_id, {}).get("status") == "running" and trial.status == "TERMINATED":
                self._update(trial, "stopped", trial.last_result or {})

    def _update(self, trial, status, result, error=""):
        self.rows[trial.trial_id] = leaderboard.make_row(
            trial_id=trial.trial_id, status=status, config=trial.config, result=result,
            objective=self.spec.objective, error=error,
        )
        rows = leaderboard.ranked(self.rows.values(), self.spec.objective, self.spec.mode)
        leaderboard.write(self.sweep_dir, rows, self.spec.objective)


def _error_message(trial) -> str:
    """The last line of the trial's traceback: the exception and its message."""
    path = getattr(trial, "error_file", None)
    if path and Path(path).is_file():
        lines = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
        if lines:
            return lines[-1][:500]
    return "the trial failed (no error message was recorded)"


def _save_run_files(spec: Spec, sweep_dir: Path, index: DatasetIndex, options: RunOptions) -> None:
    header = f"# The spec as run; relative paths are relative to {spec.path.parent}\n"
    (sweep_dir / "spec.yaml").write_text(header + yaml.safe_dump(spec.raw, sort_keys=False))
    (sweep_dir / "data_summary.json").write_text(json.dumps(index.summary(), indent=2))
    meta = {
        "name": spec.name,
        "spec_path": str(spec.path),
        "objective": spec.objective,
        "mode": spec.mode,
        "task": spec.task,
        "classes": list(index.classes),
        "data_fingerprint": index.fingerprint,
        "address": options.address,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sweeper_version": __version__,
    }
    results.write_meta(sweep_dir, meta)


def _warn_missing_weights(spec: Spec, weights_dir: Path | None, console: Console) -> None:
    if spec.weights != "imagenet":
        return
    size = spec.space.image_size
    smallest = int(size.low) if isinstance(size, Range) else min(values_of(size))
    for name in values_of(spec.space.backbone):
        backbone = REGISTRY[name]
        if backbone.pretrained and find_local(backbone, smallest, weights_dir) is None:
            console.print(
                f"[yellow]warning:[/] no local ImageNet weights for {name}; its trials will try a Keras download "
                "(pass --weights-dir or set $SWEEPER_WEIGHTS to use local files)"
            )


def _print_data_summary(index: DatasetIndex, console: Console) -> None:
    summary = index.summary()
    kind = f"{len(index.classes)} classes" if index.classes else "regression targets"
    console.print(f"data: {summary['images']} images, {kind}, fingerprint {summary['fingerprint']}")
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
        table.add_row(name, *(f"{v:g}" for v in values))
    console.print(table)
    if index.skipped:
        shown = "; ".join(f"{p} ({r})" for p, r in index.skipped[:3])
        more = f" and {len(index.skipped) - 3} more, listed in data_summary.json" if len(index.skipped) > 3 else ""
        console.print(f"[yellow]skipped {len(index.skipped)} files[/]: {shown}{more}", highlight=False)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    )
