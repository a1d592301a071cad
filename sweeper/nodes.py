"""What every node of a Ray cluster must see: the data, the cache, the weights and a local --storage.

Trials open these by the paths the driver resolved. On a cluster they must be the same paths on
every node, so they belong on a shared filesystem (NFS, a mounted bucket). A node without one
would fail each trial sent to it with a file-not-found error deep in the data or the model
code. So on a cluster the driver asks every node before the first trial, and each trial asks
its own node as it starts (nodes can join later); either way, the error names the node and the path.
"""

from __future__ import annotations

import socket
from pathlib import Path

from .errors import SweeperError


class NodeLacksPath(RuntimeError):
    """A trial's node does not see a path every node needs."""


def required_paths(spec, options, *, in_every_trial: bool = False) -> tuple[tuple[str, str], ...]:
    """(what it is, path) for what trials open: the data, the cache, the weights folders that exist
    where the driver runs, and --storage when it is a path (a URI is read by pyarrow anywhere).
    `in_every_trial`: only what each trial opens whatever the cache holds (the cache, --storage)."""
    data = spec.data
    paths = [] if in_every_trial else [
        (f"data.{name}", getattr(data, name)) for name in ("train", "validation", "test", "csv", "images")
        if getattr(data, name) is not None]
    paths.append(("the cache (--cache-dir)", options.cache_dir))
    if not in_every_trial:  # a trial whose features or weights are cached opens neither
        paths += [("a weights folder", folder) for folder in options.weights_dirs if Path(folder).is_dir()]
    if options.storage and "://" not in options.storage:
        paths.append(("--storage", options.storage))
    return tuple((what, str(path)) for what, path in paths)


def missing_here(paths) -> list[tuple[str, str]]:
    return [(what, path) for what, path in paths if not Path(path).exists()]


def this_node() -> str:
    """This node as people find it: its IP address and host name."""
    import ray

    address = ray.util.get_node_ip_address() if ray.is_initialized() else "?"
    return f"{address} ({socket.gethostname()})"


def lacks_message(node: str, missing: list[tuple[str, str]]) -> str:
    listed = "; ".join(f"{what} at {path}" for what, path in missing)
    return (f"node {node} does not see {listed}: every node needs them at the same path "
            "(a shared filesystem or a mounted bucket; see the README's 'Running on a cluster')")


def check_trial_node(paths) -> None:
    """In a trial: NodeLacksPath naming this node and what it lacks."""
    missing = missing_here(paths)
    if missing:
        raise NodeLacksPath(lacks_message(this_node(), missing))


def check_cluster(paths, timeout_s: float = 120) -> None:
    """SweeperError naming the first node (of those alive) that lacks any of `paths`, before any trial.

    One small task on each node, with no CPU reserved and without TensorFlow (a cold worker)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from . import environment

    ask = ray.remote(num_cpus=0, max_retries=0)(_ask_node)
    cold = {"env_vars": {environment.COLD_WORKER: "1"}}
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    asked = [ask.options(runtime_env=cold, scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
             .remote(paths) for node in nodes]
    for node, answer in zip(nodes, asked):
        try:
            where, missing = ray.get(answer, timeout=timeout_s)
        except Exception as exc:  # sweeper missing from the node's Python, most often
            last = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:300]
            raise SweeperError(f"node {node['NodeManagerAddress']} ({node.get('NodeManagerHostname', '?')}) could not "
                               f"run sweeper's check of its paths: {last} (sweeper-tune must be installed, the same "
                               "version, in the Python Ray runs on every node)") from None
        if missing:
            raise SweeperError(lacks_message(where, missing))


def _ask_node(paths) -> tuple[str, list[tuple[str, str]]]:
    return this_node(), missing_here(paths)
