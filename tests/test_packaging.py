"""The wheel: built by the standard front end (`python -m build`), it holds what a user needs,
and installed into a fresh virtual environment it runs. Plus the distribution's own name, and
what git leaves out of the repository (what the README's commands write)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import sweeper
from sweeper.versions import DISTRIBUTION

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_the_package_and_its_example_specs_and_runs_from_a_fresh_environment(tmp_path):
    # Built from a copy: the build writes build/ and *.egg-info beside the sources, not in the checkout.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", "build",
                                                                "dist", ".ruff_cache", ".pytest_cache", "results"))
    # In build's own isolated environment: setuptools from the package index, as pyproject.toml asks.
    built = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir",
                            str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("*.whl"))
    assert wheel.name == f"sweeper_tune-{sweeper.__version__}-py3-none-any.whl"
    names = zipfile.ZipFile(wheel).namelist()
    package = {Path(n).name for n in names if n.startswith("sweeper/") and n.endswith(".py")}
    assert package == {p.name for p in (ROOT / "sweeper").glob("*.py")}  # every module, nothing else
    specs = {Path(n).name for n in names if n.startswith("sweeper/search_spaces/")}
    assert {p.name for p in (ROOT / "search_spaces").glob("*.yaml")} <= specs and "quickstart.yaml" in specs
    metadata = zipfile.ZipFile(wheel).read(f"sweeper_tune-{sweeper.__version__}.dist-info/METADATA").decode()
    assert f"Name: {DISTRIBUTION}\n" in metadata and f"Version: {sweeper.__version__}\n" in metadata
    assert "Requires-Dist: ray[default,tune]" in metadata

    # A fresh environment with the wheel alone installed in it; its dependencies are this one's
    # (a path in a .pth file), to install nothing from the network.
    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", str(fresh)], check=True, timeout=300)
    python = fresh / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)], check=True,
                   timeout=300)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = subprocess.run([str(python), "-c", "import sweeper; print(sweeper.__file__)"], capture_output=True,
                           text=True, check=True, cwd=tmp_path).stdout.strip()
    assert where.startswith(site), where  # the wheel's copy, not this checkout

    def sweeper_command(*args: str) -> str:
        done = subprocess.run([str(fresh / "bin" / "sweeper"), *args], capture_output=True, text=True, timeout=300,
                              cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    assert sweeper_command("--version").strip() == f"sweeper {sweeper.__version__} (the {DISTRIBUTION} distribution)"
    listed = sweeper_command("backbones")
    assert "mobilenet_v2_1.0" in listed and "convnext_tiny" in listed
    assert "sweeper demo" in sweeper_command("demo", "--help")


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_what_the_readmes_commands_write_is_ignored_and_results_gitkeep_stays_tracked():
    written = ["results/cats-vs-dogs/sweep.json", "results/.cache/images/x.npy", "results/.demo/digits/0/a.png",
               "bundles/cats-vs-dogs/model.keras", "mlflow.db", "mlruns/0/meta.yaml"]
    checked = subprocess.run(["git", "check-ignore", "--no-index", *written, "results/.gitkeep"], cwd=ROOT,
                             capture_output=True, text=True)
    assert checked.stdout.split() == written  # every one but .gitkeep
    tracked = subprocess.run(["git", "ls-files", "results"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert tracked.stdout.split() == ["results/.gitkeep"]
