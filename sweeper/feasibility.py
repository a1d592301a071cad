"""`sweeper run --dry-run` with constraints: every architecture of the space against the bounds.

Each architecture's costs come from the cache, or are measured here on random weights (which do
not change them) and left in the cache, where the sweep's trials find them (costs.py).
"""

from __future__ import annotations

import itertools
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .constraints import Constraints
from .costs import ARCHITECTURE, architecture_costs
from .units import plural


def architectures(space) -> list[dict]:
    """Every architecture of a space, {ARCHITECTURE key: value}; ValueError names a key searched
    over a range, which has no finite list."""
    from .space import Range, values_of

    found = []
    for backbone in values_of(space.backbone):
        params = {"cut": space.cut_for(backbone), **{k: getattr(space, k) for k in ARCHITECTURE[2:]}}
        ranged = [k for k, p in params.items() if isinstance(p, Range)]
        if ranged:
            raise ValueError(f"space.{ranged[0]} is a range")
        choices = {k: values_of(p) for k, p in params.items()}
        found += [{"backbone": backbone, **dict(zip(choices, values))} for values in itertools.product(*choices.values())]
    return found


def print_feasibility(spec, *, n_classes: int, cache_dir: Path, console: Console) -> None:
    """A table of each architecture's costs and whether it is within the spec's constraints."""
    bounds: Constraints = spec.constraints
    try:
        found = architectures(spec.space)
    except ValueError as exc:
        console.print(f"feasibility: not shown, {exc}; each architecture is measured before its first trial",
                      markup=False, highlight=False)
        return
    from .backbones import declared
    from .native_stderr import quiet_native_stderr
    from .space import encode_units

    threads = max(1, int(spec.budget.cpus_per_trial))
    table = Table(title=f"feasibility under {bounds.summary()} (CPU on {plural(threads, 'thread')}; LiteRT on 1)",
                  title_justify="left")
    for column in (*ARCHITECTURE, "params", "MB", "ms", *(["lite ms"] if spec.measures_tflite else []), "feasible"):
        table.add_column(column, justify="right" if column in ("params", "MB", "ms", "lite ms", "image_size") else "left")
    feasible = 0
    with declared(spec.backbones), quiet_native_stderr():  # TensorFlow's start-up lines
        import keras

        from .model import TrialConfig, build_model
        from .trial import init_tensorflow

        for i, architecture in enumerate(found, start=1):
            config = TrialConfig(**architecture)
            shown = [encode_units(v) if k == "head_units" else str(v) for k, v in architecture.items()]
            measure = dict(task=spec.task, outputs=n_classes or 1, threads=threads, cache_dir=cache_dir,
                           tflite=spec.measures_tflite)
            costs = architecture_costs(config, **measure)
            if costs is None:
                with console.status(f"measuring {' '.join(shown)} ({i} of {len(found)})"):
                    init_tensorflow(threads)
                    model = build_model(config, task=spec.task, n_classes=n_classes, weights=None)
                    costs = architecture_costs(config, **measure, model=model)
                    keras.backend.clear_session()  # the next architecture starts from nothing held
            why = bounds.why(costs)
            feasible += not why
            table.add_row(*shown, f"{costs['params']:,}", f"{costs['size_mb']:.3g}",
                          f"{costs['latency_ms']:.3g}", *([f"{costs['tflite_ms']:.3g}"] if spec.measures_tflite else []),
                          "yes" if not why else f"no: {why}")
    console.print(table)
    console.print(f"{feasible} of {plural(len(found), 'architecture')} within the constraints"
                  + ("; the sweep would train nothing" if not feasible else ""),
                  style=None if feasible else "yellow", markup=False, highlight=False)
