"""Every use of a dependency's private (or developer-only) API, in one place.

sweeper needs a few things its dependencies do not publish. Each is wrapped here, with why and
the versions it was checked on, so that an upgrade that moves one fails in
`tests/test_private_apis.py`, loudly and by name, rather than somewhere inside a sweep.

Checked on: ray 2.60, keras 3.15, tensorflow 2.21, Python 3.11's pickle.
"""

from __future__ import annotations

import pickle

# --- Ray ------------------------------------------------------------------------------------------


def make_tuner(trainable, *, resume: bool, **kwargs):
    """`tune.Tuner(trainable, **kwargs)`, continuing the experiment's saved state when `resume`.

    `Tuner.restore` passes its resume config through the private `_tuner_kwargs`; sweeper builds a
    resumed Tuner afresh (its callbacks must talk to this driver, not the killed one), so it
    passes it the same way."""
    from ray import tune

    return tune.Tuner(trainable, _tuner_kwargs={"resume_config": tune.ResumeConfig()} if resume else None, **kwargs)


def ray_node():
    """This process's Ray node (`ray._private.worker._global_node`), or None: no public API gives
    its session name (recorded so a resume can end a killed driver's Ray) or its logs folder."""
    import ray

    return getattr(ray._private.worker, "_global_node", None)


def trial_storage(trial) -> tuple[object, str]:
    """A Tune trial's (pyarrow filesystem, folder path) in the experiment's storage (DeveloperAPI)."""
    return trial.storage.storage_filesystem, trial.storage.trial_fs_path


def trial_staging_folder(trial) -> str:
    """The driver-side staging folder Tune writes a trial's logs to before uploading (DeveloperAPI)."""
    return trial.local_path


def trial_checkpoint_name(trial) -> str | None:
    """The folder name of the checkpoint Tune holds as a trial's latest, or None (DeveloperAPI)."""
    return trial.checkpoint.path.rstrip("/").rsplit("/", 1)[-1] if trial.checkpoint else None


def trial_resources(trial) -> dict[str, float]:
    """The resources a Tune trial asks for, {"CPU": .., "GPU": ..} (DeveloperAPI)."""
    return dict(trial.placement_group_factory.required_resources)


def set_trial_resources(trial, resources: dict[str, float]) -> None:
    """Change what a pending Tune trial asks for when it next starts: `Trial.update_resources`,
    marked EXPERIMENTAL (ResourceChangingScheduler's own way); kept in Tune's saved state."""
    trial.update_resources(resources)


# --- Keras and TensorFlow -------------------------------------------------------------------------


def keras_history(tensor) -> tuple[object, int, int]:
    """(operation, node index, tensor index) that produced a symbolic Keras tensor: the graph
    walk that finds a model's frozen frontier (feature_cache.py) has no public API."""
    return tensor._keras_history


def inbound_node(tensor):
    """The graph node that produced a symbolic Keras tensor."""
    operation, node_index, _ = keras_history(tensor)
    return operation._inbound_nodes[node_index]


def operation_inputs(operation) -> list:
    """The tensors an operation of a functional model reads (at its first call): where a block
    of a backbone begins is read off the graph (model.set_trainable_blocks)."""
    return operation._inbound_nodes[0].input_tensors


def seed_generators(layer) -> list:
    """A layer's random seed generators (Dropout, augmentation): reseeded when a warm model is
    reused for another trial, so that trial trains as a fresh model would."""
    return getattr(layer, "_seed_generators", [])


def tf_gradient_registry() -> dict:
    """TensorFlow's global registry of gradient functions.

    Tracing a Keras training step registers custom gradients there, and their graphs stay in
    memory for good (about 4-8 MB per model trained): the reason a worker that builds model
    after model grows. A dropped model's registrations are removed, which keeps it flat.
    """
    from tensorflow.python.framework import ops

    return ops._gradient_registry._registry


# --- the standard library -------------------------------------------------------------------------

# The pure-Python unpickler: unlike the C one, its opcode table can be changed, which is how
# saved_state.py checks every call a pickle makes.
PurePythonUnpickler = pickle._Unpickler
