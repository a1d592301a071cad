"""Sweeps from Python: `sweeper.run(spec)` runs one as `sweeper run` does, `sweeper.open(folder)`
reads one, and the `Sweep` both return answers what a notebook asks of a sweep: its leaderboard
as a DataFrame, the best trial, every trial's curves, its export, its report.

Errors are the typed ones the command line prints on one line (SpecError, DataError,
SweeperError); Ctrl+C (KeyboardInterrupt) leaves a running sweep interrupted and resumable, as
in a terminal. Ray, Keras and pandas are imported when a method needs them, not with sweeper.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import leaderboard, results
from .spec import Spec, absolute_sqlite, load_spec, parse_spec
from .status import SweepState
from .units import plural

# run()'s keyword options: the spec's own overrides (as `sweeper run --name/--trials/--max-epochs`)
# and the `RunOptions` of the command's other flags.
SPEC_OVERRIDES = {"name": "name", "trials": "budget.trials", "max_epochs": "budget.max_epochs",
                  "mlflow": "tracking.mlflow"}
RUN_OPTIONS = ("out", "address", "weights_dir", "cache_dir", "storage", "feature_cache", "reuse_workers",
               "spatial_features", "cache_max_size")
_PATHS = ("out", "weights_dir", "cache_dir")


def run(spec: str | Path | dict | Spec, *, console=None, **options: Any) -> Sweep:
    """Run a sweep and return it when it has finished: `sweeper.run("cats.yaml", trials=8, out="results")`.

    `spec` is a spec file, a dict holding what the YAML would (relative paths are then relative to
    the working directory), or a `Spec`. `options` are `sweeper run`'s: name, trials, max_epochs,
    mlflow (a tracking URI), out, address, weights_dir, cache_dir, storage, feature_cache,
    reuse_workers, spatial_features, cache_max_size (bytes). The live view draws on `console` (a
    rich Console; default: stdout).
    """
    from .driver import RunOptions, run_sweep

    unknown = sorted(set(options) - set(SPEC_OVERRIDES) - set(RUN_OPTIONS))
    if unknown:
        raise TypeError(f"run() got unknown options {', '.join(unknown)}; "
                        f"it takes {', '.join([*SPEC_OVERRIDES, *RUN_OPTIONS])}")
    if options.get("mlflow"):  # a relative SQLite store is the working directory's, as with `--mlflow`
        options["mlflow"] = absolute_sqlite(options["mlflow"], Path.cwd())
    overrides = {SPEC_OVERRIDES[k]: v for k, v in options.items() if k in SPEC_OVERRIDES}
    values = {k: Path(v) if k in _PATHS and v is not None else v for k, v in options.items() if k in RUN_OPTIONS}
    return Sweep(run_sweep(_spec(spec, overrides), RunOptions(**values), console))


def open(path: str | Path) -> Sweep:  # shadows the builtin in this module only: `sweeper.open(folder)`
    """A sweep folder (`results/<sweep>`), finished, running or interrupted."""
    return Sweep(path)


def _spec(spec: str | Path | dict | Spec, overrides: dict) -> Spec:
    if isinstance(spec, Spec):
        return parse_spec(spec.raw, spec.path, overrides) if overrides else spec
    if isinstance(spec, dict):
        # A spec with no file: its folder is the working directory, its default name "sweep".
        return parse_spec(spec, Path.cwd() / "sweep.yaml", overrides)
    return load_spec(spec, overrides)


class Sweep:
    """A sweep folder, read as it is now: every property reads the files again, so a running
    sweep's numbers move on between calls."""

    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()
        self._meta = results.require_sweep(self.path)  # a clear error for a folder that is not a sweep

    def __repr__(self) -> str:
        return f"Sweep({str(self.path)!r}, {self.state.value}, {plural(len(self.trials), 'trial')})"

    @property
    def name(self) -> str:
        return self._meta.get("name", self.path.name)

    @property
    def objective(self) -> str:
        return self._meta["objective"]

    @property
    def mode(self) -> str:
        """"max" or "min": which way the objective improves."""
        return self._meta["mode"]

    @property
    def state(self) -> SweepState:
        return results.state_of(self.path)

    @property
    def trials(self) -> list[dict]:
        """Every trial's leaderboard row, best first."""
        return leaderboard.ranked(leaderboard.read(self.path), self.objective, self.mode)

    @property
    def best(self) -> dict | None:
        """The best trial's row; None while no trial has reported."""
        return next(iter(leaderboard.scored(self.trials, self.objective)), None)

    def leaderboard(self):
        """The trials as a pandas DataFrame with leaderboard.csv's columns, best first."""
        import pandas as pd

        rows = self.trials
        return pd.DataFrame(rows, columns=leaderboard.all_columns(rows, self.objective))

    def curves(self):
        """Every epoch every trial reported, as a pandas DataFrame: trial_id, epoch, then each metric
        (loss, val_loss, the objective, the learning rate ...). A trial that resumed after a failure
        repeats epochs: the last report of an epoch is the one kept."""
        import pandas as pd

        records = {}
        for row in self.trials:
            for result in results.read_results(results.trial_folder(self.path, row["trial_id"])):
                if isinstance(result.get("epoch"), int):
                    numbers = {k: v for k, v in result.items()
                               if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch"}
                    records[row["trial_id"], result["epoch"]] = numbers
        frame = pd.DataFrame([{"trial_id": t, "epoch": e, **m} for (t, e), m in records.items()])
        return frame.sort_values(["trial_id", "epoch"], ignore_index=True) if len(frame) else frame

    def export(self, out: str | Path, *, top: int = 1, trial: str | None = None, int8: bool = False,
               int8_max_drop: float | None = None, force: bool = False, mlflow: str | None = None,
               max_latency_ms: float | None = None, max_tflite_ms: float | None = None,
               max_size_mb: float | None = None, max_params: float | None = None, console=None):
        """Export the best trial (or `trial`, or an ensemble of the `top` best; with `max_*`, the best
        within those bounds) as a bundle, checked against the leaderboard as `sweeper export` checks
        it; returns the loaded `Bundle`."""
        from .bundle import load_bundle
        from .export import ExportOptions, export_bundle, limits_of

        options = ExportOptions(trial=trial, top=top, int8=int8, int8_max_drop=int8_max_drop, force=force, mlflow=mlflow,
                                limits=limits_of(max_latency_ms=max_latency_ms, max_tflite_ms=max_tflite_ms,
                                                 max_size_mb=max_size_mb, max_params=max_params))
        folder = export_bundle(self.path, Path(out), options, console)
        return load_bundle(folder)

    def report(self) -> Path:
        """Write the report (charts and report.html in `<sweep>/report/`); returns the page's path."""
        from .report import write_report

        return write_report(self.path)

    def resume(self, trials: int | None = None, *, address: str | None = None, console=None) -> Sweep:
        """Continue an interrupted sweep where it stopped, or a finished one to `trials` in all, as
        `sweeper resume [--trials N]` does."""
        from .driver import resume_sweep

        resume_sweep(self.path, address=address, trials=trials, console=console)
        return Sweep(self.path)
