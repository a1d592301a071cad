"""A spec's own models (`backbones:`, and KerasHub presets), checked by loading them before a sweep starts.

The spec says where a model is; only the model says whether it loads, takes images, has the
layers `space.cut` names, and how many channels each gives (which the disk estimate needs). So
`sweeper run` loads each one at the smallest and largest image size of the space, in a Python
process of its own (the driver never imports TensorFlow), and any problem is one line naming
the spec's key, before Ray starts.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from dataclasses import replace

from . import environment
from .backbones import Backbone, build_backbone
from .errors import SpecError, SweeperError
from .hyperparameters import FULL
from .space import Range, values_of
from .spec import Spec


def inspect(spec: Spec) -> Spec:
    """The spec, its own models now knowing their cut points' channels; SpecError for a model that
    does not load, does not take the space's images, or lacks a layer `space.cut` names."""
    checks = checks_of(spec)
    if not checks:
        return spec
    process = subprocess.run([sys.executable, "-m", __name__, json.dumps(checks)], capture_output=True, text=True,
                             env={**environment.WORKER, **os.environ})
    try:
        answer = json.loads(process.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        last = (process.stderr.strip().splitlines() or [f"exit status {process.returncode}"])[-1]
        raise SweeperError(f"{spec.path}: loading the models of `backbones:` failed: {last}") from None
    return with_answer(spec, answer)


def checks_of(spec: Spec) -> dict:
    """What to load and check: each own model in the space, its cuts, the space's smallest and largest size."""
    size = spec.space.image_size
    sizes = sorted({int(size.low), int(size.high)} if isinstance(size, Range) else set(values_of(size)))
    return {name: {"entry": spec.backbones[name].to_dict(), "cuts": list(values_of(spec.space.cut_for(name))),
                   "sizes": sizes}
            for name in values_of(spec.space.backbone) if name in spec.backbones}


def answer(checks: dict) -> dict:
    """Load and check the models (imports Keras): {"models": {name: (cuts, channels)}} or {"error": (key, message)}."""
    models = {}
    try:
        for name, check in checks.items():
            models[name] = _check(name, Backbone.from_dict(check["entry"]), check["cuts"], check["sizes"])
    except _Refused as refused:
        return {"error": list(refused.args)}
    return {"models": models}


def with_answer(spec: Spec, answer: dict) -> Spec:
    if "error" in answer:
        key, message = answer["error"]
        raise SpecError(f"{spec.path}: {key}: {message}")
    found = {name: replace(spec.backbones[name], cut_points=tuple(cuts), channels=tuple(channels))
             for name, (cuts, channels) in answer["models"].items()}
    return replace(spec, backbones={**spec.backbones, **found})


class _Refused(Exception):
    def __init__(self, key: str, message: str):
        super().__init__(key, message)


def _check(name: str, entry: Backbone, cuts: list[str], sizes: list[int]) -> tuple[list[str], list[int]]:
    """(cut points, their channels) of one model, the whole model's output last as `full`."""
    import keras

    home = "space.backbone" if entry.hub else f"backbones.{name}"  # where the spec declares it
    where = home if entry.hub else f"{home}.{'file' if entry.file else 'factory'}"
    named = [cut for cut in cuts if cut != FULL]
    channels: dict[str, int] = {}
    for size in sizes:
        try:
            model = build_backbone(entry, size, None)
        except Exception as exc:  # a custom layer not registered, a factory's own error, a corrupt file
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise _Refused(where, f"{name} did not load: {type(exc).__name__}: {first}") from None
        shape = tuple(model.inputs[0].shape) if len(model.inputs) == 1 else None
        if shape is None or len(shape) != 4 or shape[-1] != 3:
            taken = ", ".join(str(tuple(t.shape)) for t in model.inputs)
            raise _Refused(home, f"{name} takes {taken}, not images (batch, height, width, 3)")
        if shape[1:3] != (size, size):
            raise _Refused("image_size", f"{name} takes {shape[1]}x{shape[2]} images and the space asks for {size} px; "
                                         f"use image_size: {shape[1]}, or save it with keras.Input((None, None, 3))")
        if len(model.outputs) != 1:
            raise _Refused(home, f"{name} gives {len(model.outputs)} outputs; a backbone gives one (cut it at a layer)")
        layers = [layer.name for layer in model.layers]
        for cut in [*named, FULL]:
            if cut != FULL and cut not in layers:
                close = difflib.get_close_matches(cut, layers, n=3, cutoff=0.5)
                hint = f"did you mean {', '.join(close)}?" if close else f"its last layers are {', '.join(layers[-3:])}"
                raise _Refused(f"space.cut.{name}", f"{cut!r} is not a layer of {name}; {hint}")
            output = model.outputs[0] if cut == FULL else model.get_layer(cut).output
            if len(output.shape) not in (3, 4):
                raise _Refused(f"space.cut.{name}" if cut != FULL else home,
                               f"{name}'s output at {cut} has shape {tuple(output.shape)}, not a feature map "
                               "(batch, height, width, channels) or tokens (batch, tokens, width) for the head to pool")
            channels[cut] = int(output.shape[-1])
        keras.backend.clear_session()
    return [*named, FULL], [channels[cut] for cut in [*named, FULL]]


if __name__ == "__main__":  # the process `inspect` starts; its last line out is the answer
    print(json.dumps(answer(json.loads(sys.argv[1]))))
