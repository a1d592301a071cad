"""Before a sweep: the disk its caches need, estimated, refused in one line when it is not there."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import WEIGHTS, needs_assets, write_spec

from sweeper import disk, images
from sweeper.cli import main
from sweeper.data import build_index
from sweeper.errors import SweeperError
from sweeper.spec import load_spec
from sweeper.units import format_size, parse_age, parse_size, plural

SPEC = """
name: disk
data: {{train: {digits}, validation_split: 0.2}}
image_size: {size}
weights: {weights}
budget: {{trials: 2, max_epochs: 1, concurrent_trials: 1}}
space:
  backbone: {backbone}
  unfreeze: [0, 12]
"""


def test_a_sweep_whose_decoded_images_do_not_fit_is_refused_before_decoding(tmp_path, digits_dir, monkeypatch, capsys):
    spec = write_spec(tmp_path, SPEC.format(digits=digits_dir, size=32, weights="none", backbone="simple_cnn"))
    monkeypatch.setattr(disk, "free_bytes", lambda folder: 10**6)
    out = tmp_path / "results"
    assert main(["run", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    needed = 1797 * 32 * 32 * 3
    assert f"the sweep's cache needs {format_size(needed)} (decoded images {format_size(needed)})" in err
    assert "the disk has 1.0 MB free" in err and err.count("\n") == 1
    assert not (out / "disk").exists() and not list((out / ".cache" / "images").glob("*.npy"))


@pytest.mark.ray
@needs_assets
def test_frozen_features_that_do_not_fit_are_refused_before_the_first_trial(tmp_path, digits_dir, ray_session,
                                                                              monkeypatch, capsys):
    spec = write_spec(tmp_path, SPEC.format(digits=digits_dir, size=32, weights=WEIGHTS, backbone="mobilenet_v2_0.35"))
    decoded = 1797 * 32 * 32 * 3
    # Two trials, two entries at most: the pooled vectors (1280 floats) and unfreeze 12's frontier
    # (float16, `run`'s default for activations inside the backbone).
    index = build_index(load_spec(spec).data, "classification")
    features = 1797 * (1280 * 4 + _frontier_bytes(unfreeze=12))
    monkeypatch.setattr(disk, "free_bytes", lambda folder: decoded + 1000)
    out = tmp_path / "results"
    assert main(["run", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"needs {format_size(features)} (frozen features {format_size(features)})" in err
    assert f"the disk has {format_size(decoded + 1000)} free" in err
    assert images.cache_path(out / ".cache", index, 32).stat().st_size >= decoded  # decoded, kept for next time
    assert not (out / "disk").exists()

    # The shapes were read once; the next sweep of this space reads them from the cache folder.
    assert len(list((out / ".cache" / "shapes").glob("*.json"))) == 1
    monkeypatch.setattr(disk, "_start_reading", _must_not_run)
    monkeypatch.setattr(disk, "free_bytes", lambda folder: 10**12)
    assert main(["run", str(spec), "--out", str(out)]) == 0
    assert f"frozen features up to {format_size(features)}" in capsys.readouterr().out
    summary = json.loads((out / "disk" / "data_summary.json").read_text())["cache"]
    assert summary["features_bytes_at_most"] == features and summary["free_bytes"] == 10**12
    assert summary["decoded_bytes"] == images.cache_path(out / ".cache", index, 32).stat().st_size
    written = sum(p.stat().st_size for p in (out / ".cache" / "features").rglob("*.npy"))
    assert 0 < written <= features + 2 * 1024  # each entry's .npy header aside


def _must_not_run(*args):
    raise AssertionError("the shapes were read again")


def _frontier_bytes(unfreeze: int) -> int:
    from sweeper.feature_cache import frozen_entries

    [(_, per_image)] = frozen_entries("mobilenet_v2_0.35", "full", 32, [(unfreeze, 0)], ["avg"], "float16")
    return per_image


@pytest.mark.parametrize("text, size", [("0", 0), ("1500", 1500), ("20GB", 20 * 10**9), ("512MiB", 512 * 2**20),
                                        ("1.5G", int(1.5 * 2**30)), (" 2 kb ", 2000)])
def test_sizes_as_people_type_them(text, size):
    assert parse_size(text, what="--max-size") == size


@pytest.mark.parametrize("text", ["", "lots", "-1GB", "20 GBs", "1e9"])
def test_a_size_that_is_not_one_names_the_option(text):
    with pytest.raises(ValueError, match=f"--max-size: {text!r} is not a size"):
        parse_size(text, what="--max-size")


def test_ages_as_people_type_them():
    assert [parse_age(t, what="--older-than") for t in ("90s", "45m", "12h", "30d", "2w")] == [
        90, 2700, 43200, 30 * 86400, 14 * 86400]
    with pytest.raises(ValueError, match="--older-than: '30' is not an age"):
        parse_age("30", what="--older-than")
    assert [format_size(n) for n in (999, 1000, 1234567, 2.5e12)] == ["999 B", "1.0 kB", "1.2 MB", "2.5 TB"]


def test_a_failed_reading_of_the_shapes_is_one_line():
    process = subprocess.Popen([sys.executable, "-c", "import sys; print('[]'); sys.exit('ValueError: no layer block_99')"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with pytest.raises(SweeperError) as raised:
        disk._finish_reading(process)
    assert str(raised.value) == "reading the shapes of the frozen features failed: ValueError: no layer block_99"


def test_the_shapes_are_read_in_a_process_that_ends_with_the_estimate(tmp_path, digits_dir, monkeypatch):
    spec = load_spec(write_spec(tmp_path, SPEC.format(digits=digits_dir, size=32, weights="imagenet",
                                                      backbone="mobilenet_v2_0.35")))
    started = []

    def start_a_slow_reader(*args):
        started.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
        return started[-1]

    monkeypatch.setattr(disk, "_start_reading", start_a_slow_reader)
    with disk.FeatureEstimate(spec.space, sizes=[32], trials=2, weights="imagenet", use_feature_cache=True,
                              spatial_dtype="float16", cache_dir=tmp_path / "cache"):
        assert started[0].poll() is None  # reading while the driver goes on
    assert started[0].wait(timeout=5) != 0  # a sweep that stops before it needs the shapes ends the reader


@pytest.mark.parametrize("backbone, cut", [("mobilenet_v2_0.35", "full"), ("resnet50", "conv4_block6_out")])
def test_a_frozen_pooled_space_is_estimated_from_the_registry_as_a_built_backbone_reads(
        tmp_path, digits_dir, monkeypatch, backbone, cut):
    from sweeper.feature_cache import frozen_entries

    text = SPEC.format(digits=digits_dir, size=32, weights="imagenet", backbone=backbone).replace(
        "unfreeze: [0, 12]", f"unfreeze: 0\n  cut: {cut}")
    spec = load_spec(write_spec(tmp_path, text))
    monkeypatch.setattr(disk, "_start_reading", _must_not_run)  # nothing built, no TensorFlow
    with disk.FeatureEstimate(spec.space, sizes=[32, 64], trials=2, weights="imagenet", use_feature_cache=True,
                              spatial_dtype="float16", cache_dir=tmp_path / "cache") as estimate:
        found = [(e.image_size, (e.unfreeze, e.unfreeze_blocks), e.bytes_per_image) for e in estimate.entries()]
    built = [(size, *entry) for size in (32, 64) for entry in frozen_entries(backbone, cut, size, [(0, 0)], ["avg"])]
    assert found == built and not (tmp_path / "cache" / "shapes").exists()


def test_counts_as_people_read_them():
    assert [plural(n, "trial") for n in (0, 1, 2)] == ["0 trials", "1 trial", "2 trials"]
    assert [plural(n, "entry") for n in (1, 3)] == ["1 entry", "3 entries"]
    assert [plural(n, "Ray process") for n in (1, 10)] == ["1 Ray process", "10 Ray processes"]
    assert [plural(n, "class") for n in (1, 2)] == ["1 class", "2 classes"]
    assert [plural(n, "day") for n in (1, 2)] == ["1 day", "2 days"]  # a vowel before the y
    assert [plural(n, "epoch") for n in (1, 2)] == ["1 epoch", "2 epochs"]
    assert [plural(n, "was", "were") for n in (1, 0, 2)] == ["1 was", "0 were", "2 were"]  # a verb, given both forms
    assert [plural(n, "whole GPU") for n in (1.0, 2.0, 0.5)] == ["1 whole GPU", "2 whole GPUs", "0.5 whole GPUs"]
