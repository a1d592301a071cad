"""The driver: from a validated spec to a finished Ray Tune sweep in `results/<sweep>/`.

Optuna's TPE proposes configurations (define-by-run, for the conditional `cut`), ASHA stops
weak trials at its rungs, and a callback keeps the leaderboard files current. The driver
never imports TensorFlow: trials do, in Ray's worker processes.

Here: the entry points (`run_sweep`, `resume_sweep`), the options a run resolves and records,
and the sweep from start to summary. Elsewhere: what happens before the first trial
(preparation.py), the Tuner's assembly and Ray (tuner.py), what Tune calls while the sweep runs
(sweep_callbacks.py), what lets a sweep resume (resumable.py, saved_state.py).
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import ray
import yaml
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from rich.console import Console
from rich.markup import escape

from . import (
    __version__,
    baseline,
    cache,
    checkpoint,
    environment,
    evaluate,
    gpus,
    leaderboard,
    leftovers,
    mlflow_runs,
    nodes,
    own_models,
    results,
    triage,
    versions,
    warm_start,
)
from .backbones import declared
from .data import DatasetIndex
from .errors import SweeperError
from .files import DriverLock, write_atomic
from .live import LiveView, SweepInfo, ray_output_to
from .optuna_journal import OptunaJournal
from .preparation import (
    check_cache_dir,
    check_feature_disk,
    check_weight_files,
    decode_data,
    estimate_features,
    fetch_missing_weights,
    index_data,
    prepare_data,
    weight_files_of,
)
from .progress import ProgressBoard, waiting
from .resumable import CheckpointPruner, KeepEndedResults, ended_trials
from .saved_state import check_experiment_state
from .search_space import quiet_optuna, startup_trials
from .space import fixed_values, space_size, trial_count
from .spec import Spec, parse_spec
from .status import SweepState, TrialStatus

# Re-exported: Tune pickled these (in its saved state) as sweeper.driver.*; older sweeps still resume.
from .sweep_callbacks import AloneAfterGpuOutOfMemory, EarlyEnd, FailureGuard, LeaderboardCallback, StopAt  # noqa: F401
from .tensorboard_logs import TensorBoardLogs
from .training import memory_budget_override
from .trial import REPLAYED, TrialContext
from .tuner import check_address, check_resources, init_ray, make_tuner
from .tuner import trial_dirname as _trial_dirname  # noqa: F401  (the same: sweeper.driver._trial_dirname)
from .units import plural
from .weight_files import search_dirs


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
    cache_max_size: int | None = None  # bytes: the cache is pruned to it as the sweep starts and ends
    # Cached activations inside a backbone (unfreeze > 0) as float16: half the disk and memory, and
    # within the noise of another seed in accuracy (benchmarks/README.md, bench_float16).
    spatial_features: str = "float16"
    # From $SWEEPER_MEMORY_BUDGET when the sweep starts or resumes (not recorded): None lets each
    # trial size its held inputs from its machine's memory.
    memory_budget: int | None = None

    def resolved(self, spec: Spec) -> RunOptions:
        """Every path absolute and every default filled in, as the sweep will record them."""
        weights_dir = self.weights_dir or spec.weights_dir
        storage = self.storage
        if storage and "://" not in storage:
            storage = str(Path(storage).expanduser().resolve())
        return replace(self, cache_dir=(self.cache_dir or results.default_cache(self.out)).resolve(),
                       weights_dir=Path(weights_dir).expanduser().resolve() if weights_dir else None,
                       weights_dirs=tuple(str(d.resolve()) for d in search_dirs(weights_dir)), storage=storage,
                       memory_budget=memory_budget_override())

    def to_meta(self) -> dict:
        """What `sweeper resume` needs to run the sweep on the same way (saved in sweep.json)."""
        return {"weights_dir": str(self.weights_dir) if self.weights_dir else None,
                "weights_dirs": list(self.weights_dirs), "cache_dir": str(self.cache_dir),
                "feature_cache": self.feature_cache, "reuse_workers": self.reuse_workers, "storage": self.storage,
                "cache_max_size": self.cache_max_size, "spatial_features": self.spatial_features}

    @classmethod
    def from_meta(cls, meta: dict, out: Path) -> RunOptions:
        saved = meta.get("options", {})
        weights_dir = Path(saved["weights_dir"]) if saved.get("weights_dir") else None
        return cls(out=out, address=meta.get("address"), weights_dir=weights_dir,
                   cache_dir=Path(saved.get("cache_dir") or results.default_cache(out)),
                   feature_cache=saved.get("feature_cache", True), reuse_workers=saved.get("reuse_workers", True),
                   storage=saved.get("storage"), memory_budget=memory_budget_override(),
                   cache_max_size=saved.get("cache_max_size"),
                   spatial_features=saved.get("spatial_features", "float32"),  # sweeps from before float16: as they ran
                   # Sweeps recorded before weights_dirs searched the environment of the day.
                   weights_dirs=tuple(saved.get("weights_dirs") or (str(d) for d in search_dirs(weights_dir))))


class Stages:
    """How long each stage of a `run` or `resume` took, from the command's start: printed at the
    end and kept in sweep.json, to show where a sweep's time goes."""

    def __init__(self):
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        began = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - began, 2)

    def total(self) -> float:
        return round(time.perf_counter() - self.started, 2)

    def line(self, total: float) -> str:
        other = total - sum(self.seconds.values())  # the spec, the lock, the files, the summary
        parts = [f"{name} {seconds:.1f} s" for name, seconds in self.seconds.items()]
        return f"{total:.1f} s: " + ", ".join([*parts, f"the rest {max(0.0, other):.1f} s"])


def run_sweep(spec: Spec, options: RunOptions, console: Console | None = None) -> Path:
    """Run the whole sweep; returns the sweep folder."""
    console = console or Console()
    stages = Stages()
    if options.address:
        check_address(options.address)  # before any work: Ray itself waits minutes on a wrong address
    if spec.tracking.mlflow:
        mlflow_runs.check(spec.tracking.mlflow)
    if spec.backbones:  # they load, take the space's images and have its cuts, before anything is written
        with stages("own models"):
            spec = own_models.inspect(spec)
    with declared(spec.backbones):
        return _run(spec, options, console, stages)


def _run(spec: Spec, options: RunOptions, console: Console, stages: Stages) -> Path:
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
            check_cache_dir(options.cache_dir)
            _cap_cache(options, console)
            with stages("data index"):
                index = index_data(spec, options.cache_dir)
            # Where the registry does not tell the frozen features' shapes, a process of their own
            # reads them, its TensorFlow import overlapping Ray's start and the decoding.
            with estimate_features(spec, options.cache_dir, use_feature_cache=options.feature_cache,
                                   spatial_dtype=options.spatial_features) as estimate:
                with stages("Ray's start"):
                    ray_session = init_ray(options.address)
                    check_resources(spec.budget, autoscaling=options.address is not None, console=console)
                    _check_cluster_nodes(spec, options)
                with stages("decoding"):
                    index = decode_data(spec, index, options.cache_dir, console)
                with stages("weights and disk"):
                    weight_files = fetch_missing_weights(weight_files_of(spec, options.weights_dirs),
                                                         options.weights_dirs, console)
                    cache_sizes = check_feature_disk(spec, index, options.cache_dir, estimate, console)
            _save_run_files(spec, sweep_dir, index, options, weight_files, ray_session, cache_sizes)
            spec, ranked = _triaged(spec, sweep_dir, index, options, console, stages)
            return _tune(spec, sweep_dir, index, options, console, stages=stages, ranked=ranked)
    except BaseException:
        if created:  # stopped before it wrote anything: the folder it made would block a rerun
            _remove_if_only_lock(sweep_dir)
        raise


def _check_cluster_nodes(spec: Spec, options: RunOptions) -> None:
    """On a cluster (--address, or RAY_ADDRESS as `ray job submit` sets it), every node sees the
    data, the cache and the weights before the first trial (nodes.py). Locally they are the driver's."""
    if options.address or os.environ.get("RAY_ADDRESS"):
        if options.storage and "://" not in options.storage:  # Tune would make it as the first trial starts
            Path(options.storage).mkdir(parents=True, exist_ok=True)
        nodes.check_cluster(nodes.required_paths(spec, options))


def _cap_cache(options: RunOptions, console: Console) -> None:
    """--cache-max-size: the least recently used entries go; those in use (this sweep's) stay."""
    if options.cache_max_size is not None:
        cache.prune_and_say(options.cache_dir, console, max_size=options.cache_max_size)


def _remove_if_only_lock(sweep_dir: Path) -> None:
    try:
        lock = results.SweepFolder(sweep_dir).lock
        if list(sweep_dir.iterdir()) == [lock]:
            lock.unlink()
            sweep_dir.rmdir()
    except OSError:
        pass


def _refuse_existing(sweep_dir: Path) -> None:
    lock = results.SweepFolder(sweep_dir).lock
    if sweep_dir.exists() and any(p != lock for p in sweep_dir.iterdir()):
        hint = ("see it with `sweeper leaderboard`" if results.state_of(sweep_dir) == SweepState.FINISHED
                else f"continue it with `sweeper resume {sweep_dir}`")
        raise SweeperError(f"{sweep_dir} already exists; choose another --name, or {hint}")


def resume_sweep(sweep_dir: Path, *, address: str | None = None, trials: int | None = None,
                 console: Console | None = None) -> Path:
    """Continue an interrupted sweep where its saved state left it; returns the sweep folder.

    Trials that ended stay as they are; trials that were running continue from their kept
    checkpoint; the searcher keeps its history and ASHA its rungs; every option the run resolved
    (weights folders, cache, storage) is the recorded one. The budget is the original one, or
    `trials` in all: a larger total continues a finished sweep too (`sweeper resume --trials N`).
    """
    console = console or Console()
    stages = Stages()
    sweep_dir = Path(sweep_dir).resolve()
    results.require_sweep(sweep_dir)  # before the lock: no lock file in a folder that is not a sweep
    with DriverLock(sweep_dir):
        spec = results.saved_spec(sweep_dir)
        meta = results.read_meta(sweep_dir)
        other = versions.another_version(meta.get("sweeper_version"), str(sweep_dir))
        if other:
            console.print(f"[yellow]note:[/] {escape(other)}; it resumes with this version's code", soft_wrap=True)
        ranked = triage.read_ranking(results.SweepFolder(sweep_dir).triage)
        before = trial_count(_as_triaged(spec, ranked))
        if trials is not None:
            spec = _extended(spec, trials, ranked)
        elif results.state_of(sweep_dir) == SweepState.FINISHED:
            ran = len(leaderboard.read(sweep_dir))  # fewer than the budget when time_limit or stop_at ended it
            raise SweeperError(f"{sweep_dir}: this sweep has finished, with {plural(ran, 'trial')}; nothing to resume "
                               f"(add trials with `sweeper resume {sweep_dir} --trials N`, N the new total)")
        options = RunOptions.from_meta(meta, out=sweep_dir.parent)
        options = replace(options, address=address or options.address)
        check_cache_dir(options.cache_dir)
        _cap_cache(options, console)
        _end_leftovers(meta.get("ray_session"), console)
        if options.address:
            check_address(options.address)
        if spec.tracking.mlflow:
            mlflow_runs.check(spec.tracking.mlflow)
        check_weight_files(sweep_dir, meta.get("weight_files") or {})
        # No leaderboard: the driver was killed as the sweep started, before it wrote one.
        saved = leaderboard.read(sweep_dir) if results.SweepFolder(sweep_dir).leaderboard.is_file() else []
        check_experiment_state(results.experiment_of(sweep_dir), trials_recorded=len(saved))  # before Tune reads it
        with stages("data"):
            index = prepare_data(spec, options.cache_dir, console)
        if index.fingerprint != meta.get("data_fingerprint"):
            raise SweeperError(f"{sweep_dir}: the data changed since the sweep started (fingerprint "
                               f"{index.fingerprint}, the sweep saw {meta.get('data_fingerprint')}); "
                               "run the spec as a new sweep instead")
        with stages("Ray's start"):
            results.update(sweep_dir, ray_session=init_ray(options.address))  # at once: a kill may come next
            check_resources(spec.budget, autoscaling=options.address is not None, console=console)
            _check_cluster_nodes(spec, options)
        if ranked is None and spec.budget.triage != "off":  # stopped while it ranked them, before any trial
            spec, ranked = _triaged(spec, sweep_dir, index, options, console, stages)
            before = trial_count(spec)
        spec = _as_triaged(spec, ranked)
        if trial_count(spec) != before:  # recorded before any trial runs: a plain resume goes on to the new total
            _write_spec(sweep_dir, spec)
            results.mark(sweep_dir, SweepState.INTERRUPTED)  # not finished, whatever stops it before Tune starts
            results.update(sweep_dir, extended=[*meta.get("extended", []), {
                "from": before, "to": trial_count(spec), "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}])
            console.print(f"adding {plural(trial_count(spec) - before, 'trial')} to {before}; the searcher goes on "
                          "from its history", markup=False)
        return _tune(spec, sweep_dir, index, options, console, stages=stages, saved=saved, ranked=ranked)


def _triaged(spec: Spec, sweep_dir: Path, index: DatasetIndex, options: RunOptions, console: Console,
             stages: Stages) -> tuple[Spec, list | None]:
    """`budget.triage`: every (backbone, cut, image size) ranked on frozen features before the
    first trial, kept in triage.json; and the spec as the search sees it (pruned with `prune`)."""
    if spec.budget.triage == "off":
        return spec, None
    with stages("triage"):
        ranked = triage.rank_for_sweep(spec, index, cache_dir=options.cache_dir, weights_dirs=options.weights_dirs,
                                       spatial_dtype=options.spatial_features, console=console)
    triage.write_ranking(ranked, results.SweepFolder(sweep_dir).triage)
    return _as_triaged(spec, ranked), ranked


def _as_triaged(spec: Spec, ranked: list | None) -> Spec:
    """The space the search draws from: the spec's, less what `budget.triage: prune` dropped."""
    if ranked is None or spec.budget.triage != "prune":
        return spec
    return triage.pruned(spec, ranked)


def _extended(spec: Spec, trials: int, ranked: list | None = None) -> Spec:
    """The spec with `trials` in all; refused when that is not more than it has, or than its space
    (as triage left it) holds."""
    searched = _as_triaged(spec, ranked)
    have, size = trial_count(searched), space_size(searched.space)
    if trials <= have:
        raise SweeperError(f"--trials {trials}: the sweep has {plural(have, 'trial')} already; give the new total, "
                           f"more than {have}")
    if size is not None and trials > size:
        raise SweeperError(f"--trials {trials}: the space holds {plural(size, 'configuration')}, and no configuration "
                           f"is tried twice; {plural(size - have, 'more trial')} at most")
    return parse_spec(spec.raw, spec.path, overrides={"budget.trials": trials})


def _tune(spec: Spec, sweep_dir: Path, index: DatasetIndex, options: RunOptions, console: Console, *,
          stages: Stages, saved: list[dict] | None = None, ranked: list | None = None) -> Path:
    """Run (or, given the `saved` leaderboard rows, resume) the Tune experiment, then evaluate and summarise."""
    board = ProgressBoard.options(  # on the driver's node: on a cluster, a worker node may be lost
        runtime_env={"env_vars": {environment.COLD_WORKER: "1"}},
        scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True),
    ).remote()
    # On resume, the recorded location: the one `check_experiment_state` looked at.
    experiment = results.experiment_of(sweep_dir)
    trials = trial_count(spec)
    ended = ended_trials(saved or [], experiment, spec.objective)
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
        concurrent_trials=spec.budget.concurrent_trials,
        memory_budget=options.memory_budget,
        constraints=spec.constraints,
        measure_tflite=spec.measures_tflite,
        feature_cache=options.feature_cache,
        spatial_features=options.spatial_features,
        precision=spec.budget.precision,
        required_paths=nodes.required_paths(spec, options, in_every_trial=True),
        backbones=spec.backbones,
        progress=board,
        ended=ended,
    )
    if saved is None:
        size = space_size(spec.space)
        console.print(
            f"[bold]{escape(spec.name)}[/]: {plural(trials, 'trial')} ({spec.budget.search} search) over "
            f"{'a continuous space' if size is None else plural(size, 'configuration')}, "
            f"up to {plural(spec.budget.max_epochs, 'epoch')} each, {spec.budget.concurrent_trials} at a time; "
            + (f"objective {spec.objective} ({spec.mode})" if len(spec.objectives) == 1 else
               f"the Pareto front of {' and '.join(f'{o} ({m})' for o, m in zip(spec.objectives, spec.modes))}")
            + (f"; constraints {escape(spec.constraints.summary())}" if spec.constraints else "")
        )
    else:
        console.print(f"[bold]{escape(spec.name)}[/]: resuming; {len(ended)} of {plural(trials, 'trial')} had ended, "
                      f"{plural(len(saved) - len(ended), 'was', 'were')} running")
    guard = FailureGuard(min(trials, max(3, spec.budget.concurrent_trials + 1)), saved or [])
    stop_at = StopAt(spec.objective, spec.mode, spec.budget.stop_at) if spec.budget.stop_at is not None else None
    early_end = EarlyEnd([guard, *([stop_at] if stop_at else [])], spec.budget.time_limit)
    files = LeaderboardCallback(sweep_dir, spec, saved, experiment, early_end, triage=ranked and triage.scores(ranked))
    info = SweepInfo(name=spec.name, objective=spec.objective, mode=spec.mode, trials=trials,
                     max_epochs=spec.budget.max_epochs, time_limit=spec.budget.time_limit,
                     fixed=fixed_values(spec.space))
    pruner = CheckpointPruner()
    files.view = LiveView(info, files.rows, console, board, ended)  # told each event once the rows are current
    tensorboard = TensorBoardLogs(results.SweepFolder(sweep_dir).tensorboard, replayed_key=REPLAYED)
    journal = OptunaJournal(results.SweepFolder(sweep_dir).optuna_journal, study_name=spec.name, space=spec.space,
                            objective=spec.objective, mode=spec.mode, max_epochs=spec.budget.max_epochs,
                            replayed_key=REPLAYED)
    mlflow = _mlflow_runs(spec, sweep_dir, files, ended, console)
    callbacks = [files, guard, pruner, KeepEndedResults(set(ended)), AloneAfterGpuOutOfMemory(), tensorboard, journal,
                 *([mlflow] if mlflow else [])]
    packing = _gpu_packing(spec, sweep_dir, index, options, console, stages)
    results.mark(sweep_dir, SweepState.RUNNING)
    try:
        with quiet_optuna(), ray_output_to(results.SweepFolder(sweep_dir).ray_log):
            first = _first_points(spec, sweep_dir, index, ranked, console) if saved is None else []
            tuner = make_tuner(spec, context, experiment, callbacks, early_end.stoppers,
                               reuse_workers=options.reuse_workers, resume=saved is not None, first=first,
                               packing=packing)
            with stages("trials"):
                tuner.fit()
        pruner.prune_all()
    except KeyboardInterrupt:  # a second Ctrl+C: Tune stops at once
        results.mark(sweep_dir, SweepState.INTERRUPTED)
        raise KeyboardInterrupt(f"continue it with: sweeper resume {sweep_dir}") from None
    except BaseException:
        results.mark(sweep_dir, SweepState.INTERRUPTED)
        raise
    finally:
        ray.kill(board)

    rows = leaderboard.read(sweep_dir)
    # Infeasible trials do not count against the budget; as many of them as it has trials may run on top.
    infeasible = sum(r["status"] == TrialStatus.INFEASIBLE for r in rows)
    counted = len(rows) - infeasible
    # Tune returns normally after Ctrl+C too, with the trials it cut off still `running` (or not started).
    if any(r["status"] == TrialStatus.RUNNING for r in rows) or (counted < trials and infeasible < trials
                                                                    and not early_end()):
        results.mark(sweep_dir, SweepState.INTERRUPTED)
        leaderboard.render(rows, spec.objective, console, title=f"{spec.name} so far — best {spec.objective} first")
        raise KeyboardInterrupt(f"continue it with: sweeper resume {sweep_dir}")
    if np.any(index.splits == "test"):
        try:
            with stages("test evaluation"):
                rows = _evaluate_best_on_test(spec, index, rows, sweep_dir, context, console)
        except KeyboardInterrupt:  # every trial has ended; a resume runs just the evaluation
            results.mark(sweep_dir, SweepState.INTERRUPTED)
            raise KeyboardInterrupt(f"continue it with: sweeper resume {sweep_dir}") from None
    results.mark(sweep_dir, SweepState.FINISHED)  # after the evaluation: its results are part of it
    pruner.prune_all(finished=True)
    _cap_cache(options, console)
    if guard.stop_all():
        first = next((r["error"] for r in rows if r.get("error")), "no message")
        # Only a sweep of one trial stops after one failure (FailureGuard's limit is 3, or all its trials).
        failed = f"the first {guard.failed} trials all failed" if guard.failed > 1 else "the sweep's only trial failed"
        more = trials - guard.failed  # not yet started, or stopped as this one ended
        stopped = f", so the sweep stopped instead of running {more} more" if more > 0 else ""
        raise SweeperError(f"{failed}{stopped}; the first error: {first} (all in {sweep_dir})")
    leaderboard.render(rows, spec.objective, console, title=f"{spec.name} — best {spec.objective} first")
    if len(spec.objectives) > 1:
        front = [r["trial_id"] for r in rows if r.get("pareto")]
        console.print(f"Pareto front of {' and '.join(spec.objectives)}: {plural(len(front), 'trial')} "
                      f"({', '.join(front)})",
                      markup=False, highlight=False)
    if counted < trials and infeasible >= trials:
        console.print(f"[yellow]only {counted} of {plural(trials, 'trial')} trained: "
                      f"{plural(infeasible, 'proposal')} broke the constraints ({escape(spec.constraints.summary())}), "
                      f"and at most {trials} may run beyond the budget; loosen them or narrow the space[/]")
    said, warning = baseline.lines(results.read_meta(sweep_dir).get("baseline"),  # recorded as the sweep started
                                   next(iter(leaderboard.scored(rows, spec.objective)), None))
    for i, line in enumerate(said):
        console.print(line, style="yellow" if warning and i else None, markup=False, highlight=False)
    total = stages.total()
    results.update(sweep_dir, stages={**stages.seconds, "total": total})
    console.print(f"Finished in {stages.line(total)}. Results: {sweep_dir}", markup=False)
    if mlflow is not None:
        mlflow.finish(sweep_dir)
    return sweep_dir


def _first_points(spec: Spec, sweep_dir: Path, index: DatasetIndex, ranked: list | None,
                  console: Console) -> list[dict]:
    """What the searcher proposes first, in place of TPE's random start-up (a resumed search has
    them already): the best configurations of earlier sweeps (`warm_start`), then the best-ranked
    pairs of triage, as many as the start-up has trials (or the sweep, if fewer)."""
    count = min(startup_trials(spec), trial_count(spec))
    first: list[dict] = []
    if spec.warm_start:
        found = warm_start.seeds(spec, spec.warm_start, fingerprint=index.fingerprint, ranked=ranked, count=count,
                                 exclude=sweep_dir)
        results.update(sweep_dir, warm_start={"folder": str(spec.warm_start), "configurations": [
            {"sweep": s.sweep, "trial_id": s.trial_id, s.objective: s.value, "why": s.why} for s in found]})
        console.print(f"warm start: {plural(len(found), 'configuration')} from earlier sweeps in "
                      f"{spec.warm_start} go first"
                      + "".join(f"\n  trial {s.trial_id} of {s.sweep} ({s.why}): {s.objective} {s.value:.4g}"
                                for s in found), markup=False, highlight=False)
        first += [s.params for s in found]
    if ranked:
        first += [p for p in triage.first_points(spec, ranked, count) if p not in first]
    return first[:count]


def _mlflow_runs(spec: Spec, sweep_dir: Path, files: LeaderboardCallback, ended: dict,
                 console: Console) -> mlflow_runs.MlflowRuns | None:
    """The MLflow callback when the spec asks for one (`tracking.mlflow`), its runs recorded in sweep.json."""
    if not spec.tracking.mlflow:
        return None
    runs = mlflow_runs.MlflowRuns(spec.tracking.mlflow, sweep_dir=sweep_dir, name=spec.name, objective=spec.objective,
                                  rows=files.rows, ended_before=set(ended), replayed_key=REPLAYED,
                                  recorded=results.read_meta(sweep_dir).get("mlflow"), console=console)
    results.update(sweep_dir, mlflow={"uri": spec.tracking.mlflow, "experiment_id": runs.experiment,
                                      "run_id": runs.parent})
    return runs


def _evaluate_best_on_test(spec, index, rows, sweep_dir: Path, context: TrialContext, console: Console) -> list[dict]:
    """Evaluate the best trial's best checkpoint on the test split; its row gains `test_*` columns."""
    best = next(iter(leaderboard.scored(rows, spec.objective)), None)
    if best is None:
        console.print("[yellow]no trial finished an epoch: nothing to evaluate on the test split[/]")
        return rows
    if any(key.startswith("test_") for key in best):  # resumed with more trials, and the best is the same
        console.print(f"the best trial is still {best['trial_id']}: its test evaluation stands", markup=False)
        return rows
    for row in rows:  # another trial was best before the sweep was extended
        for key in [key for key in row if key.startswith("test_")]:
            del row[key]
    checkpoint_dir = checkpoint.find(sweep_dir, best["trial_id"])
    # It takes 20-40 s (a TensorFlow process starts): shown, so the silence is not taken for a hang.
    predict = ray.remote(num_cpus=spec.budget.cpus_per_trial)(evaluate.predict_split)
    with waiting(console, f"evaluating the best trial, {best['trial_id']}, on the "
                          f"{plural(int(np.sum(index.splits == 'test')), 'test image')}..."):
        outputs = ray.get(predict.remote(str(checkpoint_dir), index, "test", context.cache_dir, context.cpus))
    folder = results.SweepFolder(sweep_dir).evaluation
    metrics = evaluate.report(index, outputs, "test", folder)
    best.update(metrics)
    leaderboard.write(sweep_dir, rows, spec.objective)
    shown = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
    console.print(f"test split, best trial {best['trial_id']}: {shown}  (files in {folder})", markup=False)
    return rows


def _end_leftovers(recorded: dict | None, console: Console) -> None:
    """A resume after a driver was killed: end the local Ray processes it left, and only those."""
    ended = leftovers.end_session(recorded)
    if ended:
        console.print(f"ended {plural(ended, 'Ray process')} the stopped driver had left running (its Ray session "
                      f"{recorded['name']})", markup=False, highlight=False)


def _write_spec(sweep_dir: Path, spec: Spec) -> None:
    header = f"# The spec as run; relative paths are relative to {spec.path.parent}\n"
    write_atomic(results.SweepFolder(sweep_dir).spec, header + yaml.safe_dump(spec.raw, sort_keys=False))


def _gpu_packing(spec: Spec, sweep_dir: Path, index: DatasetIndex, options: RunOptions, console: Console,
                 stages: Stages) -> gpus.Packing | None:
    """`gpus_per_trial: auto`: each architecture's share of a GPU, from its peak memory measured by a
    task on one GPU (cached), and recorded in sweep.json, where a resume finds it; None without GPUs."""
    if spec.budget.gpus_per_trial != gpus.AUTO:
        return None
    recorded = results.read_meta(sweep_dir).get("gpu_packing")
    if recorded:
        return gpus.Packing.from_json(recorded)
    in_cluster = ray.cluster_resources().get("GPU", 0)
    if not in_cluster:
        console.print("gpus_per_trial auto: no GPU in the Ray cluster; trials run on CPUs", markup=False)
        return None
    with stages("GPU memory"):
        measure = ray.remote(num_gpus=1)(gpus.measure)
        measured = ray.get(measure.remote(gpus.architectures(spec.space, spec.weights), task=spec.task,
                                          n_classes=len(index.classes), precision=spec.budget.precision,
                                          cache_dir=str(options.cache_dir), backbones=spec.backbones))
    cpus = spec.budget.cpus_per_trial
    if "error" in measured:
        packing = gpus.Packing("", 0, cpus, spec.weights, note=measured["error"])
    else:
        packing = gpus.Packing.from_peaks(measured["peaks_mb"], gpu=measured["gpu"], memory_mb=measured["memory_mb"],
                                          cap=gpus.share_cap(spec.budget.concurrent_trials, in_cluster),
                                          cpus_per_trial=cpus, weights=spec.weights)
    for line in packing.lines():
        console.print(line, markup=False, highlight=False)
    results.update(sweep_dir, gpu_packing=packing.to_json())
    return packing


def _save_run_files(spec: Spec, sweep_dir: Path, index: DatasetIndex, options: RunOptions,
                    weight_files: dict[str, str | None], ray_session: dict | None, cache_sizes: dict[str, int]) -> None:
    """The sweep's own files; sweep.json last, as the mark of a sweep that `sweeper resume` can continue."""
    folder = results.SweepFolder(sweep_dir)
    _write_spec(sweep_dir, spec)
    write_atomic(folder.data_summary, json.dumps({**index.summary(), "cache": cache_sizes}, indent=2))
    leaderboard.write(sweep_dir, [], spec.objective)  # exists from the start, even if no trial reports
    meta = {
        "name": spec.name,
        "spec_path": str(spec.path),
        "objective": spec.objective,
        "mode": spec.mode,
        **({"objectives": list(spec.objectives), "modes": list(spec.modes)} if len(spec.objectives) > 1 else {}),
        "task": spec.task,
        "classes": list(index.classes),
        "data_fingerprint": index.fingerprint,
        "address": options.address,
        "experiment": results.recorded_experiment(sweep_dir, options.storage),
        "options": options.to_meta(),
        "weight_files": weight_files,
        "precision": spec.budget.precision,  # what the trials computed in: export's parity gate allows for it
        "baseline": baseline.compute(index, spec.objective),  # stated beside the best trial, wherever it is shown
        "ray_session": ray_session,  # the local Ray this driver started: a resume after a kill ends what it left
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sweeper_version": __version__,
    }
    results.write_meta(sweep_dir, meta)


