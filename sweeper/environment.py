"""The environment variables sweeper sets, in one place: for the driver's Ray and Tune, and for a
worker's TensorFlow. Each is set only when a sweep starts (never at import), and never over a
value the user set.
"""

from __future__ import annotations

import os

DRIVER = {
    "RAY_AIR_NEW_OUTPUT": "0",  # Tune's own progress output off: the live view shows the sweep
    # Save the experiment's state at least every second (Tune's default is every 10 s or more), so a
    # killed driver loses at most the trials started in the last second; the warning that saves come
    # often is moot here: trials' checkpoints force a save too.
    "TUNE_GLOBAL_CHECKPOINT_S": "1",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}

WORKER = {  # read by TensorFlow as it is imported
    "TF_CPP_MIN_LOG_LEVEL": "2",
    # TensorFlow leaves oneDNN's kernels off on CPUs without AVX-512. On the 2-core AVX2 machine
    # sweeper is developed on, they cut MobileNetV2-0.35's forward pass over 256 images at 160 px
    # on one thread from 2.8-4.2 s to 1.6 s.
    "TF_ENABLE_ONEDNN_OPTS": "1",
}

COLD_WORKER = "SWEEPER_COLD_WORKER"  # set (through Ray's runtime_env) on workers that never train
# Read by the driver, which hands it to every trial: the bytes of inputs a trial may hold in memory
# ("0" streams every trial's inputs from the cache's files; unset, `training.memory_budget` decides).
MEMORY_BUDGET = "SWEEPER_MEMORY_BUDGET"


def set_defaults(variables: dict[str, str]) -> None:
    """Set each variable the user has not set."""
    for name, value in variables.items():
        os.environ.setdefault(name, value)
