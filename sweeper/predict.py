"""`sweeper predict`: label images (or predict values) with a bundle, as a table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .bundle import load_bundle, quiet_native_stderr, read_manifest
from .data import IMAGE_SUFFIXES
from .errors import SweeperError


def image_files(paths: list[Path]) -> list[Path]:
    """The files named, and the image files inside the folders named (recursively, sorted)."""
    found = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise SweeperError(f"{path}: no such file or folder")
    if not found:
        raise SweeperError(f"no image files in {', '.join(map(str, paths))} ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return found


def run_predict(bundle_dir: Path, paths: list[Path], *, fmt: str, console: Console) -> list[dict]:
    read_manifest(bundle_dir)  # a wrong bundle folder is said first, before TensorFlow loads
    files = image_files(paths)
    with quiet_native_stderr():
        bundle = load_bundle(bundle_dir)
        results = bundle.predict(files)
    good = [r for r in results if "error" not in r]
    for bad in (r for r in results if "error" in r):  # skipped, as the sweep skips them; said on stderr
        Console(stderr=True).print(f"[yellow]skipped[/] {escape(bad['path'])}: {escape(bad['error'])}", highlight=False)
    keys = ["path", "value"] if bundle.task == "regression" else ["path", "label", "confidence"]
    if fmt == "json":
        console.file.write(json.dumps(good, indent=1) + "\n")
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(good)
        console.file.write(buffer.getvalue())
    else:
        table = Table(title=Text(f"{bundle_dir}: {len(good)} images"), title_justify="left")
        for key in keys:
            table.add_column(key, justify="left" if key in ("path", "label") else "right", overflow="fold")
        for row in good:
            table.add_row(*(Text(f"{row[k]:.4f}" if isinstance(row[k], float) else str(row[k])) for k in keys))
        console.print(table)
    if not good:
        raise SweeperError(f"none of the {len(results)} images could be read")
    return results
