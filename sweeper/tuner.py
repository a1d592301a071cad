"""Tune's assembly for a sweep: the Tuner (trainable, Optuna searcher, ASHA, storage,
checkpoints), and Ray itself: starting or attaching to it, and checking what a trial asks for.
"""

from __future__ import annotations

import os
import socket
from contextlib import nullcontext

import ray
from ray import tune
from rich.console import Console
from rich.markup import escape

from . import environment, gpus, leftovers, private_apis
from .errors import SweeperError
from .native_stderr import quiet_native_stderr
from .resumable import ResumableASHA
from .search_space import DefineByRun, sampler_for
from .space import trial_count
from .spec import Spec
from .trial import TrialContext, run_trial
from .units import plural


def make_tuner(spec: Spec, context: TrialContext, experiment: str, callbacks: list[tune.Callback],
               stoppers: list[tune.Stopper], *, reuse_workers: bool = True, resume: bool = False,
               first: list[dict] = (), packing: gpus.Packing | None = None):
    """The Tune experiment at `experiment`; with `resume`, the same experiment continued from its saved state.
    `first`: Optuna parameters the searcher proposes first (each fixes some; it draws the rest).
    `packing`: each architecture's share of a GPU (`gpus_per_trial: auto`); else the spec's number.

    A resumed sweep is built exactly like a new one, rather than unpickled by `Tuner.restore`: the
    callbacks must talk to this driver's display and progress board, not the killed driver's.
    Tune then restores the trials and the searcher's history from the experiment's saved state.
    """
    from ray.tune.search import ConcurrencyLimiter

    from .searcher import DistinctOptunaSearch, ExtendableSearch

    budget = spec.budget
    several = len(spec.objectives) > 1  # Optuna's multi-objective study: lists of metrics and modes
    searcher = DistinctOptunaSearch(DefineByRun(spec.space), metric=list(spec.objectives) if several else spec.objective,
                                    mode=list(spec.modes) if several else spec.mode, sampler=sampler_for(spec),
                                    constraints=spec.constraints, points_to_evaluate=list(first) or None)
    # The limiter inside the generator, as Tune would wrap them itself from max_concurrent_trials.
    search = ExtendableSearch(ConcurrencyLimiter(searcher, max_concurrent=budget.concurrent_trials),
                              total=trial_count(spec))
    scheduler = ResumableASHA(
        time_attr="training_iteration",
        max_t=budget.max_epochs,
        grace_period=budget.grace_epochs,
        reduction_factor=budget.reduction_factor,
    )
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, context=context),
        packing.resources if packing else {"cpu": budget.cpus_per_trial, "gpu": gpus.fixed_share(budget)},
    )
    return private_apis.make_tuner(
        trainable,
        resume=resume,
        tune_config=tune.TuneConfig(
            metric=spec.objective,
            mode=spec.mode,
            search_alg=search,
            scheduler=scheduler,
            num_samples=trial_count(spec),
            time_budget_s=budget.time_limit,
            reuse_actors=reuse_workers,  # keeps TensorFlow imported, and models warm, between trials
            trial_dirname_creator=trial_dirname,
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


def trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"  # Tune's default name spells out the config and gets too long


def check_resources(budget, *, autoscaling: bool, console: Console) -> None:
    """A trial that asks for more CPUs or GPUs than any Ray node has waits forever, silently (Ray's
    warning goes to ray.log): refuse it before the sweep starts. On a cluster (--address) an
    autoscaler may still add such a node, so there it is a warning."""
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    cpus, gpus_wanted = budget.cpus_per_trial, gpus.fixed_share(budget)  # auto: at most the whole GPU it measured on
    if any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus_wanted for r in nodes):
        return
    largest = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
    message = (f"budget: a trial asks for {plural(float(cpus), 'CPU')} and {plural(float(gpus_wanted), 'GPU')} "
               "(cpus_per_trial, gpus_per_trial), but no Ray node has that much (the largest: "
               f"{plural(float(largest.get('CPU', 0)), 'CPU')}, {plural(float(largest.get('GPU', 0)), 'GPU')})")
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


def init_ray(address: str | None) -> dict | None:
    """Start (or attach to) Ray; returns the local Ray session this call started, or None."""
    if ray.is_initialized():
        return None
    environment.set_defaults(environment.DRIVER)
    attached = address or os.environ.get("RAY_ADDRESS")  # `ray job submit` runs its entrypoint with it set
    # Attaching, Ray's C++ client writes a warning a second while the cluster refuses it; a local
    # start is not held back, as the processes it starts would inherit the held stream.
    with quiet_native_stderr() if address else nullcontext():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                     runtime_env={"worker_process_setup_hook": "sweeper.trial.warm_up_worker"})
        except (ConnectionError, RuntimeError, ValueError) as exc:
            if address:
                raise SweeperError(_not_attached(address, exc)) from None
            raise
    return None if attached else leftovers.current_session()  # a cluster's Ray is never the driver's to end


def _not_attached(address: str, exc: BaseException) -> str:
    """Why ray.init did not attach, in one line: most often a cluster that asks for a token."""
    chain = []
    while exc is not None and len(chain) < 10:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    if any(isinstance(e, ray.exceptions.AuthenticationError) or "InvalidAuthToken" in str(e) for e in chain):
        return (f"--address {address}: the Ray cluster there uses token authentication and refused this driver; "
                "set RAY_AUTH_MODE=token here, with the cluster's token in ~/.ray/auth_token or $RAY_AUTH_TOKEN "
                "(`ray get-auth-token` on its head prints it)")
    return f"--address {address}: cannot reach a Ray cluster there ({chain[0]})"
