"""Shared fixtures. Tiers: plain unit tests; `ray` (real sweeps on local Ray); `assets` (../shared/assets)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # tests run short variants of some benchmark scripts
ASSETS = ROOT.parent / "shared" / "assets"
WEIGHTS = ASSETS / "weights"

needs_assets = pytest.mark.skipif(
    not (WEIGHTS.is_dir() and (ASSETS / "datasets").is_dir()),
    reason=f"real test assets not found at {ASSETS} (CI has them beside the repo)",
)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole test session (starting Ray costs seconds)."""
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> Path:
    """scikit-learn's real handwritten digits as a folder per class (written once per session)."""
    from sweeper.demo import write_digits

    folder = tmp_path_factory.mktemp("digits") / "digits"
    write_digits(folder)
    return folder


def write_spec(folder: Path, text: str, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path
