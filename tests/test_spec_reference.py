"""docs/spec.md lists exactly the keys a spec may hold, with the defaults the code has."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from sweeper.constraints import KEYS as CONSTRAINT_KEYS
from sweeper.hyperparameters import DEFAULTS, SPEC_KEYS
from sweeper.spec import (
    HEAD_KEYS,
    OWN_BACKBONE_KEYS,
    RANGE_KEYS,
    SPACE_KEYS,
    TOP_KEYS,
    TRACKING_KEYS,
    Budget,
    DataSpec,
)

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "spec.md"


def _documented() -> dict[str, str]:
    """Each key in the reference's tables, with its default column."""
    rows = re.findall(r"^\| `([a-z_.<>]+)` \| ([^|]*) \|", REFERENCE.read_text(), flags=re.MULTILINE)
    return {key: default.strip() for key, default in rows}


def test_the_reference_lists_every_key_the_code_accepts_and_no_other():
    accepted = {*TOP_KEYS, *(f"data.{f.name}" for f in fields(DataSpec)), *(f"budget.{f.name}" for f in fields(Budget)),
                *(f"space.{k}" for k in SPACE_KEYS), *(f"space.head.{k}" for k in HEAD_KEYS), *RANGE_KEYS,
                *(f"backbones.<name>.{k}" for k in OWN_BACKBONE_KEYS), "space.unfreeze.blocks",
                *(f"tracking.{k}" for k in TRACKING_KEYS), *(f"constraints.{k}" for k in CONSTRAINT_KEYS)}
    assert set(_documented()) == accepted


def test_the_reference_gives_the_code_s_defaults():
    documented = _documented()
    for name, default in DEFAULTS.items():
        if name not in ("backbone", "head_units", "image_size", "augment"):
            assert documented[SPEC_KEYS[name]] == f"`{default}`", name
    assert documented["space.backbone"] == f"`{DEFAULTS['backbone']}`"
    assert documented["space.augment"] == "`false`" and documented["image_size"] == f"`{DEFAULTS['image_size']}`"
    for f in fields(Budget):
        if f.default is not None and f.name != "grace_epochs":
            assert documented[f"budget.{f.name}"] == f"`{f.default}`", f.name
    for f in fields(DataSpec):
        if f.default is not None and f.name not in ("train", "validation", "test", "csv", "images", "label_pattern"):
            assert documented[f"data.{f.name}"] == f"`{f.default}`", f.name


def test_no_project_file_points_at_anything_outside_the_repository_but_the_test_assets():
    root = REFERENCE.parents[1]
    texts = [p for p in root.rglob("*") if p.suffix in (".py", ".md", ".yaml", ".toml") and p.is_file()
             and not any(part.startswith(".") or part in ("results", "build") or part.endswith(".egg-info")
                         for part in p.relative_to(root).parts)]
    for path in texts:
        if path == Path(__file__).resolve():
            continue  # this check names what it looks for
        for line in path.read_text().splitlines():
            if "../shared" in line or "design.md" in line:
                assert "assets" in line and "design.md" not in line, f"{path.relative_to(root)}: {line.strip()}"
