"""Each private API sweeper leans on (sweeper/private_apis.py), checked against the installed
versions: an upgrade that moves one fails here, by name, not inside a sweep."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from sweeper import private_apis


def test_tune_takes_a_resume_config_through_tuner_kwargs():
    from ray import tune
    from ray.tune.tuner import Tuner

    assert "_tuner_kwargs" in inspect.signature(Tuner.__init__).parameters
    assert "resume_config" in inspect.signature(__import__("ray.tune.impl.tuner_internal", fromlist=["x"])
                                                .TunerInternal.__init__).parameters
    assert isinstance(tune.ResumeConfig(), tune.ResumeConfig)


@pytest.mark.ray
def test_tune_trials_expose_storage_staging_folder_and_latest_checkpoint(tmp_path, ray_session):
    from ray.train._internal.storage import StorageContext
    from ray.tune.experiment import Trial

    trial = Trial("run_trial", stub=True, storage=StorageContext(str(tmp_path), "experiment", trial_dir_name="trial_a"),
                  trial_id="a")
    fs, folder = private_apis.trial_storage(trial)
    assert folder == str(tmp_path / "experiment" / "trial_a") and fs.get_file_info(str(tmp_path)).is_file is False
    assert private_apis.trial_staging_folder(trial).endswith("trial_a")
    assert private_apis.trial_checkpoint_name(trial) is None  # no checkpoint reported yet


def test_a_pending_tune_trial_s_resources_can_be_read_and_changed(tmp_path):
    from ray import tune
    from ray.train._internal.storage import StorageContext
    from ray.tune.execution.placement_groups import PlacementGroupFactory
    from ray.tune.experiment import Trial

    tune.register_trainable("resources_test", lambda config: None)
    trial = Trial("resources_test", storage=StorageContext(str(tmp_path), "experiment", trial_dir_name="trial_a"),
                  trial_id="a", placement_group_factory=PlacementGroupFactory([{"CPU": 1, "GPU": 0.5}]))
    trial.create_placement_group_factory()  # as Tune's controller does when it adds the trial
    assert private_apis.trial_resources(trial) == {"CPU": 1, "GPU": 0.5}
    private_apis.set_trial_resources(trial, {"CPU": 1, "GPU": 1})  # what a retry alone asks for (gpus.py)
    assert private_apis.trial_resources(trial) == {"CPU": 1, "GPU": 1}
    trial.set_status(Trial.RUNNING)
    with pytest.raises(ValueError, match="while Trial is running"):
        private_apis.set_trial_resources(trial, {"CPU": 1, "GPU": 0.5})


@pytest.mark.ray
def test_the_ray_node_names_its_session_and_logs(ray_session):
    node = private_apis.ray_node()
    assert node.session_name.startswith("session_") and node.get_logs_dir_path().endswith("logs")


def test_keras_history_seed_generators_and_the_gradient_registry():
    keras = pytest.importorskip("keras")
    inputs = keras.Input((4,))
    dropout = keras.layers.Dropout(0.5)
    outputs = keras.layers.Dense(2)(dropout(inputs))
    operation, node_index, tensor_index = private_apis.keras_history(outputs)
    assert isinstance(operation, keras.layers.Dense) and (node_index, tensor_index) == (0, 0)
    assert private_apis.inbound_node(inputs).is_input
    assert private_apis.operation_inputs(operation)[0] is private_apis.inbound_node(outputs).input_tensors[0]
    assert len(private_apis.seed_generators(dropout)) == 1
    assert isinstance(private_apis.tf_gradient_registry(), dict)


def test_the_pure_python_unpickler_has_an_opcode_table_with_reduce():
    import pickle

    assert pickle.REDUCE[0] in private_apis.PurePythonUnpickler.dispatch
    assert callable(private_apis.PurePythonUnpickler.load_reduce)
    assert np.array_equal(private_apis.PurePythonUnpickler(__import__("io").BytesIO(pickle.dumps(np.arange(3)))).load(),
                          np.arange(3))
