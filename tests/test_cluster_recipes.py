"""The ways a sweep reaches a cluster (examples/cluster/, the Dockerfiles), each checked by what can
check it here: Ray's job API for real against a local head (loopback only); the cluster launcher's
YAML against Ray's own schema; the KubeRay RayJob's required keys; the SLURM script by `bash -n`
and a dry start of its Ray part on this machine; the Dockerfiles' instructions (no container
engine runs here). And a node that lacks a shared path is named with it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from conftest import write_spec

from sweeper import leaderboard, nodes
from sweeper.errors import SweeperError

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "examples" / "cluster"
BIN = Path(sys.executable).parent  # this environment's `ray` and `sweeper`

SPEC = """
name: {name}
data: {{train: {digits}, validation_split: 0.2}}
image_size: 32
weights: none
budget: {{trials: 2, max_epochs: 1, grace_epochs: 1, search: grid}}
space: {{backbone: simple_cnn, learning_rate: [1.0e-3, 3.0e-3], batch_size: 32}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.ray
def test_ray_job_submit_runs_a_sweep_on_the_cluster_and_its_results_are_where_the_readme_says(tmp_path, digits_dir,
                                                                                              monkeypatch):
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")  # the job's shell finds `sweeper`
    work = tmp_path / "project"
    work.mkdir()
    write_spec(work, SPEC.format(name="jobbed", digits=digits_dir))
    out = tmp_path / "shared" / "results"
    port = _free_port()
    before = os.environ.get("RAY_ADDRESS")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": True,
                                                             "dashboard_host": "127.0.0.1", "dashboard_port": port})
    try:
        # The dashboard answers before its job agent has registered; until then a submission is
        # refused whole ("No available agent"), so it is submitted again once the agent is there.
        deadline = time.time() + 120
        while True:
            done = subprocess.run([str(BIN / "ray"), "job", "submit", "--address", f"http://127.0.0.1:{port}",
                                   "--working-dir", str(work), "--", "sweeper", "run", "spec.yaml", "--out", str(out)],
                                  capture_output=True, text=True, timeout=600, cwd=tmp_path)
            if "No available agent to submit job" not in done.stderr + done.stdout or time.time() > deadline:
                break
            time.sleep(1)
    finally:
        cluster.shutdown()
        if before is None:  # Cluster sets it: the session's own Ray must not look for this one later
            os.environ.pop("RAY_ADDRESS", None)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "succeeded" in done.stdout and "jobbed: 2 of 2 trials ended (2 completed)" in done.stdout
    rows = leaderboard.read(out / "jobbed")
    assert len(rows) == 2 and all(r["status"] == "completed" for r in rows)
    meta = json.loads((out / "jobbed" / "sweep.json").read_text())
    assert meta["ray_session"] is None  # the cluster's Ray, which a resume must never end
    assert not (work / "results").exists()  # nothing in the uploaded working folder


@pytest.mark.ray
def test_a_node_that_lacks_a_shared_path_is_named_with_it(tmp_path, ray_session):
    here = [("the cache (--cache-dir)", str(tmp_path))]
    nodes.check_cluster(here)  # every node sees it: nothing to say
    with pytest.raises(SweeperError) as refused:
        nodes.check_cluster([*here, ("data.train", "/shared/data/cats/train")])
    message = str(refused.value)
    node = ray_session.nodes()[0]["NodeManagerAddress"]  # this machine, as Ray addresses it
    assert message.startswith(f"node {node} ({socket.gethostname()}) does not see data.train at "
                              "/shared/data/cats/train: every node needs them at the same path"), message
    with pytest.raises(nodes.NodeLacksPath, match=r"does not see the cache \(--cache-dir\) at /gone"):
        nodes.check_trial_node([("the cache (--cache-dir)", "/gone")])


def test_the_cluster_launcher_yaml_is_valid_for_ray_s_own_schema():
    import jsonschema
    import ray

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = yaml.safe_load((RECIPES / "aws.yaml").read_text())
    jsonschema.validate(config, schema)
    assert config["provider"]["type"] == "aws" and config["head_node_type"] in config["available_node_types"]
    assert any("pip install" in c and "sweeper-tune" in c for c in config["setup_commands"])
    assert any("/mnt/shared" in c for c in config["setup_commands"])  # the shared filesystem, on every node


def test_the_kuberay_rayjob_runs_sweeper_with_the_shared_volume_on_every_pod():
    job = yaml.safe_load((RECIPES / "rayjob.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    assert spec["entrypoint"].startswith("sweeper run ") and "--out /shared/results" in spec["entrypoint"]
    cluster = spec["rayClusterSpec"]
    pods = [cluster["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]
    for pod in pods:
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
        for container in pod["containers"]:
            assert container["image"]
            assert {m["mountPath"] for m in container["volumeMounts"] if m["name"] in claims} == {"/shared"}


def test_the_slurm_script_parses_and_its_ray_part_starts_and_stops_here(tmp_path, digits_dir):
    script = RECIPES / "slurm.sbatch"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    # SLURM's commands, as they behave on a one-node allocation of this machine (loopback only).
    shims = tmp_path / "bin"
    shims.mkdir()
    for name, body in {
        "scontrol": 'echo localhost',
        "srun": 'while [[ "$1" == -* ]]; do [[ "$1" == -w ]] && shift; shift; done; exec "$@"',
        "hostname": '[[ "$1" == --ip-address ]] && echo 127.0.0.1 || /bin/hostname "$@"',
    }.items():
        (shims / name).write_text(f"#!/bin/bash\n{body}\n")
        (shims / name).chmod((shims / name).stat().st_mode | stat.S_IEXEC)
    write_spec(tmp_path, SPEC.format(name="slurmed", digits=digits_dir))
    port = _free_port()
    # Its own Ray folder and home: `ray start` leaves the address of its cluster in the Ray folder,
    # where a later local ray.init() on this machine would look for it; the token goes in ~/.ray.
    ray_folder = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths have a limit
    env = {**os.environ, "PATH": f"{shims}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}",
           "SLURM_JOB_NODELIST": "localhost", "SLURM_CPUS_PER_TASK": "1", "SPEC": "spec.yaml",
           "SHARED": str(tmp_path / "shared"), "RAY_PORT": str(port), "SWEEPER_ARGS": "--dry-run",
           "RAY_TMPDIR": str(ray_folder), "HOME": str(tmp_path)}
    try:
        done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                              env=env)
    finally:
        shutil.rmtree(ray_folder, ignore_errors=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Active:" in done.stdout and "1 node_" in done.stdout  # `ray status`: the head is up
    assert "slurmed: 2 configurations; 2 trials" in done.stdout  # the sweep's dry run on it
    # The script's exit stopped the head it started: nothing listens on its port any more.
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
    assert (tmp_path / ".ray" / "auth_token").is_file()  # the token the script made, in its home


def test_a_cluster_with_token_authentication_refuses_a_driver_without_its_token_in_one_line(tmp_path, digits_dir):
    """As examples/cluster/slurm.sbatch starts one: RAY_AUTH_MODE=token and a token in ~/.ray."""
    spec = write_spec(tmp_path, SPEC.format(name="tokened", digits=digits_dir))
    ray_folder = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # its own, as in the SLURM test
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "RAY_TMPDIR": str(ray_folder),
           "HOME": str(tmp_path), "RAY_AUTH_MODE": "token"}
    subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=env, capture_output=True, check=True)
    port = _free_port()
    head = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                             "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats", "--block"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        # The driver has the token file but not the mode. Ray's client retries for 20 s; 2 here.
        driver_env = {**{k: v for k, v in env.items() if k != "RAY_AUTH_MODE"}, "RAY_gcs_server_port_wait_time_s": "2"}
        done = subprocess.run([sys.executable, "-m", "sweeper", "run", str(spec), "--out", str(tmp_path / "results"),
                               "--address", f"127.0.0.1:{port}"], env=driver_env, capture_output=True, text=True,
                              timeout=300)
    finally:
        head.terminate()  # `--block`: the head shuts its node down on SIGTERM
        head.wait(timeout=60)
        shutil.rmtree(ray_folder, ignore_errors=True)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: --address 127.0.0.1:{port}: the Ray cluster there uses token authentication and refused this "
        "driver; set RAY_AUTH_MODE=token here, with the cluster's token in ~/.ray/auth_token or $RAY_AUTH_TOKEN "
        "(`ray get-auth-token` on its head prints it)")
    assert "gcs_client.cc" not in done.stderr  # Ray's retries, held back


@pytest.mark.parametrize("name, base", [("Dockerfile", "python:3.11-slim"), ("Dockerfile.gpu", "tensorflow/tensorflow:")])
def test_the_dockerfiles_install_this_package_with_the_weights_folder_as_a_volume(name, base):
    lines = [line.strip() for line in (ROOT / name).read_text().splitlines() if line.strip() and
             not line.lstrip().startswith("#")]
    instructions = [line.split()[0] for line in lines if not line.startswith("&&")]
    assert set(instructions) <= {"FROM", "WORKDIR", "COPY", "RUN", "VOLUME", "ENTRYPOINT", "CMD"}, instructions
    assert lines[0].startswith(f"FROM {base}")
    for line in lines:
        if line.startswith("COPY "):
            assert all((ROOT / source).exists() for source in line.split()[1:-1]), line
    assert any(line.startswith("RUN pip install --no-cache-dir .") for line in lines)
    assert 'VOLUME ["/root/.keras"]' in lines and 'ENTRYPOINT ["sweeper"]' in lines
    if name == "Dockerfile.gpu":  # the GPU build TensorFlow's image came with, at the version pyproject allows
        import tensorflow as tf

        minor = ".".join(tf.__version__.split(".")[:2])
        assert lines[0].startswith(f"FROM tensorflow/tensorflow:{minor}.") and lines[0].endswith("-gpu")
        assert f'"tensorflow=={lines[0].split(":")[1].removesuffix("-gpu")}"' in (ROOT / name).read_text()
