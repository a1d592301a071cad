"""What lets a sweep continue after its driver was killed.

Ray Tune saves the trials and the searcher (with Optuna's whole history) in the experiment
folder, but not the scheduler: a resumed ASHA would start with empty rungs and judge the
remaining trials against nothing. `ResumableASHA` reads its rungs back from the trials'
results. `check_experiment_state` refuses a damaged saved state, which Tune would otherwise
answer by silently starting the experiment over.
"""

from __future__ import annotations

import json
from fnmatch import fnmatch

from ray.tune.schedulers import ASHAScheduler

from .errors import SweeperError
from .results import filesystem, read_results


class ResumableASHA(ASHAScheduler):
    """ASHA whose rungs survive a resume: a restored trial's past results are recorded again."""

    def on_trial_add(self, tune_controller, trial):
        super().on_trial_add(tune_controller, trial)
        if trial.last_result.get(self._time_attr):  # a trial restored from a saved experiment
            storage = trial.storage
            for result in read_results(storage.trial_fs_path, storage.storage_filesystem):
                # Decisions were taken when these results first came; only the rungs' records matter.
                super().on_trial_result(tune_controller, trial, result)


def check_experiment_state(experiment: str) -> None:
    """A one-line error if Tune's newest saved experiment state cannot be read."""
    import pyarrow.fs

    fs, path = filesystem(experiment)
    found = fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
    states = sorted(info.path for info in found if fnmatch(info.base_name, "experiment_state-*.json"))
    if not states:
        return  # killed before Tune saved anything: the sweep starts from its beginning
    try:
        with fs.open_input_stream(states[-1]) as stream:
            json.loads(stream.readall())
    except (OSError, ValueError) as exc:
        raise SweeperError(f"{states[-1]}: the saved state of the sweep cannot be read ({exc}); "
                           "it cannot be resumed, run the spec again with another --name") from None


def delete_trial_folder(experiment: str, trial_id: str) -> None:
    fs, path = filesystem(experiment)
    try:
        fs.delete_dir(f"{path}/trial_{trial_id}")
    except (FileNotFoundError, OSError):
        pass
