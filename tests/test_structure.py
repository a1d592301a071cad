"""The package's shape: no import cycle (lazy imports included), and the hyperparameter vocabulary
readable without Optuna or Keras."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sweeper"


def _imports() -> dict[str, set[str]]:
    """sweeper's modules and the sweeper modules each imports, at the top or inside a function."""
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    graph = {}
    for path in PACKAGE.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found |= {node.module.split(".")[0]} if node.module else {alias.name for alias in node.names}
        graph[path.stem] = found & modules
    return graph


def test_no_import_cycle_in_the_package():
    graph = _imports()
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(graph[module]):
            assert state.get(imported) != "open", " -> ".join(path + [imported])
            if imported not in state:
                visit(imported, path + [imported])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_the_vocabulary_and_the_leaderboard_import_neither_optuna_nor_keras():
    code = ("import sys, sweeper.hyperparameters, sweeper.space, sweeper.leaderboard; "
            "print(sorted(m for m in ('optuna', 'keras', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_sweeps_saved_before_space_py_still_unpickle_their_space():
    """Ray pickled the parameter types as `sweeper.spec.Fixed` and so on; `spec` re-exports them."""
    import pickle

    from sweeper.space import Choice, Fixed
    from sweeper.spec import Space

    old = b"\x80\x04csweeper.spec\nFixed\n)\x81}\x94\x8c\x05value\x94K\x03sb."  # Fixed(3), as the old module
    assert pickle.loads(old) == Fixed(3)
    space = Space(optimizer=Choice(("adam", "sgd")))
    assert pickle.loads(pickle.dumps(space)) == space


def test_the_space_and_the_trial_configuration_hold_exactly_the_vocabulary_with_its_defaults():
    """The two typed records of a configuration cannot drift from `hyperparameters`: a hyperparameter
    added there and not here (or the reverse) fails this test."""
    from dataclasses import fields

    from sweeper.hyperparameters import CONFIG_KEYS, DEFAULTS, FULL
    from sweeper.model import TrialConfig
    from sweeper.space import Fixed, Space

    assert tuple(f.name for f in fields(TrialConfig)) == CONFIG_KEYS
    assert tuple(f.name for f in fields(Space)) == CONFIG_KEYS
    defaults = {f.name: f.default for f in fields(TrialConfig) if f.name != "backbone"}  # backbone is required
    assert defaults == {k: v for k, v in DEFAULTS.items() if k != "backbone"}
    space = Space()
    assert space.cut_for("any") == Fixed(FULL)
    assert {k: getattr(space, k) for k in CONFIG_KEYS if k != "cut"} == {k: Fixed(v) for k, v in DEFAULTS.items() if k != "cut"}


def test_an_older_sweep_s_space_unpickles_with_the_newer_hyperparameters_at_their_defaults():
    """A Space pickled before schedule, warmup_epochs, weight_decay and label_smoothing existed (its
    state lacks them) reads them as their defaults, so DefineByRun gives its trials the old behaviour."""
    import copyreg
    import pickle

    from sweeper.search_space import DefineByRun
    from sweeper.space import Choice, Fixed, Space

    space = Space(backbone=Fixed("simple_cnn"), optimizer=Choice(("adam", "sgd")))
    state = {k: v for k, v in vars(space).items() if k not in ("schedule", "warmup_epochs", "weight_decay", "label_smoothing")}
    old = copyreg._reconstructor, (Space, object, None), state
    loaded = pickle.loads(pickle.dumps(_Reduced(old)))
    assert "weight_decay" not in vars(loaded) and loaded.weight_decay == Fixed(0.0) and loaded.schedule == Fixed("constant")

    class FixedTrial:  # only fixed values and one choice: answer the choice
        def suggest_categorical(self, name, options):
            return options[0]

    config = DefineByRun(loaded)(FixedTrial())
    assert config["schedule"] == "constant" and config["warmup_epochs"] == 0
    assert config["weight_decay"] == 0.0 and config["label_smoothing"] == 0.0


class _Reduced:
    """Pickles as the given reduce tuple: how an object of an older class version was written."""

    def __init__(self, reduced):
        self.reduced = reduced

    def __reduce__(self):
        return self.reduced


def test_importing_sweeper_changes_no_environment_variable_pil_setting_or_log_level():
    """Global state is set where a sweep runs (environment.set_defaults, quiet_optuna), never at import."""
    code = (
        "import os, logging, pkgutil, importlib, json\n"
        "from PIL import Image\n"
        "import ray, tensorflow, keras, optuna, matplotlib, pyarrow  # they set variables of their own\n"
        "before = (dict(os.environ), Image.MAX_IMAGE_PIXELS)\n"
        "import sweeper\n"
        "for m in pkgutil.iter_modules(sweeper.__path__):\n"
        "    if m.name != '__main__':\n"
        "        importlib.import_module('sweeper.' + m.name)\n"
        "after = (dict(os.environ), Image.MAX_IMAGE_PIXELS)\n"
        "changed = sorted(k for k in set(before[0]) | set(after[0]) if before[0].get(k) != after[0].get(k))\n"
        "print(json.dumps([changed, before[1] == after[1], optuna.logging.get_verbosity()]))\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("TF_", "RAY_", "TUNE_"))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    import json

    import optuna

    changed, pil_same, verbosity = json.loads(out.strip().splitlines()[-1])
    assert changed == [] and pil_same and verbosity == optuna.logging.INFO


def test_the_driver_writes_tensorboard_files_without_importing_tensorflow(tmp_path):
    """TensorBoard's writer would import TensorFlow for its file API, and TensorFlow's start-up lines
    then cut into the live view."""
    code = f"""
import sys
from types import SimpleNamespace
from sweeper.tensorboard_logs import TensorBoardLogs
logs = TensorBoardLogs({str(tmp_path)!r}, replayed_key="replayed")
trial = SimpleNamespace(trial_id="a1", config={{"learning_rate": 0.01, "backbone": "simple_cnn"}})
logs.on_trial_result(0, [], trial, {{"epoch": 1, "val_accuracy": 0.5, "loss": 1.25}})
logs.on_experiment_end([])
print("tensorflow" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False" and "oneDNN" not in done.stderr

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "trial_a1"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("val_accuracy")] == [(1, 0.5)]
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 1.25)]
