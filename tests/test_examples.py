"""Every example spec in search_spaces/ is a valid spec once its data exists."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from sweeper.space import values_of
from sweeper.spec import parse_spec

EXAMPLES = sorted((ROOT / "search_spaces").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_spec_is_valid(path, tmp_path):
    folder = tmp_path / "search_spaces"
    folder.mkdir()
    shutil.copy(path, folder / path.name)
    raw = yaml.safe_load(path.read_text())
    data = raw["data"]
    for key in ("train", "validation", "test", "images"):  # make the folders the example points at
        if key in data and not str(data[key]).endswith(".csv"):
            (folder / data[key]).mkdir(parents=True, exist_ok=True)
    if "csv" in data:
        (folder / data["csv"]).parent.mkdir(parents=True, exist_ok=True)
        (folder / data["csv"]).write_text("x\n")
    spec = parse_spec(raw, folder / path.name)
    assert spec.name == raw["name"] and spec.budget.trials >= 8
    assert Path(spec.data.csv or spec.data.train).exists()
    assert {"cats_vs_dogs", "food5k", "face_counting", "inception_v3_mixed7", "quickstart"} <= {p.stem for p in EXAMPLES}


def test_the_inception_example_sweeps_mixed7_against_the_whole_network(tmp_path):
    path = ROOT / "search_spaces" / "inception_v3_mixed7.yaml"
    raw = yaml.safe_load(path.read_text())
    for key in ("train", "validation"):
        (tmp_path / "search_spaces" / raw["data"][key]).mkdir(parents=True)
    spec = parse_spec(raw, tmp_path / "search_spaces" / path.name)
    assert {"mixed7", "full"} <= set(values_of(spec.space.cut_for("inception_v3")))
    assert values_of(spec.space.backbone) == ("inception_v3",)
