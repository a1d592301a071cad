"""Where ImageNet weights come from: local folders first, a Keras download only as a last resort.

Clusters and laptops without internet work as long as the official no-top files sit in one of
the searched folders: `--weights-dir` (or the spec's `weights: <folder>`), `$SWEEPER_WEIGHTS`,
then the Keras cache (`$KERAS_HOME/models`, default `~/.keras/models`).
"""

from __future__ import annotations

import os
from pathlib import Path

from .backbones import Backbone

ENV_VAR = "SWEEPER_WEIGHTS"


def search_dirs(weights_dir: str | Path | list | tuple | None = None) -> list[Path]:
    """The folders searched, in order. A list is a sweep's recorded search, taken as it is: the
    environment of a resumed sweep (or of a worker on another node) must not change it."""
    if isinstance(weights_dir, (list, tuple)):
        return [Path(d) for d in weights_dir]
    dirs = []
    if weights_dir:
        dirs.append(Path(weights_dir).expanduser())
    if os.environ.get(ENV_VAR):
        dirs.extend(Path(p).expanduser() for p in os.environ[ENV_VAR].split(os.pathsep) if p)
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser()
    dirs.append(keras_home / "models")
    return dirs


def find_local(backbone: Backbone, image_size: int, weights_dir: str | Path | None = None) -> Path | None:
    """The local weight file for this backbone, or None when no searched folder holds one."""
    for folder in search_dirs(weights_dir):
        for name in backbone.weight_file_names(image_size):
            if (folder / name).is_file():
                return folder / name
    return None


def resolve(backbone: Backbone, image_size: int, weights: str, weights_dir: str | Path | None = None):
    """What to pass as `weights=` to the Keras constructor: a file path, "imagenet" or None.

    "imagenet" is returned only when no local file exists, which lets Keras try to download it.
    A spec's own model keeps its own weights: its file (or factory's module) stands for them.
    """
    if backbone.own:
        return str(backbone.source())
    if weights == "none" or not backbone.pretrained:
        return None
    local = find_local(backbone, image_size, weights_dir)
    return str(local) if local else "imagenet"


def missing_message(backbone: Backbone, image_size: int, weights_dir: str | Path | None = None) -> str:
    names = " or ".join(backbone.weight_file_names(image_size))
    dirs = ", ".join(str(d) for d in search_dirs(weights_dir))
    return (
        f"no ImageNet weights for {backbone.name}: looked for {names} in {dirs}; "
        f"put the file in one of them, set ${ENV_VAR}, or use `weights: none`"
    )


def fetch(backbone: Backbone, image_size: int) -> str | None:
    """Let Keras download the backbone's no-top ImageNet weights into its cache (`$KERAS_HOME/models`,
    searched above); returns None, or why it failed. Runs in a Ray worker: it imports Keras."""
    import keras

    try:
        constructor = getattr(keras.applications, backbone.constructor)
        constructor(include_top=False, weights="imagenet", input_shape=(image_size, image_size, 3), **backbone.kwargs)
    except Exception as exc:  # offline, a proxy, a full disk: Keras says which
        return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"
    return None
