"""Every trial's curves and hyperparameters as TensorBoard event files, in `<sweep>/tensorboard/`.

`tensorboard --logdir results/<sweep>/tensorboard` then shows each metric per epoch for every
trial, and the HParams tab the table of trials by hyperparameter. The driver writes them, from the
results Tune hands it, so they land beside the sweep even when trials run on other nodes; it uses
TensorBoard's own writer and protos, with TensorBoard's stub of TensorFlow's file API.
"""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

from ray import tune

from .hyperparameters import CONFIG_KEYS


def epoch_curves(result: dict) -> dict[str, float]:
    """The numbers of a trial's epoch that are curves: the loss, the learning rate, every validation
    metric (val_*) and the training metric beside each (accuracy beside val_accuracy, f1, auc ...)."""
    return {key: float(value) for key, value in result.items() if is_number(value)
            and (key in ("loss", "lr") or key.startswith("val_") or f"val_{key}" in result)}


class TensorBoardLogs(tune.Callback):
    """One run per trial, `tensorboard/trial_<id>/`: its hyperparameters once, its metrics each epoch."""

    def __init__(self, folder: Path, replayed_key: str):
        self.folder, self.replayed_key = Path(folder), replayed_key
        self.writers: dict[str, object] = {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get(self.replayed_key) or not isinstance(result.get("epoch"), int):
            return  # a resumed sweep's repeat of a result already written
        from tensorboard.compat.proto import event_pb2, summary_pb2

        values = [summary_pb2.Summary.Value(tag=key, simple_value=value) for key, value in epoch_curves(result).items()]
        writer = self._writer(trial)
        writer.add_event(event_pb2.Event(wall_time=time.time(), step=result["epoch"],
                                         summary=summary_pb2.Summary(value=values)))
        writer.flush()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._close(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._close(trial)

    def on_experiment_end(self, trials, **info):
        for trial_id in list(self.writers):
            self.writers.pop(trial_id).close()

    def _writer(self, trial):
        if trial.trial_id not in self.writers:
            _without_tensorflow()
            from tensorboard.compat.proto import event_pb2
            from tensorboard.plugins.hparams import summary_v2
            from tensorboard.summary.writer.event_file_writer import EventFileWriter

            writer = EventFileWriter(str(self.folder / f"trial_{trial.trial_id}"))
            hparams = {k: v for k, v in trial.config.items() if k in CONFIG_KEYS and isinstance(v, (bool, int, float, str))}
            session = summary_v2.hparams_pb(hparams, trial_id=trial.trial_id, start_time_secs=time.time())
            writer.add_event(event_pb2.Event(wall_time=time.time(), summary=session))
            self.writers[trial.trial_id] = writer
        return self.writers[trial.trial_id]

    def _close(self, trial) -> None:
        writer = self.writers.pop(trial.trial_id, None)
        if writer is not None:
            writer.close()


def _without_tensorflow() -> None:
    """Have TensorBoard's writer use its own file API rather than TensorFlow's.

    Where TensorFlow is installed, the writer imports all of it for `tf.io.gfile` alone: seconds and
    hundreds of MB in the driver, and TensorFlow's C++ start-up lines on the sweep's terminal (seen
    in the middle of the live view). `tensorboard.compat.notf` is TensorBoard's own switch to its stub;
    a process that has TensorFlow already (a notebook) keeps it.
    """
    if "tensorflow" not in sys.modules:
        sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
