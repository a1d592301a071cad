"""What an architecture costs to deploy, measured once per cache folder: parameters, size, latency.

Trials that differ only in how they train (learning rate, optimizer, batch size, dropout,
unfreeze) run the same network at inference, so they share one measurement, taken before the
first of them trains (the spec's `constraints` are checked against it). `sweeper run --dry-run`
measures them for every architecture of the space (feasibility.py) and leaves them in the cache,
where the sweep finds them.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from . import latency
from .backbones import get_backbone

ARCHITECTURE = ("backbone", "cut", "head_pooling", "head_units", "image_size")  # what decides the inference graph


def architecture_costs(config, *, task: str, outputs: int, threads: int, cache_dir: Path, tflite: bool,
                       model=None) -> dict | None:
    """`config`'s architecture's costs: latency_ms (and its spread), params, size_mb, and with
    `tflite` tflite_ms (and its spread). From the cache; measured on `model` and cached when not
    there yet; None when not there and no model was given. tflite_ms takes a TFLite conversion
    (about 7 s on 2 cores), so only sweeps that bound it ask for it."""
    key = latency.architecture_key(
        backbone=get_backbone(config.backbone).identity(), cut=config.cut, head_pooling=config.head_pooling,
        head_units=config.head_units, image_size=config.image_size, task=task, outputs=outputs, threads=threads,
    )
    kinds = ("", "sizes", "tflite") if tflite else ("", "sizes")
    if model is None:
        records = [latency.recorded(cache_dir, key, kind) for kind in kinds]
        if any(record is None for record in records):
            return None
    else:
        from .model import count_params

        measure = {"": lambda: asdict(latency.inference_latency(model)),
                   "sizes": lambda: {k: v for k, v in count_params(model).items() if k != "trainable_params"},
                   "tflite": lambda: asdict(latency.tflite_latency(model))}
        records = [latency.remembered(cache_dir, key, kind, measure[kind]) for kind in kinds]
    costs = {"latency_ms": records[0]["ms"], "latency_spread_ms": records[0]["spread_ms"], **records[1]}
    if tflite:
        costs.update(tflite_ms=records[2]["ms"], tflite_spread_ms=records[2]["spread_ms"])
    return costs
