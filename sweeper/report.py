"""`sweeper report`: charts and one self-contained HTML page that explain a finished (or running) sweep.

The leaderboard says which trial won; the report says why and how far to trust it: how every trial
learned and where ASHA stopped it, how many trials survived each rung, which hyperparameters mattered
(fANOVA, as Optuna computes it) and what accuracy costs in CPU latency (or in the cost a
multi-objective sweep searched: TFLite latency, size or parameters). Everything lands in
`results/<sweep>/report/`: four PNG charts and `report.html`, which embeds them so it can be mailed.
This module draws and writes; the numbers it draws (curves, rungs, importances, the Pareto front)
come from `analysis`.
"""

from __future__ import annotations

import base64
import html
import io
import textwrap
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import baseline, leaderboard, results, triage
from .analysis import History, importances, load_histories, number, pareto_front, reaching, rungs, status_counts
from .errors import SweeperError
from .files import write_atomic
from .hyperparameters import CONFIG_KEYS
from .objective import Objective
from .plotting import pyplot
from .spec import Budget, read_search_setup
from .status import TrialStatus

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



def write_report(sweep_dir: Path | str) -> Path:
    """Write `<sweep_dir>/report/` (four PNG charts and report.html) and return the HTML file's path."""
    sweep_dir = Path(sweep_dir)
    rows = leaderboard.read(sweep_dir)
    if not rows:
        raise SweeperError(f"{sweep_dir}: no trials yet; nothing to report")
    sweep = results.read_meta(sweep_dir)
    if "objective" not in sweep:
        raise SweeperError(f"{sweep_dir}: no sweep.json here; is this a sweep folder (results/<sweep>)?")
    objective, mode = sweep["objective"], sweep["mode"]
    space, budget = read_search_setup(results.SweepFolder(sweep_dir).spec)
    histories = load_histories(sweep_dir, rows, objective)
    label = _objective_label(objective, sweep.get("task", "classification"))
    # A multi-objective sweep is drawn against the cost it searched; any other against CPU latency.
    cost = next(iter(sweep.get("objectives", [])[1:]), "latency_ms")
    cost_chart = COST_CHARTS[cost][0]

    folder = results.SweepFolder(sweep_dir).report
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
    ranking = triage.read_ranking(results.SweepFolder(sweep_dir).triage)
    write_atomic(page, _html(sweep.get("name", sweep_dir.name), rows, objective, mode, budget, pngs, cost,
                             sweep.get("baseline"), _triage_html(ranking, sweep.get("task", "classification"))).encode())
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


# --- charts ------------------------------------------------------------------------------------


def _plot_learning_curves(rows: list[dict], histories: dict[str, History], objective: str, label: str,
                          budget: Budget) -> Figure:
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 5.5))
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
    ax.set_title(f"Learning curves: {len(rows)} trials ({_status_counts(rows)})")
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return fig


def _plot_asha_rungs(rows: list[dict], histories: dict[str, History], label: str, budget: Budget) -> Figure:
    from matplotlib.lines import Line2D

    plt = pyplot()
    epochs = rungs(budget)
    reached = reaching(rows, epochs)
    names = [f"epoch {e}" + (" (max)" if e == budget.max_epochs else "") for e in epochs]
    fig, (bars, strip) = plt.subplots(1, 2, figsize=(11, 4.8), gridspec_kw={"width_ratios": [1, 1.5]})

    bars.bar(range(len(epochs)), reached, color="tab:blue", width=0.6)
    for x, count in enumerate(reached):
        bars.annotate(str(count), (x, count), xytext=(0, 3), textcoords="offset points", ha="center",
                      fontweight="bold")
    bars.set_xticks(range(len(epochs)), labels=names)
    bars.set_ylim(0, max(reached + [1]) * 1.15)
    bars.set_xlabel("ASHA rung (epochs trained)")
    bars.set_ylabel("trials that reached it (count)")
    bars.set_title(f"Trials reaching each rung: {' → '.join(map(str, reached))}")

    # At each rung ASHA compares the objective of that epoch; each trial then went on or ended there.
    styles = {"went on": dict(color="tab:green", marker="o"),
              "stopped here by ASHA": dict(color="#8c8c8c", marker="x"),
              "completed": dict(color="tab:blue", marker="o"),
              "ended here (running or failed)": dict(color="tab:red", marker="s")}
    jitter = np.random.default_rng(0)
    seen = set()
    for x, epoch in enumerate(epochs):
        for row in rows:
            value = dict(histories.get(row["trial_id"], [])).get(epoch)
            if value is None:
                continue
            status = row.get("status")
            kind = ("went on" if (row.get("epochs") or 0) > epoch else "stopped here by ASHA" if status == TrialStatus.STOPPED
                    else "completed" if status == TrialStatus.COMPLETED else "ended here (running or failed)")
            seen.add(kind)
            strip.scatter(x + jitter.uniform(-0.15, 0.15), value, s=36, alpha=0.85, **styles[kind])
    strip.set_xticks(range(len(epochs)), labels=names)
    strip.set_xlim(-0.5, len(epochs) - 0.5)
    strip.set_xlabel("ASHA rung (epochs trained)")
    strip.set_ylabel(label)
    strip.grid(axis="y", alpha=0.3)
    strip.set_title("Objective at each rung, and what each trial did next")
    if seen:
        strip.legend(handles=[Line2D([], [], linestyle="", markersize=6, label=k, **s)
                              for k, s in styles.items() if k in seen],
                     loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    fig.suptitle(f"ASHA: grace {budget.grace_epochs} epoch(s), reduction factor {budget.reduction_factor}, "
                 f"max {budget.max_epochs} epochs", fontsize=10)
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
    """Save a figure as PNG (atomically), close it and return the bytes for the HTML page."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    pyplot().close(fig)
    data = buffer.getvalue()
    write_atomic(path, data)
    return data


# --- the page ----------------------------------------------------------------------------------

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1180px;
       padding: 0 1em; color: #222; }
h1 { margin-bottom: .2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.summary p { margin: .3em 0; } .summary p.warning { color: #a60; font-weight: bold; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; max-width: 60em; }
.table { overflow-x: auto; }
table { border-collapse: collapse; font-size: 12px; white-space: nowrap; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: left; }
th { background: #f5f5f5; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.error { white-space: normal; min-width: 20em; color: #a00; }
tr.stopped td { color: #777; } tr.error td { background: #fff4f4; } tr.running td { background: #f2fbff; }
"""


def _html(name: str, rows: list[dict], objective: str, mode: str, budget: Budget, pngs: dict[str, bytes],
          cost: str, recorded_baseline: dict | None = None, triage_html: str = "") -> str:
    e = html.escape
    best = next(iter(leaderboard.scored(rows, objective)), None)
    said, warning = baseline.lines(recorded_baseline, best)
    baseline_html = "".join(f'<p class="{"warning" if warning and i else ""}">{e(line)}.</p>'
                            for i, line in enumerate(said))
    if best is None:
        best_line = "No trial has a value yet."
    else:
        config = leaderboard.config_summary(best)
        tests = ", ".join(f"{k} {leaderboard.format_value(v)}" for k, v in best.items()
                          if k.startswith("test_") and v is not None)
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
            "(what ASHA compared), coloured by whether the trial went on past it."),
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
    figures = "\n".join(
        f'<figure><img src="data:image/png;base64,{base64.b64encode(data).decode()}" data-file="{e(file)}" '
        f'alt="{e(captions[file][0])}"><figcaption>{e(captions[file][1])}</figcaption></figure>'
        for file, data in pngs.items()
    )
    columns = ["rank", "trial_id", "status", objective, *["triage"] * any(row.get("triage") is not None for row in rows),
               *CONFIG_KEYS, *leaderboard.COST_KEYS, "wall_s", "error"]
    header = "".join(f"<th>{e(c)}</th>" for c in columns)
    body = "\n".join(
        f'<tr class="{e(str(row.get("status", "")))}">' + "".join(_cell(row, c) for c in columns) + "</tr>"
        for row in rows
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Sweep {e(name)}: report</title>
<style>{STYLE}</style>
</head>
<body>
<header class="summary">
<h1>Sweep {e(name)}</h1>
<p>Objective: <b>{e(objective)}</b> ({e(mode)}, {better}). {len(rows)} trials: {e(_status_counts(rows))}.</p>
<p>{best_line}</p>
{baseline_html}
</header>
<h2>Charts</h2>
{figures}
<h2>Leaderboard</h2>
<div class="table"><table>
<thead><tr>{header}</tr></thead>
<tbody>
{body}
</tbody>
</table></div>
{triage_html}
</body>
</html>
"""


def _triage_html(ranking: list | None, task: str) -> str:
    """The sweep's triage ranking (`budget.triage`), as `sweeper triage` prints it; empty without one."""
    if not ranking:
        return ""
    e = html.escape
    probe = "probe accuracy" if task == "classification" else "probe RMSE"
    header = "".join(f"<th>{e(c)}</th>" for c in ("rank", "backbone", "cut", "image_size", "LogME", probe))
    body = "\n".join(
        "<tr>" + "".join(_cell(row, c) for c in ("rank", "backbone", "cut", "image_size", "logme", "probe")) + "</tr>"
        for row in ({"rank": i, **asdict(r.pair), "logme": r.logme, "probe": r.probe} for i, r in enumerate(ranking, 1)))
    return (f"<h2>Triage</h2>\n<p>Before the first trial, each (backbone, cut, image size) was scored on the frozen "
            f"features of the training images, training nothing; the leaderboard's <code>triage</code> column is a "
            f"trial's {e(triage.RANKED_BY)} from this table.</p>\n"
            f'<div class="table"><table>\n<thead><tr>{header}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table></div>')


def _cell(row: dict, column: str) -> str:
    value = row.get(column)
    text = leaderboard.status_label(row) if column == "status" else leaderboard.format_value(value)
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    kind = ' class="num"' if numeric else ' class="error"' if column == "error" else ""
    return f"<td{kind}>{html.escape(text)}</td>"
