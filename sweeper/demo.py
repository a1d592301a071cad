"""`sweeper demo`: a whole sweep that runs offline, on real handwritten digits.

It writes scikit-learn's bundled digits data set as a folder per class, keeping a few digits
aside, copies the quickstart spec next to it, and runs that spec like `sweeper run` would.
Then it exports the best model as a bundle and labels the digits it kept aside.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console

from .backbones import REGISTRY
from .driver import RunOptions, run_sweep
from .export import ExportOptions, export_bundle
from .predict import run_predict
from .spec import load_spec, values_of
from .weight_files import find_local

QUICKSTART = "quickstart.yaml"
HELD_OUT = 8  # digits the sweep never sees, labelled by the exported bundle at the end


def write_digits(folder: Path, held_out: Path | None = None) -> int:
    """scikit-learn's 1,797 digits as 8x8 grayscale PNGs in one folder per class; returns how many.

    With `held_out`, the last HELD_OUT digits go there instead, named with their true label
    (`digit_1796_is_8.png`).
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.clip(digits.images * 16, 0, 255).astype(np.uint8)  # values are 0..16
    kept = len(pixels) - (HELD_OUT if held_out else 0)
    for i, (image, label) in enumerate(zip(pixels, digits.target)):
        target = folder / str(label) / f"digit_{i:04d}.png" if i < kept else held_out / f"digit_{i:04d}_is_{label}.png"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image, mode="L").save(target)
    return kept


def run_demo(options: RunOptions, console: Console | None = None) -> Path:
    console = console or Console()
    out, weights_dir = options.out, options.weights_dir
    demo_dir = out / ".demo"
    count = write_digits(demo_dir / "digits", held_out=demo_dir / "held_out")
    spec_path = demo_dir / QUICKSTART
    spec_path.write_text((files("sweeper.search_spaces") / QUICKSTART).read_text())
    console.print(f"demo: {count} handwritten digits (scikit-learn) written to {demo_dir / 'digits'}, "
                  f"{HELD_OUT} more kept aside in {demo_dir / 'held_out'}", markup=False)

    overrides = {"name": _free_name(out, "quickstart")}
    spec = load_spec(spec_path)
    missing = [
        name for name in values_of(spec.space.backbone)
        if REGISTRY[name].pretrained and find_local(REGISTRY[name], 224, weights_dir) is None
    ]
    if missing:
        # A MobileNet from random weights stays near chance on 8x8 digits within the demo's budget:
        # without ImageNet weights, the demo sweeps the small CNN alone, which learns them in minutes.
        overrides["weights"] = "none"
        overrides["space"] = {**{k: v for k, v in spec.raw["space"].items() if k != "cut"},
                              "backbone": "simple_cnn", "unfreeze": 0}
        console.print(
            f"[yellow]demo: no local ImageNet weights for {', '.join(missing)}; this demo sweeps simple_cnn, "
            "a small CNN trained from scratch.[/] Pass --weights-dir DIR or set $SWEEPER_WEIGHTS to a folder of "
            "Keras weight files to sweep the pretrained backbones too."
        )
    spec = load_spec(spec_path, overrides)
    console.print(f"demo: running {spec_path} (rerun it with `sweeper run {spec_path} --name NAME`)", markup=False)
    sweep_dir = run_sweep(spec, options, console)

    bundle = export_bundle(sweep_dir, sweep_dir / "bundle", ExportOptions(cache_dir=options.cache_dir), console)
    console.print(f"demo: the bundle labels the {HELD_OUT} digits the sweep never saw "
                  f"(`sweeper predict {bundle} {demo_dir / 'held_out'}`):", markup=False)
    results = run_predict(bundle, [demo_dir / "held_out"], fmt="table", console=console)
    right = sum(r.get("label") == Path(r["path"]).stem.rsplit("_is_", 1)[1] for r in results)
    console.print(f"demo: {right} of {len(results)} right")
    return sweep_dir


def _free_name(out: Path, base: str) -> str:
    """quickstart, quickstart-2, ...: the demo never overwrites an earlier run."""
    name, n = base, 1
    while (out / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name
