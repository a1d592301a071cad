"""The leaderboard: one row per trial, best first, as CSV, JSON, Markdown or a terminal table.

`leaderboard.csv` and `leaderboard.json` are rewritten atomically whenever a trial reports or
ends, so a reader never sees a half-written file and an interrupted sweep keeps its table.
"""

from __future__ import annotations

import csv
import io
import json
import math
import operator
import re
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from . import baseline, results
from .errors import SweeperError
from .files import write_atomic
from .hyperparameters import CONFIG_KEYS, DEFAULTS, HEAD, HYPERPARAMETERS
from .objective import BY_TASK, Objective, nondominated
from .status import SweepState, TrialStatus

MODES = {name: mode for objectives in BY_TASK.values() for name, mode in objectives.items()}
COST_KEYS = ("params", "trainable_params", "size_mb", "latency_ms", "tflite_ms")


def columns(objective: str) -> list[str]:
    return ["rank", "trial_id", "status", "epochs", "best_epoch", objective, *CONFIG_KEYS, *COST_KEYS, "wall_s", "error"]


def make_row(
    *, trial_id: str, status: TrialStatus, config: dict, result: dict, objective: str, error: str = ""
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
    if result.get("gpus"):  # the share of a GPU (or the GPUs) it trained on
        row["gpus"] = result["gpus"]
    return row


def ranked(rows: Iterable[dict], objective: str, mode: str) -> list[dict]:
    """Best first by the objective; trials with no value yet go last. Rank counts from 1."""
    def key(row):
        value = row.get(objective)
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        return (missing, 0 if missing else Objective(objective, mode).sort_key(value))

    out = sorted(rows, key=key)
    for i, row in enumerate(out, start=1):
        row["rank"] = i
    return out


def mark_pareto(rows: list[dict], objectives: tuple[str, ...], modes: tuple[str, ...]) -> list[dict]:
    """With several objectives, each row gains `pareto`: whether no other trial is at least as good
    in every objective and better in one. Trials without every value (running before their first
    epoch, failed, infeasible) are not on the front."""
    if len(objectives) < 2:
        return rows
    signs = [Objective(name, mode).sign for name, mode in zip(objectives, modes)]
    points = [(row["trial_id"], tuple(sign * row[name] for sign, name in zip(signs, objectives)))
              for row in scored(rows, objectives[0]) if all(_is_number(row.get(name)) for name in objectives)]
    front = nondominated(points)
    for row in rows:
        row["pareto"] = row["trial_id"] in front
    return rows


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def scored(rows: Iterable[dict], objective: str) -> list[dict]:
    """The rows that earned a value and did not fail, in their order: `scored(rows)[0]` is the best trial."""
    return [row for row in rows if _is_number(row.get(objective)) and row.get("status") != TrialStatus.ERROR]


def all_columns(rows: list[dict], objective: str) -> list[str]:
    """The design's columns, then any others the rows carry (test metrics, for one); merged sweeps lead with `sweep`."""
    cols = ["sweep"] * any("sweep" in row for row in rows) + columns(objective)
    return cols + [key for key in dict.fromkeys(k for row in rows for k in row) if key not in cols]


def write(sweep_dir: Path, rows: list[dict], objective: str) -> None:
    cols = all_columns(rows, objective)
    folder = results.SweepFolder(Path(sweep_dir))
    write_atomic(folder.leaderboard, json.dumps(rows, indent=1, default=str))
    write_atomic(folder.leaderboard_csv, to_csv(rows, cols))


def read(sweep_dir: Path) -> list[dict]:
    path = results.SweepFolder(Path(sweep_dir)).leaderboard
    if not path.is_file():
        raise SweeperError(f"{sweep_dir}: no {path.name} here; is this a sweep folder (results/<sweep>)?")
    try:
        rows = json.loads(path.read_bytes())
    except ValueError as exc:  # UnicodeDecodeError is one
        raise SweeperError(f"{path}: damaged, not JSON ({str(exc)[:100]})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "trial_id" in r and "status" in r for r in rows):
        raise SweeperError(f"{path}: not a leaderboard (a JSON list of trial rows, each with trial_id and status)")
    return rows


def show(path: Path, *, top: int | None = None, sort: str | None = None, where: Iterable[str] = (),
         fmt: str = "table", console: Console) -> None:
    """`sweeper leaderboard`: a sweep's rows (or several sweeps', merged), filtered, sorted, in one of four formats."""
    rows, objective, notes = load(Path(path))
    best = next(iter(scored(rows, objective)), None)  # before any filter: the sweep's best
    cols = all_columns(rows, objective)
    for condition in where:
        rows = [row for row in rows if _where(condition, cols)(row)]
    if sort:
        rows = sorted_by(rows, sort, cols)
    rows = rows[:top] if top else rows
    if fmt == "table":
        render(rows, objective, console, title=Path(path).resolve().name)
        if results.SweepFolder(Path(path)).leaderboard.is_file():  # one sweep: its baseline beside its best
            said, warning = baseline.lines(results.read_meta(Path(path)).get("baseline"), best)
            for i, line in enumerate(said):
                console.print(line, style="yellow" if warning and i else None, markup=False, highlight=False)
        for note in notes:
            console.print(note, style="yellow", markup=False, highlight=False)
    else:  # written as they are: rich's highlighting takes seconds on megabytes of text
        text = {"csv": to_csv, "md": to_markdown}[fmt](rows, cols) if fmt != "json" else json.dumps(rows, indent=1, default=str) + "\n"
        console.file.write(text)


def load(path: Path) -> tuple[list[dict], str, list[str]]:
    """(rows, objective, notes) of one sweep, or of every sweep in a folder merged with a `sweep` column.

    Notes say which sweeps are still running or were interrupted; their rows are what was reported so far.
    """
    if not path.is_dir():
        raise SweeperError(f"{path}: no such folder")
    if results.SweepFolder(path).leaderboard.is_file():
        sweeps = [path]
    else:
        sweeps = sorted(p for p in path.iterdir() if results.SweepFolder(p).leaderboard.is_file())
        if not sweeps:
            raise SweeperError(f"{path}: no leaderboard.json here or in its subfolders; "
                               "give a sweep folder (results/<sweep>) or a folder of them (results/)")
    merged, objectives, modes, notes = [], set(), set(), []
    for sweep in sweeps:
        rows = read(sweep)
        meta = results.read_meta(sweep)
        objective = meta.get("objective") or objective_of(rows)
        objectives.add(objective)
        modes.add(meta.get("mode") or MODES.get(objective, "max"))
        state = results.state_of(sweep)
        if state in (SweepState.RUNNING, SweepState.INTERRUPTED):
            ended = sum(r["status"] != TrialStatus.RUNNING for r in rows)
            notes.append(f"{sweep.name}: still running, {ended} of {len(rows)} trials ended so far" if state == SweepState.RUNNING
                         else f"{sweep.name}: interrupted with {ended} of {len(rows)} trials ended; rows still "
                              "`running` were cut off (`sweeper resume` continues the sweep)")
        if len(sweeps) > 1:
            rows = [{"sweep": sweep.name, **row} for row in rows]
        merged += rows
    if len(sweeps) == 1:
        return merged, objectives.pop(), notes
    if len(objectives) > 1 or len(modes) > 1:  # nothing to rank across: keep each sweep's own order
        notes.append(f"the sweeps optimise different objectives ({', '.join(sorted(objectives))}): "
                     "each keeps its own ranks")
        return merged, sorted(objectives)[0], notes
    objective = objectives.pop()
    return ranked(merged, objective, modes.pop()), objective, notes


def sorted_by(rows: list[dict], sort: str, cols: list[str]) -> list[dict]:
    """Ascending by a column, or descending with a leading minus; empty cells last either way."""
    column, descending = sort.lstrip("-"), sort.startswith("-")
    if column not in cols:
        raise SweeperError(f"--sort {sort}: no such column; allowed: {', '.join(cols)}")
    present = [r for r in rows if r.get(column) not in (None, "")]
    # Numbers before text, so a column holding both still sorts instead of failing.
    present.sort(key=lambda r: (isinstance(r[column], str), r[column]), reverse=descending)
    return present + [r for r in rows if r.get(column) in (None, "")]


_CONDITION = re.compile(r"^\s*([A-Za-z_][\w.@]*)\s*(==|!=|<=|>=|=|<|>)\s*(.*?)\s*$")
_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _where(condition: str, cols: list[str]) -> Callable[[dict], bool]:
    """A row predicate from `COL=VALUE` (also `!=`, `<`, `<=`, `>`, `>=`).

    `=` compares numbers as numbers and text case-insensitively; `status=stopped@3` and
    `status=stopped` both match a trial ASHA stopped after epoch 3.
    """
    match = _CONDITION.match(condition)
    if not match:
        raise SweeperError(f"--where {condition}: expected COL=VALUE, or COL with !=, <, <=, >, >=, "
                           "e.g. --where backbone=resnet50")
    column, op, wanted = match.groups()
    if column not in cols:
        raise SweeperError(f"--where {condition}: no such column; allowed: {', '.join(cols)}")
    number = _number(wanted)
    if op in _COMPARE:
        if number is None:
            raise SweeperError(f"--where {condition}: {op} needs a number, got {wanted!r}")
        return lambda row: _number(row.get(column)) is not None and _COMPARE[op](_number(row.get(column)), number)

    def equal(row: dict) -> bool:
        value = row.get(column)
        if number is not None and _number(value) is not None:
            return math.isclose(_number(value), number, rel_tol=1e-9)
        text = wanted.lower()
        if column == "status" and text == status_label(row).lower():
            return True
        shown = "" if value is None else format_value(value).lower()
        return text in (shown, str(value).lower())

    return equal if op in ("=", "==") else (lambda row: not equal(row))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return None if isinstance(value, float) and math.isnan(value) else float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


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
    def cell(row, col):  # Markdown is read by people: `stopped@3` as in the terminal
        return status_label(row) if col == "status" else format_value(row.get(col)).replace("|", "\\|")

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r, c) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# The terminal table shows what people choose by, compactly; the files hold every column.
STATUS_STYLE = {TrialStatus.COMPLETED: "green", TrialStatus.STOPPED: "yellow", TrialStatus.ERROR: "red", TrialStatus.DIVERGED: "magenta",
                TrialStatus.RUNNING: "cyan", TrialStatus.INFEASIBLE: "dim"}


def render(rows: list[dict], objective: str, console: Console, title: str = "") -> None:
    """The terminal table; columns that do not fit the terminal's width are left out, and the footer says so."""
    table, left_out = table_text(_table_columns(objective, rows), rows, console.width, bold=(objective,))
    if title:
        console.print(title, style="italic", markup=False, highlight=False)
    console.print(table, soft_wrap=True, highlight=False)
    if left_out:
        console.print(f"({left_out_words(left_out, console.width)}; --format csv or json has every column)",
                      style="dim", highlight=False)
    failed = [r for r in rows if r.get("error") and r.get("status") != TrialStatus.INFEASIBLE]
    for row in failed[:5]:
        console.print(f"[red]trial {escape(str(row['trial_id']))} failed:[/] {escape(str(row['error']))}", highlight=False)


Column = tuple[str, Callable[[dict], str], bool]  # (header, cell, right-aligned)


def table_text(shown: list[Column], rows: list[dict], width: int, *, keep: int = 4,
               bold: Collection[str] = ()) -> tuple[Text, list[str]]:
    """Rows as aligned columns, most important first, in `width` characters, and the headers left out.

    A column that does not fit is left out whole, with those after it: a value is never cut (rich's
    Table would shrink cells to `0.…`). The first `keep` columns stay whatever the width. Laid out
    here rather than by rich's Table, which also takes seconds on thousands of rows.
    """
    cells = [[cell(row) for _, cell, _ in shown] for row in rows]
    widths = [max([len(header)] + [len(line[i]) for line in cells]) for i, (header, _, _) in enumerate(shown)]
    fits, used = 0, 0
    for column_width in widths:
        if fits >= keep and used + column_width > width:
            break
        fits, used = fits + 1, used + column_width + 2

    def line(values: list[str], styles: list[str | None]) -> Text:
        text = Text(no_wrap=True)
        for i in range(fits):
            value = values[i].rjust(widths[i]) if shown[i][2] else values[i].ljust(widths[i])
            text.append(value, style=styles[i])
            text.append("  ")
        text.rstrip()
        return text

    out = line([h for h, _, _ in shown], ["bold"] * len(shown))
    out.append("\n" + "─" * (used - 2))
    styles = [("bold" if header in bold else None) for header, _, _ in shown]
    status_at = [header for header, _, _ in shown].index("status")
    for row, values in zip(rows, cells):
        styles[status_at] = STATUS_STYLE.get(row.get("status"))
        out.append("\n")
        out.append_text(line(values, styles))
    return out, [h for h, _, _ in shown[fits:]]


def left_out_words(headers: list[str], width: int) -> str:
    return f"{', '.join(headers)} left out to fit {width} columns"


def _table_columns(objective: str, rows: list[dict]) -> list[Column]:
    """(header, cell, right-aligned) of the terminal table, most important first."""
    merged = any("sweep" in row for row in rows)
    return [("sweep", _cell("sweep"), False)] * merged + [
        ("#", _cell("rank"), True), ("trial", _cell("trial_id"), False), ("status", status_label, False),
        (objective, lambda row: format_objective(row.get(objective)), True),
        *[("Pareto", lambda row: "yes" if row.get("pareto") else "", False)] * any("pareto" in row for row in rows),
        *[("triage", _cell("triage"), True)] * any(row.get("triage") is not None for row in rows),  # triage.py
        *_varying_first(config_columns(rows), rows),
        ("params", lambda row: format_count(row.get("params")), True), ("MB", _cell("size_mb"), True), ("ms", _cell("latency_ms"), True),
    ] + [("lite ms", _cell("tflite_ms"), True)] * any(row.get("tflite_ms") is not None for row in rows) + [
        ("infeasible: why", _cell("error"), False)] * any(row.get("status") == TrialStatus.INFEASIBLE for row in rows)


def _varying_first(columns: list[Column], rows: list[dict]) -> list[Column]:
    """The hyperparameters whose values differ between the rows, then those all rows share: a narrow
    terminal leaves out the shared ones first (the learning rate a sweep searched, not its one backbone)."""
    return sorted(columns, key=lambda column: len({column[1](row) for row in rows}) <= 1)


def config_columns(rows: Iterable[dict], only: Collection[str] | None = None) -> list[Column]:
    """(header, cell, right-aligned) of each hyperparameter, in the vocabulary's order; the head's
    three share one `head` column. One that is not always shown appears once a row sets it.

    `only`: just these hyperparameters, whatever their values (the live view shows what the space varies).
    """
    rows = list(rows)
    columns = []
    for h in HYPERPARAMETERS:
        if only is not None and h.name not in only:
            continue
        if h.name in HEAD:
            if not any(c[0] == "head" for c in columns):
                parts = HEAD if only is None else tuple(p for p in HEAD if p in only)
                columns.append(("head", lambda row, parts=parts: head_label(row, parts), False))
        elif only is not None or h.shown or any(is_set(row, h.name) for row in rows):
            columns.append((h.label, _cell(h.name), h.type in (int, float)))
    return columns


def config_summary(config: dict, only: Collection[str] | None = None) -> str:
    """A configuration in one short line: `mobilenet_v2_0.35 cut=full unfreeze=0 avg [32] d0.20 adam lr=0.0012 batch=32 px=160`;
    `only` as in `config_columns`."""
    parts = []
    for header, cell, _ in config_columns([config], only):
        text = cell(config)
        if text:
            parts.append(text if header in ("backbone", "head", "optimizer") else f"{header}={text}")
    return " ".join(parts)


def is_set(row: dict, name: str) -> bool:
    """Whether a row's hyperparameter is away from its default (older sweeps' rows lack newer ones)."""
    return row.get(name) not in (None, DEFAULTS[name])


def _cell(key: str) -> Callable[[dict], str]:
    return lambda row: format_value(row.get(key))


def status_label(row: dict) -> str:
    """`stopped@3` says ASHA stopped the trial after epoch 3; the others read as they are."""
    status = row.get("status", "")
    label = f"stopped@{row.get('epochs')}" if status == TrialStatus.STOPPED else str(status)
    return f"{label}, retried alone" if row.get("retried") else label  # after running out of GPU memory


def head_label(row: dict, parts: Collection[str] = HEAD) -> str:
    """pooling, hidden layers and dropout in one cell: `avg [256] d0.20` (or those of them in `parts`)."""
    dropout = row.get("head_dropout")
    words = {"head_pooling": str(row.get("head_pooling") or ""), "head_units": str(row.get("head_units") or "[]"),
             "head_dropout": f"d{dropout:.2f}" if isinstance(dropout, float) else ""}
    return " ".join(words[p] for p in HEAD if p in parts and words[p])


def format_objective(value: Any) -> str:
    """A score to 4 significant digits, trailing zeros kept, so a column of them lines up:
    `0.9100`, `0.8125`, `12.35`, `1,235`."""
    if not _is_number(value) or value == 0:
        return format_value(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) < 1e-3:
        return f"{value:.3e}"
    return f"{value:#.4g}".rstrip(".")


def format_count(value: Any) -> str:
    """A count with thousands separators: `2,257,984` parameters."""
    return f"{int(value):,}" if _is_number(value) and float(value).is_integer() else format_value(value)


def format_value(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):  # 4 significant digits: a learning rate of 0.000314 keeps its 3 and 1 and 4
        return f"{value:.4g}"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


