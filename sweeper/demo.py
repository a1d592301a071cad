"""`sweeper demo`: a whole sweep that runs offline, on real handwritten digits.

It writes scikit-learn's bundled digits data set as a folder per class, copies the
quickstart spec next to it, and runs that spec like `sweeper run` would.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console

from .backbones import REGISTRY
from .driver import RunOptions, run_sweep
from .spec import load_spec, values_of
from .weights import find_local

QUICKSTART = "quickstart.yaml"


def write_digits(folder: Path) -> int:
    """scikit-learn's 1,797 digits as 8x8 grayscale PNGs in one folder per class; returns the count."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.clip(digits.images * 16, 0, 255).astype(np.uint8)  # values are 0..16
    for i, (image, label) in enumerate(zip(pixels, digits.target)):
        target = folder / str(label) / f"digit_{i:04d}.png"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image, mode="L").save(target)
    return len(pixels)


def run_demo(options: RunOptions, console: Console | None = None) -> Path:
    console = console or Console()
    out, weights_dir = options.out, options.weights_dir
    demo_dir = out / ".demo"
    count = write_digits(demo_dir / "digits")
    spec_path = demo_dir / QUICKSTART
    spec_path.write_text((files("sweeper.search_spaces") / QUICKSTART).read_text())
    console.print(f"demo: {count} handwritten digits (scikit-learn) written to {demo_dir / 'digits'}")

    overrides = {"name": _free_name(out, "quickstart")}
    spec = load_spec(spec_path)
    missing = [
        name for name in values_of(spec.space.backbone)
        if REGISTRY[name].pretrained and find_local(REGISTRY[name], 224, weights_dir) is None
    ]
    if missing:
        overrides["weights"] = "none"
        console.print(
            f"[yellow]demo: no local ImageNet weights for {', '.join(missing)}; this demo runs with random "
            "initialisation.[/] Pass --weights-dir DIR or set $SWEEPER_WEIGHTS to a folder of Keras weight files."
        )
    spec = load_spec(spec_path, overrides)
    console.print(f"demo: running {spec_path} (rerun it with `sweeper run {spec_path} --name NAME`)")
    return run_sweep(spec, options, console)


def _free_name(out: Path, base: str) -> str:
    """quickstart, quickstart-2, ...: the demo never overwrites an earlier run."""
    name, n = base, 1
    while (out / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name
