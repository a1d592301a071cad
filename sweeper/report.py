"""`sweeper report`: charts and one self-contained HTML page that explain a finished (or running) sweep.

The leaderboard says which trial won; the report says why and how far to trust it: how every trial
learned and where ASHA stopped it, how many trials survived each rung, which hyperparameters mattered
(fANOVA, as Optuna computes it) and what accuracy costs in CPU latency (or in the cost a
multi-objective sweep searched: TFLite latency, size or parameters). Everything lands in
`results/<sweep>/report/`: four PNG charts and `report.html`, which embeds them so it can be mailed.
The page also shows what the sweep folder recorded beside the trials: the best trial's test
evaluation (`evaluation/`, as `evaluate.report` wrote it) and the data it ran on (`data_summary.json`:
images per class and split, the files skipped). It reads those files and recomputes nothing.
This module draws and writes; the numbers it draws (curves, rungs, importances, the Pareto front)
come from `analysis`.
"""

from __future__ import annotations

import base64
import html
import json
import textwrap
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import baseline, evaluate, leaderboard, results, triage
from .analysis import History, importances, load_histories, number, pareto_front, reaching, rungs, status_counts
from .errors import SweeperError
from .files import write_atomic
from .hyperparameters import CONFIG_KEYS
from .objective import Objective
from .plotting import pyplot, save_png
from .spec import Budget, read_search_setup
from .status import FAILED, SweepState, TrialStatus
from .units import plural

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 110
STATUS_WORDS = {TrialStatus.STOPPED: "stopped by ASHA"}
# The cost the front is drawn against: (chart file, axis label, what it is in a sentence).
COST_CHARTS = {
    "latency_ms": ("objective_vs_latency.png", "CPU latency per image (ms, batch 1)", "CPU latency"),
    "tflite_ms": ("objective_vs_tflite_latency.png", "TFLite latency per image (ms, LiteRT, 1 thread)",
                  "TFLite latency"),
    "size_mb": ("objective_vs_size.png", "model size (MB)", "model size"),
    "params": ("objective_vs_params.png", "parameters", "parameter count"),
}
# What each trial did at the last ASHA rung it reached (any earlier rung, it went on past).
RUNG_ENDS = {TrialStatus.COMPLETED: "completed", TrialStatus.STOPPED: "stopped here by ASHA",
             TrialStatus.RUNNING: "still running", TrialStatus.DIVERGED: "failed after this rung",
             TrialStatus.ERROR: "failed after this rung"}
WRAPPED = ("class", "path", "reason")  # columns of long names: they wrap, on a phone anywhere
TEST_SPLIT = "test"  # the split the driver evaluates the best trial on (`_evaluate_best_on_test`)
# The rows of scikit-learn's classification report that are not classes.
REPORT_AVERAGES = ("accuracy", "micro avg", "macro avg", "weighted avg", "samples avg")


def write_report(sweep_dir: Path | str) -> Path:
    """Write `<sweep_dir>/report/` (four PNG charts and report.html) and return the HTML file's path."""
    sweep_dir = Path(sweep_dir)
    rows = leaderboard.read(sweep_dir)
    if not rows:
        raise SweeperError(f"{sweep_dir}: no trials yet; nothing to report")
    sweep = results.read_meta(sweep_dir)
    if "objective" not in sweep:
        raise SweeperError(f"{sweep_dir}: no sweep.json here; is this a sweep folder (results/<sweep>)?")
    objective, mode, task = sweep["objective"], sweep["mode"], sweep.get("task", "classification")
    paths = results.SweepFolder(sweep_dir)
    space, budget = read_search_setup(paths.spec)
    histories = load_histories(sweep_dir, rows, objective)
    label = _objective_label(objective, task)
    # A multi-objective sweep is drawn against the cost it searched; any other against CPU latency.
    cost = next(iter(sweep.get("objectives", [])[1:]), "latency_ms")
    cost_chart = COST_CHARTS[cost][0]

    folder = paths.report
    folder.mkdir(exist_ok=True)
    # Each chart is saved (and its figure closed) before the next one is drawn.
    pngs = {
        "learning_curves.png": _save(
            _plot_learning_curves(rows, histories, objective, label, budget), folder / "learning_curves.png"),
        "asha_rungs.png": _save(_plot_asha_rungs(rows, histories, label, budget), folder / "asha_rungs.png"),
        "param_importance.png": _save(
            _plot_param_importance(*importances(rows, space, objective, mode), objective),
            folder / "param_importance.png"),
        cost_chart: _save(_plot_objective_vs_cost(rows, objective, label, mode, cost), folder / cost_chart),
    }
    page = folder / "report.html"
    summary, unread = _read_json(paths.data_summary, sweep_dir)
    sections = {"evaluation": _evaluation_html(sweep_dir, rows, objective, task, summary),
                "triage": _triage_html(triage.read_ranking(paths.triage), task), "data": _data_html(summary, unread)}
    write_atomic(page, _html(sweep.get("name", sweep_dir.name), rows, objective, mode, budget, pngs, cost,
                             sweep.get("baseline"), sections, _data_line(summary)).encode())
    return page


# --- labels ------------------------------------------------------------------------------------


def _objective_label(objective: str, task: str) -> str:
    unit = {
        "val_accuracy": "fraction", "val_rmse": "target units", "val_mae": "target units",
        "val_loss": "mean squared error" if task == "regression" else "cross-entropy",
    }.get(objective)
    return f"{objective} ({unit})" if unit else objective


def _status_counts(rows: list[dict]) -> str:
    return ", ".join(f"{count} {STATUS_WORDS.get(status, status)}" for status, count in status_counts(rows).items())


def _none_did(rows: list[dict], did: str) -> str:
    """Why a chart is empty, in the words of the table's status column: "No trial reached a rung: all 3 failed"."""
    counts = status_counts(rows)
    if set(counts) <= set(FAILED):
        return f"No trial {did}: all {len(rows)} failed" + f" ({_status_counts(rows)})" * (len(counts) > 1)
    return f"No trial {did}: of {len(rows)} trials, {_status_counts(rows)}"


# --- charts ------------------------------------------------------------------------------------


def _plot_learning_curves(rows: list[dict], histories: dict[str, History], objective: str, label: str,
                          budget: Budget) -> Figure:
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 5.5))
    ax.set_title(f"Learning curves: {len(rows)} trials ({_status_counts(rows)})")
    if not histories:
        _say(ax, _none_did(rows, f"reported a {objective}") + ".")
        return fig
    best = next(iter(leaderboard.scored(rows, objective)), None)
    shown = [r for r in rows if r["trial_id"] in histories and r is not best]  # the best is drawn last, on top
    completed = [r for r in shown if r.get("status") == TrialStatus.COMPLETED]
    colours = plt.get_cmap("tab10" if len(completed) <= 10 else "tab20")
    name_each = len(completed) <= 10  # beyond that a legend of trial ids is noise
    handles = []
    for i, row in enumerate(completed):
        epochs, values = zip(*histories[row["trial_id"]])
        name = f"{row['trial_id']} ({leaderboard.format_value(number(row, objective))})"
        line, = ax.plot(epochs, values, color=colours(i % colours.N), linewidth=1.6, label=name)
        if name_each:
            handles.append(line)
    if completed and not name_each:
        handles.append(Line2D([], [], color=colours(0), linewidth=1.6, label=f"completed ({len(completed)})"))
    others = {TrialStatus.STOPPED: dict(color="#8c8c8c", linestyle="--", linewidth=0.9, marker="x"),
              TrialStatus.RUNNING: dict(color="tab:cyan", linestyle=":", linewidth=1.2, marker=">"),
              TrialStatus.DIVERGED: dict(color="tab:purple", linestyle=":", linewidth=1.0, marker="X"),
              TrialStatus.ERROR: dict(color="tab:red", linestyle=":", linewidth=1.0, marker="X")}
    for status, style in others.items():
        ended = [r for r in shown if r.get("status") == status]
        for row in ended:
            epochs, values = zip(*histories[row["trial_id"]])
            ax.plot(epochs, values, markevery=[len(epochs) - 1], markersize=6, alpha=0.85, **style)
        if ended:
            word = {TrialStatus.STOPPED: "stopped by ASHA", TrialStatus.RUNNING: "still running",
                    TrialStatus.DIVERGED: "diverged", TrialStatus.ERROR: "failed"}[status]
            handles.append(Line2D([], [], markersize=6, label=f"{word} ({len(ended)})", **style))
    if best is not None and best["trial_id"] in histories:
        epochs, values = zip(*histories[best["trial_id"]])
        ax.plot(epochs, values, color="black", linewidth=3, zorder=5)
        star = dict(marker="*", markersize=16, markerfacecolor="gold", markeredgecolor="black")
        if isinstance(best.get("best_epoch"), int):
            ax.plot(best["best_epoch"], number(best, objective), zorder=6, **star)
        value = leaderboard.format_value(number(best, objective))
        handles.insert(0, Line2D([], [], color="black", linewidth=3, label=f"best: {best['trial_id']} ({value})",
                                 **{**star, "markersize": 11}))
    stop_rungs = rungs(budget)[:-1]
    for epoch in stop_rungs:
        ax.axvline(epoch, color="grey", linestyle=":", linewidth=1)
    if stop_rungs:
        handles.append(Line2D([], [], color="grey", linestyle=":", linewidth=1,
                              label=f"ASHA rung (epoch {', '.join(map(str, stop_rungs))})"))
    ax.set_xlim(0.8, budget.max_epochs + 0.2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return fig


def _plot_asha_rungs(rows: list[dict], histories: dict[str, History], label: str, budget: Budget) -> Figure:
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    epochs = rungs(budget)
    reached = reaching(rows, epochs)
    names = [f"epoch {e}" + (" (max)" if e == budget.max_epochs else "") for e in epochs]
    schedule = (f"ASHA: grace {plural(budget.grace_epochs, 'epoch')}, reduction factor {budget.reduction_factor}, "
                f"max {budget.max_epochs} epochs; {len(rows)} trials: {_status_counts(rows)}")
    if not reached[0]:  # the same sentence as the table: zero bars and an empty strip said nothing
        fig, ax = plt.subplots(figsize=(11, 4.8))
        ax.set_title(f"Trials reaching each rung (epoch {', '.join(map(str, epochs))}): none of {len(rows)}")
        _say(ax, _none_did(rows, "reached a rung") + ".")
        fig.suptitle(schedule, fontsize=10)
        return fig
    fig, (bars, strip) = plt.subplots(1, 2, figsize=(11, 4.8), gridspec_kw={"width_ratios": [1, 1.5]})

    bars.bar(range(len(epochs)), reached, color="tab:blue", width=0.6)
    for x, count in enumerate(reached):
        bars.annotate(str(count), (x, count), xytext=(0, 3), textcoords="offset points", ha="center",
                      fontweight="bold")
    bars.set_xticks(range(len(epochs)), labels=names)
    bars.set_ylim(0, max(reached) * 1.15)
    bars.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no 2.5 trials
    bars.set_xlabel("ASHA rung (epochs trained)")
    bars.set_ylabel("trials that reached it (count)")
    bars.set_title(f"Trials reaching each rung: {' → '.join(map(str, reached))} (of {len(rows)})")

    # At each rung ASHA compares the objective of that epoch. At the last rung a trial reached, it is
    # drawn as what it became (the table's status); at any earlier one, it went on.
    styles = {"went on": dict(color="tab:green", marker="o"),
              "stopped here by ASHA": dict(color="#8c8c8c", marker="x"),
              "completed": dict(color="tab:blue", marker="o"),
              "still running": dict(color="tab:cyan", marker=">"),
              "failed after this rung": dict(color="tab:red", marker="s")}
    jitter = np.random.default_rng(0)
    seen: dict[str, int] = {}  # points of each kind: one per trial for each way to end
    for row in rows:
        values = dict(histories.get(row["trial_id"], []))
        points = [(x, values[epoch]) for x, epoch in enumerate(epochs) if epoch in values]
        for i, (x, value) in enumerate(points):
            kind = "went on" if i < len(points) - 1 else RUNG_ENDS.get(row.get("status"), "failed after this rung")
            seen[kind] = seen.get(kind, 0) + 1
            strip.scatter(x + jitter.uniform(-0.15, 0.15), value, s=36, alpha=0.85, **styles[kind])
    strip.set_xticks(range(len(epochs)), labels=names)
    strip.set_xlim(-0.5, len(epochs) - 0.5)
    strip.set_xlabel("ASHA rung (epochs trained)")
    strip.set_title("Objective at each rung, and what each trial did next")
    if not seen:
        _say(strip, f"No trial's results record its {label} at a rung's epoch.")
    else:
        strip.set_ylabel(label)
        strip.grid(axis="y", alpha=0.3)
        strip.legend(handles=[Line2D([], [], linestyle="", markersize=6, **style,
                                     label=kind if kind == "went on" else f"{kind} ({plural(seen[kind], 'trial')})")
                              for kind, style in styles.items() if kind in seen],
                     loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    fig.suptitle(schedule, fontsize=10)
    return fig


def _plot_param_importance(importances: dict[str, float], trials: int, why: str, objective: str) -> Figure:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, max(3.4, 0.45 * len(importances) + 1.8)))
    ax.set_xlabel("importance (fANOVA, normalised to sum 1)")
    if why:
        ax.set_title("Parameter importance: not available")
        _say(ax, f"Parameter importance is undefined here: {why}.")
    else:
        ordered = sorted(importances.items(), key=lambda item: item[1])  # barh draws bottom-up: largest on top
        names, values = [n for n, _ in ordered], [v for _, v in ordered]
        ax.barh(names, values, color="tab:blue")
        for y, value in enumerate(values):
            ax.annotate(f"{value:.2f}", (value, y), xytext=(3, 0), textcoords="offset points", va="center")
        ax.set_xlim(0, max(values) * 1.15)
        ax.set_ylabel("hyperparameter (Optuna name)")
        ax.set_title(f"What explains {objective}: parameter importance over {trials} finished trials")
    return fig


def _plot_objective_vs_cost(rows: list[dict], objective: str, label: str, mode: str, cost: str) -> Figure:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    _, axis, words = COST_CHARTS[cost]
    ax.set_xlabel(axis)
    ax.set_ylabel(label)
    points = [(r["trial_id"], number(r, cost), number(r, objective)) for r in rows
              if number(r, cost) is not None and number(r, objective) is not None]
    if not points:
        ax.set_title(f"{objective} against {words}: none measured")
        _say(ax, f"None of the {len(rows)} trials has both a {cost} and a {objective}. Costs are measured before "
                 "an architecture's first trial trains; trials of older sweeps, failed trials and trials still "
                 "before their first epoch have none.")
        return fig
    front = pareto_front(points, mode)
    on_front = [next(p for p in points if p[0] == trial_id) for trial_id in front]
    others = [p for p in points if p[0] not in front]
    if others:
        ax.scatter([p[1] for p in others], [p[2] for p in others], s=36, color="#8c8c8c", alpha=0.8,
                   label=f"other trials ({len(others)})")
    ax.step([p[1] for p in on_front], [p[2] for p in on_front], where="post", color="tab:red", linewidth=1.2)
    ax.scatter([p[1] for p in on_front], [p[2] for p in on_front], s=64, color="tab:red", edgecolor="black",
               zorder=3, label=f"Pareto front ({len(front)}): best {objective} for its {words}")
    for trial_id, spent, value in on_front:
        ax.annotate(trial_id, (spent, value), xytext=(5, 5), textcoords="offset points", fontsize=8)
    costs = [p[1] for p in points]
    if min(costs) > 0 and max(costs) / min(costs) > 20:  # backbones span orders of magnitude
        ax.set_xscale("log")
    ax.margins(x=0.12, y=0.12)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(f"{objective} against {words}: {len(points)} trials, {len(front)} on the Pareto front")
    return fig


def _say(ax: Axes, text: str) -> None:
    """A chart that has no data says why, in the middle of its empty axes."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.5, 0.5, textwrap.fill(text, 60), transform=ax.transAxes, ha="center", va="center", fontsize=11)


def _save(fig: Figure, path: Path) -> bytes:
    return save_png(fig, path, DPI)


# --- the page ----------------------------------------------------------------------------------

# Phones (390 CSS px): the page never scrolls sideways. Tables scroll inside their own `.table` box,
# images shrink to the width, long words (paths, configurations) break.
STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1180px;
       padding: 0 1em; color: #222; overflow-wrap: break-word; }
h1 { margin-bottom: .2em; overflow-wrap: anywhere; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.summary p { margin: .3em 0; } .summary p.warning { color: #a60; font-weight: bold; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; max-width: 60em; }
.table { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 12px; white-space: nowrap; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: left; }
th { background: #f5f5f5; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.error { white-space: normal; min-width: 20em; color: #a00; }
td.text { white-space: normal; overflow-wrap: break-word; min-width: 12em; }
tr.stopped td { color: #777; } tr.error td { background: #fff4f4; } tr.running td { background: #f2fbff; }
tr.total td { font-weight: 600; border-top: 1px solid #bbb; }
details summary { cursor: pointer; margin: .5em 0; }
@media (max-width: 600px) {
  body { font-size: 13px; margin: 1em auto; padding: 0 .6em; }
  h1 { font-size: 1.5em; } h2 { font-size: 1.2em; }
  figure { margin: 1em 0; }
  td.error { min-width: 14em; } td.text { min-width: 7em; overflow-wrap: anywhere; }
}
"""


def _html(name: str, rows: list[dict], objective: str, mode: str, budget: Budget, pngs: dict[str, bytes],
          cost: str, recorded_baseline: dict | None = None, sections: dict[str, str] | None = None,
          data_line: str = "") -> str:
    """The page: the summary, the test evaluation, the charts, the leaderboard, the triage and the data
    (`sections`, in HTML already: "evaluation", "triage", "data"; those missing are left out)."""
    e = html.escape
    best = next(iter(leaderboard.scored(rows, objective)), None)
    said, warning = baseline.lines(recorded_baseline, best)
    baseline_html = "".join(f'<p class="{"warning" if warning and i else ""}">{e(line)}.</p>'
                            for i, line in enumerate(said))
    if best is None:
        best_line = "No trial has a value yet."
    else:
        config = leaderboard.config_summary(best)
        tests = _test_results(best)
        best_line = (f"Best trial: <b>{e(str(best['trial_id']))}</b>, {e(objective)} "
                     f"<b>{e(leaderboard.format_value(number(best, objective)))}</b> "
                     f"(epoch {e(leaderboard.format_value(best.get('best_epoch')))}) with {e(config)}"
                     + (f"; on the test split: {e(tests)}" if tests else "") + ".")
    better = Objective(objective, mode).words
    captions = {
        "learning_curves.png": (
            "Learning curves of every trial",
            f"Each line is one trial's {objective} after each epoch. Coloured solid lines ran all "
            f"{budget.max_epochs} epochs; grey dashed lines ending in × were stopped by ASHA at a rung (dotted "
            "lines); the thick black line is the best trial, its star the epoch it was best at."),
        "asha_rungs.png": (
            "Trials surviving the ASHA rungs",
            f"Left: how many trials trained at least as many epochs as each rung; ASHA lets about 1 in "
            f"{budget.reduction_factor} go on at each rung. Right: each trial's {objective} at the rung's epoch "
            "(what ASHA compared); at the last rung it reached, a trial is drawn as what it became (its status in "
            "the leaderboard), at any earlier one it went on."),
        "param_importance.png": (
            "Parameter importance",
            f"How much of the spread in {objective} across the finished trials each hyperparameter explains "
            "(fANOVA on a random forest, as Optuna computes it; the bars sum to 1). With few trials, read it "
            "as a hint of where to search next, not a measurement."),
        COST_CHARTS[cost][0]: (
            f"Objective against {COST_CHARTS[cost][2]}",
            f"Each point is a trial with a measured {COST_CHARTS[cost][2]}. The red points joined by the step line are the "
            f"Pareto front: no other trial is both as cheap and as good ({better}); pick the cheapest one that is "
            "good enough."),
    }
    figures = "\n".join(_figure(data, file, *captions[file]) for file, data in pngs.items())
    columns = ["rank", "trial_id", "status", objective, *["triage"] * any(row.get("triage") is not None for row in rows),
               *CONFIG_KEYS, *leaderboard.COST_KEYS, "wall_s", "error"]
    sections = sections or {}
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sweep {e(name)}: report</title>
<style>{STYLE}</style>
</head>
<body>
<header class="summary">
<h1>Sweep {e(name)}</h1>
<p>Objective: <b>{e(objective)}</b> ({e(mode)}, {better}). {len(rows)} trials: {e(_status_counts(rows))}.</p>
<p>{best_line}</p>
{baseline_html}
{f"<p>{e(data_line)}</p>" if data_line else ""}
</header>
{sections.get("evaluation", "")}
<h2>Charts</h2>
{figures}
<h2>Leaderboard</h2>
{_table(columns, rows, row_class=lambda row: str(row.get("status", "")), scores=(objective,))}
{sections.get("triage", "")}
{sections.get("data", "")}
</body>
</html>
"""


def _figure(png: bytes, file: str, title: str, caption: str) -> str:
    """A chart embedded in the page (base64), named by its file beside the page."""
    e = html.escape
    return (f'<figure><img src="data:image/png;base64,{base64.b64encode(png).decode()}" data-file="{e(file)}" '
            f'alt="{e(title)}"><figcaption>{e(caption)}</figcaption></figure>')


def _table(columns: list[str], rows: list[dict], header: list[str] | None = None, row_class=lambda row: "",
           scores: tuple[str, ...] = ()) -> str:
    """A table of `rows` (dicts), one cell per column, in a box that scrolls sideways on its own;
    the `scores` columns to 4 significant digits, trailing zeros kept, as in the terminal."""
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in header or columns)
    body = "\n".join(f"<tr{_class(row_class(row))}>" + "".join(_cell(row, c, c in scores) for c in columns) + "</tr>"
                     for row in rows)
    return f'<div class="table"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table></div>'


def _cell(row: dict, column: str, score: bool = False) -> str:
    value = row.get(column)
    text = (leaderboard.status_label(row) if column == "status" else
            leaderboard.format_objective(value) if score else leaderboard.format_value(value))
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    kind = "num" if numeric else "error" if column == "error" else "text" if column in WRAPPED else ""
    return f"<td{_class(kind)}>{html.escape(text)}</td>"


def _class(name: str) -> str:
    return f' class="{html.escape(name)}"' if name else ""


def _triage_html(ranking: list | None, task: str) -> str:
    """The sweep's triage ranking (`budget.triage`), as `sweeper triage` prints it; empty without one."""
    if not ranking:
        return ""
    probe = "probe accuracy" if task == "classification" else "probe RMSE"
    rows = [{"rank": i, **asdict(r.pair), "logme": r.logme, "probe": r.probe} for i, r in enumerate(ranking, 1)]
    table = _table(["rank", "backbone", "cut", "image_size", "logme", "probe"], rows,
                   header=["rank", "backbone", "cut", "image_size", "LogME", probe])
    return (f"<h2>Triage</h2>\n<p>Before the first trial, each (backbone, cut, image size) was scored on the frozen "
            f"features of the training images, training nothing; the leaderboard's <code>triage</code> column is a "
            f"trial's {html.escape(triage.RANKED_BY)} from this table.</p>\n{table}")


# --- what the sweep folder recorded beside the trials: the test evaluation and the data ---------


def _read_json(path: Path, sweep_dir: Path) -> tuple[dict | None, str]:
    """A JSON file the sweep wrote: (its content, "") or (None, why not, in one line naming the file)."""
    name = path.relative_to(sweep_dir)
    try:
        found = json.loads(path.read_text())
    except FileNotFoundError:
        return None, f"{name}: not in this sweep folder"
    except (OSError, ValueError) as exc:
        return None, f"{name}: unreadable ({exc})"
    return (found, "") if isinstance(found, dict) else (None, f"{name}: not a JSON object")


def _test_results(row: dict) -> str:
    """A row's `test_*` results as the driver added them, "test_accuracy 0.93, ..."; "" for a row without."""
    return ", ".join(f"{k} {leaderboard.format_value(v)}" for k, v in row.items()
                     if k.startswith(f"{TEST_SPLIT}_") and v is not None)


def _evaluation_html(sweep_dir: Path, rows: list[dict], objective: str, task: str, summary: dict | None) -> str:
    """The best trial on the test split, from `evaluation/`; without that folder, why there is none."""
    e = html.escape
    folder = results.SweepFolder(sweep_dir).evaluation
    head = "<h2>Test evaluation</h2>\n"
    if not folder.is_dir():
        return head + f"<p>{e(_no_evaluation(sweep_dir, rows, objective, summary))}</p>"
    evaluated = next((row for row in rows if _test_results(row)), None)
    if evaluated is None:
        intro = ("No leaderboard row has test results, so which trial the files in <code>evaluation/</code> "
                 "evaluated is not recorded.")
    else:
        best = next(iter(leaderboard.scored(rows, objective)), None)
        images = leaderboard.format_value(evaluated.get(f"{TEST_SPLIT}_images"))
        intro = (("The best trial, " if evaluated is best else "Trial ") + f"<b>{e(str(evaluated['trial_id']))}</b>, "
                 + ("" if evaluated is best else "the best when the sweep last finished, ")
                 + f"evaluated from its best checkpoint on {e(images or 'the')} test images, held out from training "
                 f"and from choosing the best trial: {e(_test_results(evaluated))}.")
    parts = _regression_evaluation(sweep_dir, summary) if task == "regression" else _classification_evaluation(sweep_dir)
    return head + f"<p>{intro}</p>\n" + "\n".join(parts)


def _no_evaluation(sweep_dir: Path, rows: list[dict], objective: str, summary: dict | None) -> str:
    """One sentence: why a sweep folder has no `evaluation/`."""
    state = results.state_of(sweep_dir)
    if summary is not None and TEST_SPLIT not in summary.get("per_split", {}):
        return ("No test evaluation: the data has no test split (data.test_split or data.test holds images out "
                "for one).")
    if state in (SweepState.RUNNING, SweepState.INTERRUPTED):
        return (f"No test evaluation yet: the sweep is {state}; its best trial is evaluated on the test split "
                "once every trial has ended.")
    if next(iter(leaderboard.scored(rows, objective)), None) is None:
        return "No test evaluation: no trial finished an epoch, so there was nothing to evaluate."
    return ("No test evaluation: this sweep folder has no evaluation/ (its data had no test split, or the sweep "
            "ended before the evaluation).")


def _classification_evaluation(sweep_dir: Path) -> list[str]:
    """scikit-learn's classification report as a table, and the confusion matrix, as `evaluate.report` wrote them."""
    folder = results.SweepFolder(sweep_dir).evaluation
    found, unread = _read_json(folder / evaluate.CLASSIFICATION_REPORT, sweep_dir)
    if found is None:
        table = f"<p>{html.escape(unread)}.</p>"
    else:
        classes = [{"class": name, **scores} for name, scores in found.items()
                   if isinstance(scores, dict) and name not in REPORT_AVERAGES]
        total = sum(row.get("support") or 0 for row in classes)
        averages = [{"class": name, **({"f1-score": found[name], "support": total} if name == "accuracy"
                                       else found[name])}
                    for name in REPORT_AVERAGES if name in found]
        columns = ["class", "precision", "recall", "f1-score", "support"]
        table = _table(columns, classes + averages, row_class=lambda row: "total" if row in averages else "")
    return [table, _evaluation_figure(sweep_dir, evaluate.CONFUSION_MATRIX, "Confusion matrix on the test split",
                                      "Rows are the true classes, columns the predicted ones: the diagonal counts "
                                      "the test images classified right, every other cell one kind of mistake.")]


def _regression_evaluation(sweep_dir: Path, summary: dict | None) -> list[str]:
    """RMSE, MAE and R² from `regression_metrics.json`, beside what predicting the training mean would score."""
    folder = results.SweepFolder(sweep_dir).evaluation
    found, unread = _read_json(folder / evaluate.REGRESSION_METRICS, sweep_dir)
    if found is None:
        table = f"<p>{html.escape(unread)}.</p>"
    else:
        mean = ((summary or {}).get("per_split", {}).get(TEST_SPLIT) or {}).get("rmse_of_train_mean")
        shown = [("RMSE", f"{TEST_SPLIT}_rmse"), ("MAE", f"{TEST_SPLIT}_mae"), ("R²", f"{TEST_SPLIT}_r2"),
                 ("images", f"{TEST_SPLIT}_images")]
        # R² is NaN (undefined) on a single image
        metrics = [{"metric": name, "value": "undefined" if number(found, key) is None else found[key]}
                   for name, key in shown if key in found]
        if mean is not None:
            metrics.append({"metric": "RMSE of always predicting the training mean", "value": mean})
        table = _table(["metric", "value"], metrics, header=["metric", f"{TEST_SPLIT} split"])
    return [table, _evaluation_figure(sweep_dir, evaluate.PREDICTED_VS_TRUE, "Predicted against true values",
                                      "Each point is a test image: its true target and the model's prediction. "
                                      "On the dashed line the two are equal.")]


def _evaluation_figure(sweep_dir: Path, file: str, title: str, caption: str) -> str:
    path = results.SweepFolder(sweep_dir).evaluation / file
    name = path.relative_to(sweep_dir).as_posix()
    try:
        png = path.read_bytes()
    except OSError:
        return f"<p>{html.escape(name)}: not in this sweep folder.</p>"
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        return f"<p>{html.escape(name)}: not a PNG image.</p>"
    return _figure(png, name, title, caption)


def _data_line(summary: dict | None) -> str:
    """The data in one line of the page's summary: images, classes, files skipped."""
    if summary is None:
        return ""
    classes = summary.get("classes") or []
    kind = plural(len(classes), "class") if classes else "regression targets"
    skipped = summary.get("skipped") or 0
    return (f"Data: {leaderboard.format_value(summary.get('images'))} images, {kind}"
            + (f"; {plural(skipped, 'file')} skipped while indexing it (listed under Data)" if skipped else "") + ".")


def _data_html(summary: dict | None, unread: str) -> str:
    """`data_summary.json`: images per class (or target statistics) and split, and the files skipped."""
    e = html.escape
    head = "<h2>Data</h2>\n"
    if summary is None:
        return head + f"<p>No data summary: {e(unread)} (a sweep writes it as it starts, once its images are decoded).</p>"
    per_split = summary.get("per_split") or {}
    splits = list(per_split)
    classes = summary.get("classes") or []
    if classes:
        rows = [{"class": name, **{s: per_split[s].get(name) for s in splits}} for name in classes]
        rows.append({"class": "all classes", **{s: sum((per_split[s].get(c) or 0) for c in classes) for s in splits}})
        table = _table(["class", *splits], rows, row_class=lambda row: "total" if row is rows[-1] else "")
    else:
        stats = ("images", "mean", "std", "min", "max", "rmse_of_train_mean")
        table = _table(["target", *splits], [{"target": stat, **{s: per_split[s].get(stat) for s in splits}}
                                               for stat in stats])
    task = summary.get("task", "classification" if classes else "regression")
    intro = (f"<p>Task: {e(task)}; {e(leaderboard.format_value(summary.get('images')))} images in "
             f"{plural(len(splits), 'split')} ({e(', '.join(splits))}), as indexed when the sweep "
             f"started (fingerprint <code>{e(str(summary.get('fingerprint', '')))}</code>).</p>")
    return head + intro + "\n" + table + "\n" + _skipped_html(summary)


def _skipped_html(summary: dict) -> str:
    """The files left out of every split: not images, unreadable, or too large."""
    count, listed = summary.get("skipped") or 0, summary.get("skipped_files") or []
    if not count:
        return "<p>No file was skipped: every file found was indexed and decoded.</p>"
    more = f"; the first {len(listed)} are listed" if len(listed) < count else ""
    table = _table(["path", "reason"], listed)
    return (f"<details{' open' * (count <= 20)}><summary>{plural(count, 'file')} skipped while indexing and "
            f"decoding the data, in no split{more}</summary>\n{table}\n</details>")
