"""The named states: a trial's status on the leaderboard, and a sweep's state in `sweep.json`.

Both are str enums, so they are written to JSON and compared with what was read back from it as
the plain words they are ("completed", "interrupted"), in files older sweeps wrote too.
"""

from __future__ import annotations

from enum import Enum


class _Word(str, Enum):
    """A member is its word: printed, formatted, hashed and compared as the string."""

    __str__ = str.__str__
    __format__ = str.__format__
    __hash__ = str.__hash__


class TrialStatus(_Word):
    RUNNING = "running"
    COMPLETED = "completed"  # trained for budget.max_epochs
    STOPPED = "stopped"  # ASHA stopped it at a rung
    DIVERGED = "diverged"  # its loss became NaN or infinite
    ERROR = "error"  # it raised
    INFEASIBLE = "infeasible"  # its architecture breaks one of the spec's constraints: it never trained


FINISHED = (TrialStatus.COMPLETED, TrialStatus.STOPPED)  # ended with a value that is final
FAILED = (TrialStatus.DIVERGED, TrialStatus.ERROR)
ENDED = (*FINISHED, *FAILED, TrialStatus.INFEASIBLE)  # will not run again
ORDER = (TrialStatus.COMPLETED, TrialStatus.STOPPED, TrialStatus.RUNNING, TrialStatus.DIVERGED, TrialStatus.ERROR,
         TrialStatus.INFEASIBLE)


class SweepState(_Word):
    RUNNING = "running"  # a driver works on it (or was killed: `results.state_of` tells)
    FINISHED = "finished"
    INTERRUPTED = "interrupted"  # `sweeper resume` continues it
    UNKNOWN = "unknown"  # no record of its state
