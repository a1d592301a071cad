"""A trial's checkpoint: the weights of its best epoch and the configuration that rebuilds it.

Written by the trial, read back by evaluation (and export). Importing this module does not
import Keras; loading a model does.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

WEIGHTS_FILE = "weights.npz"  # every variable of the whole model, in `model.weights` order
META_FILE = "trial.json"


def save(folder: Path, model, config, epoch: int, metrics: dict, target_stats=None) -> None:
    # npz rather than Keras' .weights.h5: a trial saves on every improvement, and h5 takes
    # about 0.6 s per save for MobileNetV2 where npz takes 0.05 s.
    from .backbones import get_backbone

    np.savez(folder / WEIGHTS_FILE, *[variable.numpy() for variable in model.weights])
    meta = {"epoch": epoch, "metrics": metrics, "config": asdict(config), "target_stats": target_stats}
    entry = get_backbone(config.backbone)
    if entry.own:  # evaluation and export rebuild it from here, without the spec
        meta["own_backbone"] = entry.to_dict()
    (folder / META_FILE).write_text(json.dumps(meta, indent=2))


def read(folder: Path) -> tuple[dict, list[np.ndarray]]:
    """The checkpoint's record (epoch, metrics, config) and its weights, in `model.weights` order."""
    meta = json.loads((folder / META_FILE).read_text())
    with np.load(folder / WEIGHTS_FILE) as saved:
        weights = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    return meta, weights


def load_model(folder: Path, *, task: str, n_classes: int):
    """The whole model (backbone and trained parts) with the checkpoint's weights, and its TrialConfig."""
    from .backbones import Backbone, declared
    from .model import TrialConfig, build_model

    meta, weights = read(folder)
    config = TrialConfig(**{**meta["config"], "head_units": tuple(meta["config"]["head_units"])})
    own = Backbone.from_dict(meta["own_backbone"]) if meta.get("own_backbone") else None
    # No pretrained file is needed: every weight, frozen or trained, is in the checkpoint.
    with declared({own.name: own} if own else {}):
        model = build_model(config, task=task, n_classes=n_classes, weights=None,
                            target_stats=meta.get("target_stats"))
    model.set_weights(weights)
    return model, config


def find(sweep_dir: Path, trial_id: str) -> Path:
    """The folder of the checkpoint Tune kept for a trial (its best epoch)."""
    from .errors import CheckpointMissing
    from .results import trial_folder

    found = sorted(trial_folder(sweep_dir, trial_id).glob(f"checkpoint_*/{META_FILE}"))
    if not found:
        raise CheckpointMissing(f"{sweep_dir}: trial {trial_id} has no checkpoint")
    return found[-1].parent
