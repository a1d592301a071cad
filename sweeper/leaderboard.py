"""The leaderboard: one row per trial, best first, as CSV, JSON, Markdown or a terminal table.

`leaderboard.csv` and `leaderboard.json` are rewritten atomically whenever a trial reports or
ends, so a reader never sees a half-written file and an interrupted sweep keeps its table.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

from rich import box
from rich.console import Console
from rich.table import Table

from .errors import SweeperError
from .search_space import CONFIG_KEYS

COST_KEYS = ("params", "trainable_params", "size_mb", "latency_ms")


def columns(objective: str) -> list[str]:
    return ["rank", "trial_id", "status", "epochs", "best_epoch", objective, *CONFIG_KEYS, *COST_KEYS, "wall_s", "error"]


def make_row(
    *, trial_id: str, status: str, config: dict, result: dict, objective: str, error: str = ""
) -> dict[str, Any]:
    """A leaderboard row from a trial's config and its last reported result."""
    row: dict[str, Any] = {
        "rank": None,
        "trial_id": trial_id,
        "status": status,
        "epochs": result.get("epoch", 0),
        "best_epoch": result.get("best_epoch"),
        objective: result.get(f"best_{objective}"),
    }
    row.update({key: config.get(key) for key in CONFIG_KEYS})
    row.update({key: result.get(key) for key in COST_KEYS})
    row["wall_s"] = round(result["time_total_s"], 1) if "time_total_s" in result else None
    row["error"] = error
    if "startup_s" in result:  # beyond the design's columns: trial (or fresh worker) start to first report
        row["startup_s"] = result["startup_s"]
    return row


def ranked(rows: Iterable[dict], objective: str, mode: str) -> list[dict]:
    """Best first by the objective; trials with no value yet go last. Rank counts from 1."""
    def key(row):
        value = row.get(objective)
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        return (missing, 0 if missing else (-value if mode == "max" else value))

    out = sorted(rows, key=key)
    for i, row in enumerate(out, start=1):
        row["rank"] = i
    return out


def all_columns(rows: list[dict], objective: str) -> list[str]:
    """The design's columns, then any others the rows carry (test metrics, for one)."""
    cols = columns(objective)
    return cols + [key for key in dict.fromkeys(k for row in rows for k in row) if key not in cols]


def write(sweep_dir: Path, rows: list[dict], objective: str) -> None:
    cols = all_columns(rows, objective)
    _atomic_write(Path(sweep_dir) / "leaderboard.json", json.dumps(rows, indent=1, default=str))
    _atomic_write(Path(sweep_dir) / "leaderboard.csv", to_csv(rows, cols))


def read(sweep_dir: Path) -> list[dict]:
    path = Path(sweep_dir) / "leaderboard.json"
    if not path.is_file():
        raise SweeperError(f"{sweep_dir}: no leaderboard.json here; is this a sweep folder (results/<sweep>)?")
    return json.loads(path.read_text())


def show(sweep_dir: Path, *, top: int | None, sort: str | None, fmt: str, console: Console) -> None:
    """`sweeper leaderboard`: print a sweep's rows, best first (or by `sort`), in one of four formats."""
    rows = read(sweep_dir)
    objective = objective_of(rows)
    cols = all_columns(rows, objective)
    if sort:
        column, descending = sort.lstrip("-"), sort.startswith("-")
        if column not in cols:
            raise SweeperError(f"--sort {sort}: no such column; allowed: {', '.join(cols)}")
        present = sorted((r for r in rows if r.get(column) not in (None, "")), key=lambda r: r[column], reverse=descending)
        rows = present + [r for r in rows if r.get(column) in (None, "")]
    rows = rows[:top] if top else rows
    if fmt == "table":
        render(rows, objective, console, title=f"{Path(sweep_dir).name}")
    elif fmt == "csv":
        console.out(to_csv(rows, cols), end="")
    elif fmt == "json":
        console.out(json.dumps(rows, indent=1, default=str))
    else:
        console.out(to_markdown(rows, cols), end="")


def objective_of(rows: list[dict]) -> str:
    """The objective column: the one between best_epoch and the configuration."""
    keys = list(rows[0]) if rows else []
    return keys[keys.index("best_epoch") + 1] if "best_epoch" in keys else "val_accuracy"


def to_csv(rows: list[dict], cols: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in cols})
    return buffer.getvalue()


def to_markdown(rows: list[dict], cols: list[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(format_value(r.get(c)).replace("|", "\\|") for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# The terminal table shows what people choose by, compactly; the files hold every column.
STATUS_STYLE = {"completed": "green", "stopped": "yellow", "error": "red", "running": "cyan"}


def render(rows: list[dict], objective: str, console: Console, title: str = "") -> None:
    table = Table(title=title or None, header_style="bold", title_justify="left", box=box.SIMPLE_HEAD)
    headers = ("#", "trial", "status", objective, "backbone", "cut", "unfreeze", "head", "optimizer", "lr",
               "batch", "aug", "px", "params")
    for header in headers:
        numeric = header in ("#", objective, "unfreeze", "lr", "batch", "px", "params")
        table.add_column(header, justify="right" if numeric else "left",
                         style="bold" if header == objective else None, no_wrap=True)
    for row in rows:
        table.add_row(
            format_value(row.get("rank")),
            str(row.get("trial_id", "")),
            f"[{STATUS_STYLE.get(row.get('status'), 'white')}]{status_label(row)}[/]",
            format_value(row.get(objective)),
            format_value(row.get("backbone")),
            format_value(row.get("cut")),
            format_value(row.get("unfreeze")),
            head_label(row),
            format_value(row.get("optimizer")),
            format_value(row.get("learning_rate")),
            format_value(row.get("batch_size")),
            format_value(row.get("augment")),
            format_value(row.get("image_size")),
            format_value(row.get("params")),
        )
    console.print(table)
    for row in [r for r in rows if r.get("error")][:5]:
        console.print(f"[red]trial {row['trial_id']} failed:[/] {row['error']}", highlight=False)


def status_label(row: dict) -> str:
    """`stopped@3` says ASHA stopped the trial after epoch 3; the others read as they are."""
    status = row.get("status", "")
    return f"stopped@{row.get('epochs')}" if status == "stopped" else status


def head_label(row: dict) -> str:
    """pooling, hidden layers and dropout in one cell: `avg [256] d0.2`."""
    units = row.get("head_units") or "[]"
    dropout = row.get("head_dropout")
    return f"{row.get('head_pooling', '')} {units} d{dropout:.2f}" if isinstance(dropout, float) else f"{row.get('head_pooling', '')} {units}"


def format_value(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.4f}".rstrip("0").rstrip(".") if abs(value) < 10 else f"{value:.1f}"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
