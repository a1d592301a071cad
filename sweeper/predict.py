"""`sweeper predict`: label images (or predict values) with a bundle, as a table, CSV, JSON or JSON lines."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .bundle import load_bundle, read_manifest
from .data import IMAGE_SUFFIXES
from .errors import SweeperError
from .units import plural
from .versions import another_version


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
    """Predict every file and print the rows: csv, json and jsonl as each batch is ready (any number
    of files in the memory of one batch), the table at the end. Returns the rows (no pixels)."""
    manifest = read_manifest(bundle_dir)  # a wrong bundle folder is said first, before TensorFlow loads
    other = another_version(manifest.get("versions", {}).get("sweeper"), f"the bundle {bundle_dir}")
    if other:  # on stderr: stdout may be CSV or JSON
        Console(stderr=True).print(f"[yellow]note:[/] {escape(other)}", soft_wrap=True)
    files = image_files(paths)
    bundle = load_bundle(bundle_dir)  # quiet: TensorFlow's start-up lines are held back
    keys = ["path", "value"] if bundle.task == "regression" else ["path", "label", "confidence"]
    out = console.file
    writer = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
    if fmt == "csv":
        writer.writeheader()
    results, good = [], []
    for batch in bundle.predict_batches(files):  # quiet: Bundle.outputs holds TensorFlow's chatter back
        for row in batch:
            results.append(row)
            if "error" in row:  # skipped, as the sweep skips them; said on stderr
                Console(stderr=True).print(f"[yellow]skipped[/] {escape(row['path'])}: {escape(row['error'])}",
                                           highlight=False, soft_wrap=True)  # one line a file, whatever the width
                continue
            if fmt == "csv":
                writer.writerow(row)
            elif fmt in ("json", "jsonl"):  # json: one array, written a row at a time
                prefix = "" if fmt == "jsonl" else ("[\n " if not good else ",\n ")
                out.write(prefix + json.dumps(row) + ("\n" if fmt == "jsonl" else ""))
            good.append(row)
        out.flush()
    if fmt == "json":
        out.write(("\n]" if good else "[]") + "\n")
    elif fmt == "table":
        table = Table(title=Text(f"{bundle_dir}: {plural(len(good), 'image')}"), title_justify="left")
        for key in keys:
            table.add_column(key, justify="left" if key in ("path", "label") else "right", overflow="fold")
        for row in good:
            table.add_row(*(Text(f"{row[k]:.4f}" if isinstance(row[k], float) else str(row[k])) for k in keys))
        console.print(table)
    if not good:
        raise SweeperError(f"none of the {plural(len(results), 'image')} could be read")
    return results
