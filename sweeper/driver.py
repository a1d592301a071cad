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
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import ray
import yaml
from ray import tune
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from . import __version__, checkpoint, evaluate, images, leaderboard, leftovers, private_apis, results
from . import weights as weight_lookup
from .backbones import REGISTRY
from .data import DatasetIndex, build_index
from .errors import SweeperError
from .files import LOCK_FILE, DriverLock
from .live import LiveView, SweepInfo, ray_output_to
from .objective import Objective
from .progress import ProgressBoard
from .resumable import CheckpointPruner, KeepEndedResults, ResumableASHA, move_trial_folder_aside
from .saved_state import check_experiment_state, verify_experiment
from .search_space import DefineByRun, quiet_optuna, sampler_for
from .space import space_size, trial_count
from .spec import Range, Spec, values_of
from .trial import COLD_WORKER, TrialContext, run_trial
from .weights import find_local, search_dirs


@dataclass(frozen=True)
class RunOptions:
    out: Path = Path("results")
    address: str | None = None  # an existing Ray cluster; None starts Ray locally
    weights_dir: Path | None = None
    cache_dir: Path | None = None  # default: <out>/.cache, shared by the sweeps in <out>
    feature_cache: bool = True  # False: every trial trains on images (for comparisons and debugging)
    reuse_workers: bool = True  # False: a new worker process per trial, TensorFlow imported anew (for comparisons)
    storage: str | None = None  # where the Tune experiment goes: a shared path or a URI; default <out>/<sweep>/experiment
    # Resolved when the sweep starts, from the flags, the spec and $SWEEPER_WEIGHTS, and recorded:
    # a resumed sweep searches the same folders whatever its shell's environment.
    weights_dirs: tuple[str, ...] = ()

    def resolved(self, spec: Spec) -> RunOptions:
        """Every path absolute and every default filled in, as the sweep will record them."""
        weights_dir = self.weights_dir or spec.weights_dir
        storage = self.storage
        if storage and "://" not in storage:
            storage = str(Path(storage).expanduser().resolve())
        return replace(self, cache_dir=(self.cache_dir or self.out / ".cache").resolve(),
                       weights_dir=Path(weights_dir).expanduser().resolve() if weights_dir else None,
                       weights_dirs=tuple(str(d.resolve()) for d in search_dirs(weights_dir)), storage=storage)

    def to_meta(self) -> dict:
        """What `sweeper resume` needs to run the sweep on the same way (saved in sweep.json)."""
        return {"weights_dir": str(self.weights_dir) if self.weights_dir else None,
                "weights_dirs": list(self.weights_dirs), "cache_dir": str(self.cache_dir),
                "feature_cache": self.feature_cache, "reuse_workers": self.reuse_workers, "storage": self.storage}

    @classmethod
    def from_meta(cls, meta: dict, out: Path) -> RunOptions:
        saved = meta.get("options", {})
        weights_dir = Path(saved["weights_dir"]) if saved.get("weights_dir") else None
        return cls(out=out, address=meta.get("address"), weights_dir=weights_dir,
                   cache_dir=Path(saved.get("cache_dir") or out / ".cache"),
                   feature_cache=saved.get("feature_cache", True), reuse_workers=saved.get("reuse_workers", True),
                   storage=saved.get("storage"),
                   # Sweeps recorded before weights_dirs searched the environment of the day.
                   weights_dirs=tuple(saved.get("weights_dirs") or (str(d) for d in search_dirs(weights_dir))))


ENDED = ("completed", "stopped", "error", "diverged")  # leaderboard statuses of trials that will not run again


def run_sweep(spec: Spec, options: RunOptions, console: Console | None = None) -> Path:
    """Run the whole sweep; returns the sweep folder."""
    console = console or Console()
    started = time.time()
    if options.address:
        check_address(options.address)  # before any work: Ray itself waits minutes on a wrong address
    sweep_dir = (options.out / spec.name).resolve()
    _refuse_existing(sweep_dir)
    created = not sweep_dir.exists()
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SweeperError(f"{options.out}: cannot create the results folder ({exc.strerror})") from None
    try:
        with DriverLock(sweep_dir):
            _refuse_existing(sweep_dir)  # a driver that started a moment before this one, and has ended
            options = options.resolved(spec)
            _check_cache_dir(options.cache_dir)
            index = prepare_data(spec, options.cache_dir, console)
            ray_session = _init_ray(options.address)
            check_resources(spec.budget, autoscaling=options.address is not None, console=console)
            weight_files = _fetch_missing_weights(_weight_files(spec, options.weights_dirs), options.weights_dirs,
                                                  console)
            _save_run_files(spec, sweep_dir, index, options, weight_files, ray_session)
            return _tune(spec, sweep_dir, index, options, console, started=started)
    except BaseException:
        if created:  # stopped before it wrote anything: the folder it made would block a rerun
            _remove_if_only_lock(sweep_dir)
        raise


def _remove_if_only_lock(sweep_dir: Path) -> None:
    try:
        if [p.name for p in sweep_dir.iterdir()] == [LOCK_FILE]:
            (sweep_dir / LOCK_FILE).unlink()
            sweep_dir.rmdir()
    except OSError:
        pass


def _check_cache_dir(cache_dir: Path) -> None:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SweeperError(f"--cache-dir {cache_dir}: cannot be the cache folder ({exc.strerror})") from None


def preview(spec: Spec, options: RunOptions, console: Console) -> None:
    """What `run --dry-run` checks without training: the data as it would be indexed (not decoded)
    and the weight files each pretrained backbone in the space would use."""
    index = build_index(spec.data, spec.task)
    _print_data_summary(index, console)
    _warn_missing_weights(_weight_files(spec, options.resolved(spec).weights_dirs), console)


def _refuse_existing(sweep_dir: Path) -> None:
    if sweep_dir.exists() and any(p.name != LOCK_FILE for p in sweep_dir.iterdir()):
        hint = ("see it with `sweeper leaderboard`" if results.state_of(sweep_dir) == "finished"
                else f"continue it with `sweeper resume {sweep_dir}`")
        raise SweeperError(f"{sweep_dir} already exists; choose another --name, or {hint}")


def resume_sweep(sweep_dir: Path, *, address: str | None = None, console: Console | None = None) -> Path:
    """Continue an interrupted sweep where its saved state left it; returns the sweep folder.

    Trials that ended stay as they are; trials that were running continue from their kept
    checkpoint; the searcher keeps its history and ASHA its rungs; the budget is the original one;
    every option the run resolved (weights folders, cache, storage) is the recorded one.
    """
    console = console or Console()
    started = time.time()
    sweep_dir = Path(sweep_dir).resolve()
    results.require_sweep(sweep_dir)  # before the lock: no lock file in a folder that is not a sweep
    with DriverLock(sweep_dir):
        spec = results.saved_spec(sweep_dir)
        meta = results.read_meta(sweep_dir)
        if results.state_of(sweep_dir) == "finished":
            raise SweeperError(f"{sweep_dir}: this sweep has finished; nothing to resume "
                               f"(see `sweeper leaderboard {sweep_dir}`, or run the spec again with another --name)")
        options = RunOptions.from_meta(meta, out=sweep_dir.parent)
        options = replace(options, address=address or options.address)
        _check_cache_dir(options.cache_dir)
        _end_leftovers(meta.get("ray_session"), console)
        if options.address:
            check_address(options.address)
        _check_weight_files(sweep_dir, meta.get("weight_files") or {})
        # No leaderboard: the driver was killed as the sweep started, before it wrote one.
        saved = leaderboard.read(sweep_dir) if (sweep_dir / leaderboard.FILE).is_file() else []
        check_experiment_state(results.experiment_of(sweep_dir), trials_recorded=len(saved))
        verify_experiment(results.experiment_of(sweep_dir))  # before Tune unpickles anything in it
        index = prepare_data(spec, options.cache_dir, console)
        if index.fingerprint != meta.get("data_fingerprint"):
            raise SweeperError(f"{sweep_dir}: the data changed since the sweep started (fingerprint "
                               f"{index.fingerprint}, the sweep saw {meta.get('data_fingerprint')}); "
                               "run the spec as a new sweep instead")
        results.update(sweep_dir, ray_session=_init_ray(options.address))  # at once: a kill may come next
        check_resources(spec.budget, autoscaling=options.address is not None, console=console)
        return _tune(spec, sweep_dir, index, options, console, started=started, saved=saved)


def _tune(spec: Spec, sweep_dir: Path, index: DatasetIndex, options: RunOptions, console: Console, *,
          started: float, saved: list[dict] | None = None) -> Path:
    """Run (or, given the `saved` leaderboard rows, resume) the Tune experiment, then evaluate and summarise."""
    board = ProgressBoard.options(  # on the driver's node: on a cluster, a worker node may be lost
        runtime_env={"env_vars": {COLD_WORKER: "1"}},
        scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True),
    ).remote()
    # On resume, the recorded location: the one `check_experiment_state` looked at.
    experiment = results.experiment_of(sweep_dir)
    trials = trial_count(spec)
    ended = {r["trial_id"]: _ended(r, experiment, spec.objective) for r in saved or [] if r["status"] in ENDED}
    context = TrialContext(
        index=index,
        task=spec.task,
        objective=spec.objective,
        mode=spec.mode,
        max_epochs=spec.budget.max_epochs,
        weights=spec.weights,
        weights_dirs=options.weights_dirs,
        cache_dir=str(options.cache_dir),
        cpus=max(1, int(spec.budget.cpus_per_trial)),
        seed=spec.budget.seed,
        feature_cache=options.feature_cache,
        progress=board,
        ended=ended,
    )
    if saved is None:
        size = space_size(spec.space)
        console.print(
            f"[bold]{escape(spec.name)}[/]: {trials} trials ({spec.budget.search} search) over "
            f"{'a continuous space' if size is None else f'{size} configurations'}, "
            f"up to {spec.budget.max_epochs} epochs each, {spec.budget.concurrent_trials} at a time; "
            f"objective {spec.objective} ({spec.mode})"
        )
    else:
        console.print(f"[bold]{escape(spec.name)}[/]: resuming; {len(ended)} of {trials} trials had ended, "
                      f"{len(saved) - len(ended)} were running")
    guard = FailureGuard(min(trials, max(3, spec.budget.concurrent_trials + 1)), saved or [])
    stop_at = StopAt(spec.objective, spec.mode, spec.budget.stop_at) if spec.budget.stop_at is not None else None
    early_end = EarlyEnd([guard, *([stop_at] if stop_at else [])], spec.budget.time_limit)
    files = LeaderboardCallback(sweep_dir, spec, saved, experiment, early_end)
    info = SweepInfo(name=spec.name, objective=spec.objective, mode=spec.mode, trials=trials,
                     max_epochs=spec.budget.max_epochs, time_limit=spec.budget.time_limit)
    pruner = CheckpointPruner()
    callbacks = [files, LiveView(info, files.rows, console, board, ended), guard, pruner,  # files first: the view shows their rows
                 KeepEndedResults(set(ended))]
    results.mark(sweep_dir, "running")
    try:
        with quiet_optuna(), ray_output_to(sweep_dir / "ray.log"):
            tuner = _make_tuner(spec, context, experiment, callbacks, early_end.stoppers,
                                reuse_workers=options.reuse_workers, resume=saved is not None)
            tuner.fit()
        pruner.prune_all()
    except KeyboardInterrupt:  # a second Ctrl+C: Tune stops at once
        results.mark(sweep_dir, "interrupted")
        raise KeyboardInterrupt(f"continue it with: sweeper resume {sweep_dir}") from None
    except BaseException:
        results.mark(sweep_dir, "interrupted")
        raise
    finally:
        ray.kill(board)

    rows = leaderboard.read(sweep_dir)
    # Tune returns normally after Ctrl+C too, with the trials it cut off still `running` (or not started).
    if any(r["status"] == "running" for r in rows) or (len(rows) < trials and not early_end()):
        results.mark(sweep_dir, "interrupted")
        leaderboard.render(rows, spec.objective, console, title=f"{spec.name} so far — best {spec.objective} first")
        raise KeyboardInterrupt(f"continue it with: sweeper resume {sweep_dir}")
    if np.any(index.splits == "test"):
        try:
            rows = _evaluate_best_on_test(spec, index, rows, sweep_dir, context, console)
        except KeyboardInterrupt:  # every trial has ended; a resume runs just the evaluation
            results.mark(sweep_dir, "interrupted")
            raise KeyboardInterrupt(f"continue it with: sweeper resume {sweep_dir}") from None
    results.mark(sweep_dir, "finished")  # after the evaluation: its results are part of it
    pruner.prune_all(finished=True)
    if guard.stop_all():
        first = next((r["error"] for r in rows if r.get("error")), "no message")
        raise SweeperError(f"the first {guard.failed} trials all failed, so the sweep stopped instead of running "
                           f"{trials - len(rows)} more; the first error: {first} (all in {sweep_dir})")
    leaderboard.render(rows, spec.objective, console, title=f"{spec.name} — best {spec.objective} first")
    minutes = (time.time() - started) / 60
    console.print(f"Finished in {minutes:.1f} min. Results: {sweep_dir}", markup=False)
    return sweep_dir


def _ended(row: dict, experiment: str, objective: str) -> dict:
    """What a resumed trial that had ended tells Tune again: its error, or its last result."""
    if row["status"] in ("error", "diverged"):
        return {"error": row.get("error") or row["status"]}
    history = [r for r in results.trial_results(experiment, row["trial_id"]) if r.get(objective) is not None]
    if not history:  # ended before it reported: Tune's searcher can only count it as failed
        return {"error": f"the trial {row['status']} before it reported a value"}
    last = history[-1]
    return {"result": {k: last[k] for k in (objective, "epoch", f"best_{objective}", "best_epoch") if k in last}}


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


def _make_tuner(spec: Spec, context: TrialContext, experiment: str, callbacks: list[tune.Callback],
                stoppers: list[tune.Stopper], *, reuse_workers: bool = True, resume: bool = False):
    """The Tune experiment at `experiment`; with `resume`, the same experiment continued from its saved state.

    A resumed sweep is built exactly like a new one, rather than unpickled by `Tuner.restore`: the
    callbacks must talk to this driver's display and progress board, not the killed driver's.
    Tune then restores the trials and the searcher's history from the experiment's saved state.
    """
    from ray.tune.search.optuna import OptunaSearch

    budget = spec.budget
    searcher = OptunaSearch(DefineByRun(spec.space), metric=spec.objective, mode=spec.mode, sampler=sampler_for(spec))
    scheduler = ResumableASHA(
        time_attr="training_iteration",
        max_t=budget.max_epochs,
        grace_period=budget.grace_epochs,
        reduction_factor=budget.reduction_factor,
    )
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, context=context),
        {"cpu": budget.cpus_per_trial, "gpu": budget.gpus_per_trial},
    )
    return private_apis.make_tuner(
        trainable,
        resume=resume,
        tune_config=tune.TuneConfig(
            metric=spec.objective,
            mode=spec.mode,
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=trial_count(spec),
            max_concurrent_trials=budget.concurrent_trials,
            time_budget_s=budget.time_limit,
            reuse_actors=reuse_workers,  # keeps TensorFlow imported, and models warm, between trials
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=experiment.rstrip("/").rsplit("/", 1)[-1],
            storage_path=experiment.rstrip("/").rsplit("/", 1)[0],
            stop=tune.stopper.CombinedStopper(*stoppers),
            failure_config=tune.FailureConfig(max_failures=budget.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),  # CheckpointPruner prunes
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
    # It takes 20-40 s (a TensorFlow process starts): said, so the silence is not taken for a hang.
    console.print(f"evaluating the best trial, {best['trial_id']}, on the {int(np.sum(index.splits == 'test'))} "
                  "test images...", markup=False)
    predict = ray.remote(num_cpus=spec.budget.cpus_per_trial)(evaluate.predict_split)
    outputs = ray.get(predict.remote(str(folder), index, "test", context.cache_dir, context.cpus))
    metrics = evaluate.report(index, outputs, "test", sweep_dir / "evaluation")
    best.update(metrics)
    leaderboard.write(sweep_dir, rows, spec.objective)
    shown = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
    console.print(f"test split, best trial {best['trial_id']}: {shown}  (files in {sweep_dir / 'evaluation'})", markup=False)
    return rows


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"  # Tune's default name spells out the config and gets too long


def check_resources(budget, *, autoscaling: bool, console: Console) -> None:
    """A trial that asks for more CPUs or GPUs than any Ray node has waits forever, silently (Ray's
    warning goes to ray.log): refuse it before the sweep starts. On a cluster (--address) an
    autoscaler may still add such a node, so there it is a warning."""
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    cpus, gpus = budget.cpus_per_trial, budget.gpus_per_trial
    if any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in nodes):
        return
    largest = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
    message = (f"budget: a trial asks for {cpus:g} CPUs and {gpus:g} GPUs (cpus_per_trial, gpus_per_trial), but no Ray "
               f"node has that much (the largest: {largest.get('CPU', 0):g} CPUs, {largest.get('GPU', 0):g} GPUs)")
    if not autoscaling:
        raise SweeperError(message)
    console.print(f"[yellow]warning:[/] {escape(message)}; trials wait until a node that large joins the cluster")


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


def _init_ray(address: str | None) -> dict | None:
    """Start (or attach to) Ray; returns the local Ray session this call started, or None."""
    if ray.is_initialized():
        return None
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Save the experiment's state at least every second (Tune's default is every 10 s or more), so a
    # killed driver loses at most the trials started in the last second; the warning that saves come
    # often is moot here: trials' checkpoints force a save too.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 runtime_env={"worker_process_setup_hook": "sweeper.trial.warm_up_worker"})
    except (ConnectionError, RuntimeError, ValueError) as exc:
        if address:
            raise SweeperError(f"--address {address}: cannot reach a Ray cluster there ({exc})") from None
        raise
    return None if address else leftovers.current_session()


def _end_leftovers(recorded: dict | None, console: Console) -> None:
    """A resume after a driver was killed: end the local Ray processes it left, and only those."""
    ended = leftovers.end_session(recorded)
    if ended:
        console.print(f"ended {ended} Ray processes the stopped driver had left running (its Ray session "
                      f"{recorded['name']})", markup=False, highlight=False)


class StopAt(tune.Stopper):
    """Ends the whole sweep once any trial reaches the target value of the objective."""

    def __init__(self, metric: str, mode: str, target: float):
        self.metric, self.mode, self.target, self.reached = metric, mode, target, False

    def __call__(self, trial_id, result) -> bool:
        value = result.get(self.metric)
        if value is not None and Objective(self.metric, self.mode).reached(value, self.target):
            self.reached = True
        return False

    def stop_all(self) -> bool:
        return self.reached


class EarlyEnd:
    """Whether the sweep ended before its budget on purpose: a stopper's (stop_at, the failure
    guard) or the time limit; not an interruption."""

    def __init__(self, stoppers: list[tune.Stopper], time_limit: float | None):
        self.stoppers, self.time_limit, self.started = stoppers, time_limit, time.time()

    def __call__(self) -> bool:
        timed_out = self.time_limit is not None and time.time() - self.started >= self.time_limit
        return timed_out or any(stopper.stop_all() for stopper in self.stoppers)


class FailureGuard(tune.Callback, tune.Stopper):
    """Stops a sweep whose first `limit` trials all failed before reporting anything, instead of
    failing through the whole budget (bad weights, data the model cannot take, a space that diverges)."""

    def __init__(self, limit: int, saved: list[dict] = ()):
        # A resumed sweep counts the trials of its earlier sessions too.
        self.limit = limit
        self.failed = sum(r["status"] in ("error", "diverged") for r in saved)
        self.reported = any(r.get("epochs") for r in saved)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.reported = True

    def on_trial_error(self, iteration, trials, trial, **info):
        self.failed += 1

    def __call__(self, trial_id, result) -> bool:
        return False

    def stop_all(self) -> bool:
        return not self.reported and self.failed >= self.limit


class LeaderboardCallback(tune.Callback):
    """Rewrites the leaderboard files whenever a trial starts, reports or ends. `rows` is {trial_id: row}.

    A resumed sweep starts from its `saved` rows: ended trials keep theirs, whatever Tune's saved
    state (which can lag a moment behind) says of them.
    """

    def __init__(self, sweep_dir: Path, spec: Spec, saved: list[dict] | None, experiment: str, early_end: EarlyEnd):
        self.sweep_dir, self.spec, self.experiment, self.early_end = sweep_dir, spec, experiment, early_end
        self.rows: dict[str, dict] = {r["trial_id"]: r for r in saved or []}
        self.ended_before = {trial_id for trial_id, r in self.rows.items() if r["status"] in ENDED}
        self.reconciled = saved is None

    def on_step_begin(self, iteration, trials, **info):
        if not self.reconciled:  # the first step of a resumed sweep: Tune has restored its trials
            self.reconciled = True
            self._forget_unknown({trial.trial_id for trial in trials})

    def _forget_unknown(self, known: set[str]) -> None:
        """Drop the running trials Tune's saved state does not know: started just before the driver
        was killed, after the last save. Their configurations are proposed again, as new trials;
        their folders are moved aside, not deleted. An ended trial's row is never dropped."""
        for trial_id in set(self.rows) - known - self.ended_before:
            del self.rows[trial_id]
            move_trial_folder_aside(self.experiment, trial_id)
        self._write()

    def on_trial_start(self, iteration, trials, trial, **info):
        if trial.trial_id not in self.ended_before:
            self._update(trial, "running", trial.last_result or {})

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if trial.trial_id not in self.ended_before:
            self._update(trial, "running", result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        if trial.trial_id in self.ended_before:
            return
        result = trial.last_result or {}
        status = "completed" if result.get("epoch", 0) >= self.spec.budget.max_epochs else "stopped"
        self._update(trial, status, result)

    def on_trial_error(self, iteration, trials, trial, **info):
        if trial.trial_id in self.ended_before:
            return
        message = _error_message(trial)
        diverged = "TrialDiverged: " in message
        self._update(trial, "diverged" if diverged else "error", trial.last_result or {},
                     message.split("TrialDiverged: ", 1)[-1] if diverged else message)

    def on_experiment_end(self, trials, **info):
        # A sweep that ends early (stop_at, the failure guard, the time limit) terminates its running
        # trials without telling on_trial_complete. Otherwise (Ctrl+C) they stay `running`, to resume.
        if not self.early_end():
            return
        for trial in trials:
            if self.rows.get(trial.trial_id, {}).get("status") == "running" and trial.status == "TERMINATED":
                self._update(trial, "stopped", trial.last_result or {})

    def _update(self, trial, status, result, error=""):
        self.rows[trial.trial_id] = leaderboard.make_row(
            trial_id=trial.trial_id, status=status, config=trial.config, result=result,
            objective=self.spec.objective, error=error,
        )
        self._write()

    def _write(self) -> None:
        rows = leaderboard.ranked(self.rows.values(), self.spec.objective, self.spec.mode)
        leaderboard.write(self.sweep_dir, rows, self.spec.objective)


def _error_message(trial) -> str:
    """The last line of the trial's traceback: the exception and its message."""
    path = getattr(trial, "error_file", None)
    if path and Path(path).is_file():
        text = Path(path).read_text()
        if "The actor died unexpectedly" in text and "OutOfMemoryError" not in text:  # Ray's words run long
            return ("the trial's worker process died: killed by the system (often the out-of-memory killer) "
                    "or its node was lost")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return lines[-1][:500]
    return "the trial failed (no error message was recorded)"


def _save_run_files(spec: Spec, sweep_dir: Path, index: DatasetIndex, options: RunOptions,
                    weight_files: dict[str, str | None], ray_session: dict | None) -> None:
    """The sweep's own files; sweep.json last, as the mark of a sweep that `sweeper resume` can continue."""
    header = f"# The spec as run; relative paths are relative to {spec.path.parent}\n"
    (sweep_dir / results.SAVED_SPEC).write_text(header + yaml.safe_dump(spec.raw, sort_keys=False))
    (sweep_dir / "data_summary.json").write_text(json.dumps(index.summary(), indent=2))
    leaderboard.write(sweep_dir, [], spec.objective)  # exists from the start, even if no trial reports
    meta = {
        "name": spec.name,
        "spec_path": str(spec.path),
        "objective": spec.objective,
        "mode": spec.mode,
        "task": spec.task,
        "classes": list(index.classes),
        "data_fingerprint": index.fingerprint,
        "address": options.address,
        "experiment": results.recorded_experiment(sweep_dir, options.storage),
        "options": options.to_meta(),
        "weight_files": weight_files,
        "ray_session": ray_session,  # the local Ray this driver started: a resume after a kill ends what it left
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sweeper_version": __version__,
    }
    results.write_meta(sweep_dir, meta)


def _weight_files(spec: Spec, weights_dirs: tuple[str, ...]) -> dict[str, str | None]:
    """The local weight file of each pretrained backbone in the space, at each image size the data
    was decoded at, {"backbone@size": path or None}; recorded, so that a resume can check them."""
    if spec.weights != "imagenet":
        return {}
    size = spec.space.image_size
    sizes = [int(size.low)] if isinstance(size, Range) else sorted(values_of(size))
    found = {}
    for name in values_of(spec.space.backbone):
        backbone = REGISTRY[name]
        for px in sizes if backbone.pretrained else ():
            local = find_local(backbone, px, weights_dirs)
            found[f"{name}@{px}"] = str(local) if local else None
    return found


def _warn_missing_weights(weight_files: dict[str, str | None], console: Console) -> None:
    for name in dict.fromkeys(key.split("@")[0] for key, path in weight_files.items() if path is None):
        console.print(
            f"[yellow]warning:[/] no local ImageNet weights for {name}; `run` will have Keras download them before "
            "the sweep starts, and stop if that fails (pass --weights-dir or set $SWEEPER_WEIGHTS to use local files)"
        )


FETCH_TIMEOUT_S = 900  # ResNet50's no-top file is 94 MB


def _fetch_missing_weights(weight_files: dict[str, str | None], weights_dirs: tuple[str, ...],
                           console: Console) -> dict[str, str | None]:
    """Weights no searched folder holds are downloaded by Keras before the sweep starts, in a Ray
    worker. Trials used to try this each on their own: offline, TPE kept proposing the backbone and
    most of the budget ended in errors. A failed download stops the sweep here, in one line."""
    found = dict(weight_files)
    fetch = ray.remote(num_cpus=0)(weight_lookup.fetch)
    for key in [key for key, path in found.items() if path is None]:
        name, size = key.split("@")
        backbone = REGISTRY[name]
        console.print(f"{name}: no local ImageNet weights; downloading them with Keras", markup=False)
        try:
            error = ray.get(fetch.remote(backbone, int(size)), timeout=FETCH_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            error = f"no answer in {FETCH_TIMEOUT_S} s"
        local = find_local(backbone, int(size), weights_dirs)
        if local is None and error:
            raise SweeperError(f"{weight_lookup.missing_message(backbone, int(size), weights_dirs)}; "
                               f"the download failed too ({error})")
        found[key] = str(local) if local else None  # None: downloaded on another node, where trials find it
    return found


def _check_weight_files(sweep_dir: Path, weight_files: dict[str, str | None]) -> None:
    """Refuse, before Ray starts, to resume a sweep whose weight files have gone since it ran."""
    gone = [(key, path) for key, path in weight_files.items() if path and not Path(path).is_file()]
    if gone:
        key, path = gone[0]
        raise SweeperError(f"{sweep_dir}: the ImageNet weights this sweep used for {key.replace('@', ' at ')} px "
                           f"are gone ({path}); put the file back to resume it")


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
        table.add_row(Text(name), *(f"{v:g}" for v in values))  # a class name is text, not markup
    console.print(table)
    if index.skipped:
        shown = "; ".join(f"{p} ({r})" for p, r in index.skipped[:3])
        more = f" and {len(index.skipped) - 3} more, listed in data_summary.json" if len(index.skipped) > 3 else ""
        console.print(f"[yellow]skipped {len(index.skipped)} files[/]: {escape(shown + more)}", highlight=False)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    )
