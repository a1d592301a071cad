"""`warm_start: DIR` (or `sweeper run --warm-start DIR`): begin with the best configurations of earlier sweeps.

The sweeps in DIR (a results folder) that ran the same task are read: first those of the same
data (the same fingerprint), then those of other data, nearest first by their triage profile
(how alike the two rankings of the pairs both triaged are, by Spearman's correlation; sweeps
with no triage ranking in common are not used). Their best configurations that fit this sweep's
space are proposed first, through the searcher's enqueue: they are run here before Optuna
learns anything from them, so no value measured on other data counts as evidence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import results, triage
from .hyperparameters import CONFIG_KEYS
from .leaderboard import scored
from .objective import Objective
from .space import Choice, Fixed, Range, encode_units, encode_units_param


@dataclass(frozen=True)
class Seed:
    """A configuration from an earlier sweep, as Optuna parameters of this sweep's space."""

    sweep: str  # the earlier sweep's folder
    trial_id: str
    objective: str  # the earlier sweep's
    value: float  # its objective's value there
    why: str  # "same data", or "nearest data (triage correlation 0.83)"
    params: dict


def seeds(spec, folder: Path, *, fingerprint: str, ranked: list | None, count: int, exclude: Path) -> list[Seed]:
    """Up to `count` configurations to propose first, best of the nearest sweeps first, none twice;
    `exclude` is the sweep being started."""
    found, seen = [], set()
    for sweep_dir, why in _sweeps_by_nearness(folder, task=spec.task, fingerprint=fingerprint, ranked=ranked):
        if sweep_dir.resolve() == Path(exclude).resolve():
            continue
        meta = results.read_meta(sweep_dir)
        rows = json.loads(results.SweepFolder(sweep_dir).leaderboard.read_text())
        objective = Objective(meta["objective"], meta["mode"])
        for row in sorted(scored(rows, meta["objective"]), key=lambda r: objective.sort_key(r[meta["objective"]])):
            params = fitting_params(spec.space, row)
            key = tuple(sorted((params or {}).items()))
            if params is None or key in seen:
                continue
            seen.add(key)
            found.append(Seed(sweep_dir.name, row["trial_id"], meta["objective"], row[meta["objective"]], why, params))
            if len(found) == count:
                return found
    return found


def _sweeps_by_nearness(folder: Path, *, task: str, fingerprint: str, ranked: list | None) -> list[tuple[Path, str]]:
    same, near = [], []
    for record in sorted(Path(folder).glob(f"*/{results.SWEEP_META}")):
        sweep_dir = record.parent
        try:
            meta = results.read_meta(sweep_dir)
        except (OSError, ValueError):
            continue
        if meta.get("task") != task or not results.SweepFolder(sweep_dir).leaderboard.is_file():
            continue
        if meta.get("data_fingerprint") == fingerprint:
            same.append((sweep_dir, "same data"))
            continue
        theirs = triage.read_ranking(results.SweepFolder(sweep_dir).triage)
        correlation = profile_correlation(ranked, theirs) if ranked and theirs else None
        if correlation is not None:
            near.append((correlation, sweep_dir))
    near.sort(key=lambda item: -item[0])
    return same + [(d, f"nearest data (triage correlation {c:.2f})") for c, d in near]


def profile_correlation(ours: list, theirs: list) -> float | None:
    """Spearman's correlation of two triage rankings over the pairs both scored; None under 3 in common."""
    from scipy.stats import spearmanr

    a = triage.scores(ours)
    b = triage.scores(theirs)
    common = sorted(set(a) & set(b))
    if len(common) < 3:
        return None
    value = spearmanr([a[k] for k in common], [b[k] for k in common]).statistic
    return None if np.isnan(value) else float(value)


def fitting_params(space, row: dict) -> dict | None:
    """The Optuna parameters of a leaderboard row's configuration in `space` (only the sampled
    ones, named as `search_space.DefineByRun` names them); None when it is not in the space."""
    params = {}
    for key in CONFIG_KEYS:
        value = row.get(key)
        if key == "cut":
            param, name = space.cut_for(row.get("backbone")), f"cut@{row.get('backbone')}"
        else:
            param, name = getattr(space, key), key
        if key == "head_units":
            value = value if isinstance(value, str) else encode_units(tuple(value or ()))
            param = encode_units_param(param)
        if isinstance(param, Fixed):
            if value != param.value:
                return None
        elif isinstance(param, Choice):
            if value not in param.options:
                return None
            params[name] = value
        elif isinstance(param, Range):
            if not isinstance(value, (int, float)) or not param.low <= value <= param.high:
                return None
            params[name] = int(value) if param.integer else float(value)
    return params
