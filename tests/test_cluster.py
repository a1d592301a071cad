"""A sweep on a real multi-node Ray cluster on this machine: a head with no CPUs and two worker
nodes of one CPU each (`ray.cluster_utils.Cluster`), the experiment in a --storage folder outside
the results. One worker node is killed while its trial trains; Tune reschedules the trial on the
other node and the sweep completes. Tier 2."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_spec

from sweeper import leaderboard, results

pytestmark = pytest.mark.ray

SPEC = """
name: cluster
data: {{train: {digits}, validation_split: 0.2}}
image_size: 32
weights: none
budget: {{trials: 3, max_epochs: 4, grace_epochs: 4, concurrent_trials: 2, cpus_per_trial: 1, max_failures: 2, seed: 3}}
space:
  backbone: simple_cnn
  head: {{pooling: avg, units: [[], [32]], dropout: 0.1}}
  optimizer: adam
  learning_rate: {{low: 1.0e-3, high: 3.0e-3, log: true}}
  batch_size: 32
"""


@pytest.fixture
def cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    yield cluster, workers
    cluster.shutdown()


def test_trials_spread_over_nodes_and_survive_the_loss_of_one(tmp_path, digits_dir, cluster):
    cluster, workers = cluster
    spec = write_spec(tmp_path, SPEC.format(digits=digits_dir))
    out, storage = tmp_path / "results", tmp_path / "shared"
    sweep = out / "cluster"
    driver = subprocess.Popen([sys.executable, "-m", "sweeper", "run", str(spec), "--out", str(out),
                               "--address", cluster.address, "--storage", str(storage)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Kill the worker node of a trial that is training (it has reported an epoch, and has more to go).
    victim, deadline = None, time.time() + 300
    while victim is None and time.time() < deadline and driver.poll() is None:
        time.sleep(0.05)
        for history in _histories(storage / "cluster").values():
            if history and history[-1]["epoch"] < 3:  # 2 or 3 epochs to go: still training when its node goes
                victim = next((w for w in workers if w.node_id == history[-1]["node_id"]), None)
                break
    assert victim is not None, "no trial was seen training on a worker node"
    cluster.remove_node(victim, allow_graceful=False)
    output, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, output

    assert results.experiment_of(sweep) == str(storage / "cluster")
    assert not (sweep / "experiment").exists()  # the experiment went to --storage
    rows = leaderboard.read(sweep)
    assert len(rows) == 3 and all(r["status"] == "completed" and r["epochs"] == 4 for r in rows), rows
    histories = _histories(storage / "cluster")
    nodes = {r["node_id"] for history in histories.values() for r in history}
    assert len(nodes) == 2  # trials ran on both worker nodes
    # The killed node's trial was restarted (from its checkpoint) on the other node, and finished.
    moved = [t for t, history in histories.items() if history[-1]["node_id"] != victim.node_id
             and any(r["node_id"] == victim.node_id for r in history)]
    assert moved, histories
    assert "restarted after a failure (attempt 2)" in output


def _histories(experiment: Path) -> dict[str, list[dict]]:
    histories = {}
    for path in experiment.glob("trial_*/result.json"):
        lines = []
        for line in path.read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:  # being written
                pass
        histories[path.parent.name.removeprefix("trial_")] = lines
    return histories
