"""Tier 1 tests for the spec file (sweeper/spec.py): defaults, parsing of the search space, errors.

No Ray, no TensorFlow: the spec only needs YAML and folders that exist.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sweeper import SpecError, SweeperError, load_spec
from sweeper.spec import (
    Budget,
    Choice,
    DataSpec,
    Fixed,
    Range,
    Space,
    absolute_sqlite,
    decode_units,
    encode_units,
    parse_spec,
    values_of,
)

ROOT = Path(__file__).resolve().parents[1]

MINIMAL = {"data": {"train": "data"}, "space": {"backbone": "mobilenet_v2_0.35"}}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder with a tiny folder-per-class data set; spec files are written next to it."""
    for name in ("cats/a.png", "dogs/b.png", "val/cats/c.png", "val/dogs/d.png"):
        path = tmp_path / "data" / name if not name.startswith("val/") else tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    return tmp_path


def write(folder: Path, spec, name: str = "spec.yaml") -> Path:
    """Write a spec (a dict, dumped as YAML, or raw YAML text) and return its path."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec, sort_keys=False))
    return path


def load(folder: Path, spec, name: str = "spec.yaml", overrides=None):
    return load_spec(write(folder, spec, name), overrides)


def with_(changes: dict | None = None, drop: tuple[str, ...] = (), base: dict = MINIMAL) -> dict:
    """A copy of `base` with dotted keys set ("space.head.units": [...]) or dropped."""
    spec = copy.deepcopy(base)
    for dotted, value in (changes or {}).items():
        *parents, last = dotted.split(".")
        node = spec
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    for dotted in drop:
        *parents, last = dotted.split(".")
        node = spec
        for part in parents:
            node = node[part]
        del node[last]
    return spec


# --- a valid spec: defaults ------------------------------------------------------------------


def test_minimal_spec_fills_every_default(project):
    spec = load(project, MINIMAL, name="cats-vs-dogs.yaml")

    assert spec.name == "cats-vs-dogs"  # the spec file's stem
    assert spec.path == (project / "cats-vs-dogs.yaml").resolve()
    assert spec.task == "classification"
    assert spec.objective == "val_accuracy"
    assert spec.mode == "max"
    assert spec.weights == "imagenet"
    assert spec.weights_dir is None

    assert spec.budget == Budget()
    b = spec.budget
    assert (b.trials, b.max_epochs, b.grace_epochs, b.reduction_factor, b.concurrent_trials, b.seed) == (
        20,
        10,
        3,
        4,
        2,
        0,
    )
    assert (b.cpus_per_trial, b.gpus_per_trial, b.time_limit, b.stop_at, b.max_failures) == (1, 0, None, None, 1)

    assert spec.data == DataSpec(train=(project / "data").resolve())
    assert spec.data.validation is None and spec.data.test is None
    assert spec.data.validation_split == 0.2
    assert spec.data.test_split == 0.0
    assert spec.data.on_bad_image == "skip"

    space = spec.space
    assert space.backbone == Fixed("mobilenet_v2_0.35")
    assert space.cut == {}
    assert space.cut_for("mobilenet_v2_0.35") == Fixed("full")
    assert space.unfreeze == Fixed(0)
    assert space.head_pooling == Fixed("avg")
    assert space.head_units == Fixed(())
    assert space.head_dropout == Fixed(0.2)
    assert space.optimizer == Fixed("adam")
    assert space.learning_rate == Fixed(1e-3)
    assert space.batch_size == Fixed(32)
    assert space.augment == Fixed(False)
    assert space.image_size == Fixed(160)


def test_default_backbone_when_space_is_empty(project):
    spec = load(project, with_({"space": {}}))
    assert spec.space.backbone == Space().backbone
    assert spec.space == Space()


@pytest.mark.parametrize(
    "task, objective, expected_objective, mode",
    [
        ("classification", None, "val_accuracy", "max"),
        ("classification", "val_loss", "val_loss", "min"),
        ("regression", None, "val_rmse", "min"),
        ("regression", "val_mae", "val_mae", "min"),
        ("regression", "val_loss", "val_loss", "min"),
    ],
    ids=["cls-default", "cls-val_loss", "reg-default", "reg-val_mae", "reg-val_loss"],
)
def test_objective_default_and_mode_follow_the_task(project, task, objective, expected_objective, mode):
    changes = {"task": task}
    if objective:
        changes["objective"] = objective
    spec = load(project, with_(changes))
    assert spec.task == task
    assert spec.objective == expected_objective
    assert spec.mode == mode


def test_relative_paths_resolve_against_the_spec_folder_not_the_cwd(project, tmp_path_factory, monkeypatch):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.chdir(elsewhere)
    spec_path = write(
        project / "specs" / "nested",
        with_({"data": {"train": "../../data", "validation": "../../val", "test": str(project / "val")}}),
    )
    spec = load_spec(spec_path)
    assert spec.data.train == (project / "data").resolve()
    assert spec.data.validation == (project / "val").resolve()
    assert spec.data.test == (project / "val").resolve()  # absolute paths are kept
    assert spec.path == spec_path.resolve()
    assert spec.name == "spec"


def test_tracking_names_an_mlflow_store_whose_relative_file_is_the_spec_s(project, monkeypatch):
    assert load(project, MINIMAL).tracking.mlflow is None
    spec = load(project, with_({"tracking": {"mlflow": "sqlite:///runs/mlflow.db"}}))
    assert spec.tracking.mlflow == f"sqlite:///{project.resolve() / 'runs' / 'mlflow.db'}"  # four slashes: absolute
    for uri in ("sqlite:////srv/mlflow.db", "http://127.0.0.1:5000", "databricks"):
        assert load(project, with_({"tracking": {"mlflow": uri}})).tracking.mlflow == uri
    path = write(project, with_({"tracking": {"mlflow": ""}}))
    with pytest.raises(SpecError, match=f"^{path}: tracking.mlflow: must be an MLflow tracking URI"):
        load_spec(path)
    with pytest.raises(SpecError, match="tracking.wandb: unknown key; allowed: mlflow"):
        load(project, with_({"tracking": {"wandb": "x"}}))
    for wrong in ("sqlite:///mlflow.db", "", []):
        with pytest.raises(SpecError, match="tracking: must be a mapping"):
            load(project, with_({"tracking": wrong}))
    assert load(project, with_({"tracking": None})).tracking.mlflow is None  # `tracking:` with nothing under it
    # Without MLflow installed, asking for it is one line saying what to install.
    from sweeper import mlflow_runs

    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(SweeperError, match=r"^tracking.mlflow needs MLflow: pip install 'sweeper-tune\[mlflow\]'$"):
        mlflow_runs.client("sqlite:///x.db")
    # On the command line (`--mlflow`), a relative store is the working directory's.
    assert absolute_sqlite("sqlite:///m.db", Path.cwd()) == f"sqlite:///{Path.cwd().resolve() / 'm.db'}"


def test_load_spec_accepts_a_str_path(project):
    spec = load_spec(str(write(project, MINIMAL, "as-str.yaml")))
    assert spec.name == "as-str"


def test_explicit_name_wins_over_the_file_stem(project):
    assert load(project, with_({"name": "my_sweep.v2"}), name="other.yaml").name == "my_sweep.v2"


def test_data_section_values_are_kept(project):
    spec = load(
        project,
        with_({"data": {"train": "data", "validation_split": 0.3, "test_split": 0.1, "on_bad_image": "error"}}),
    )
    assert spec.data == DataSpec(
        train=(project / "data").resolve(), validation_split=0.3, test_split=0.1, on_bad_image="error"
    )


def test_validation_folder_allows_a_zero_validation_split(project):
    spec = load(project, with_({"data": {"train": "data", "validation": "val", "validation_split": 0}}))
    assert spec.data.validation == (project / "val").resolve()
    assert spec.data.validation_split == 0


# --- a valid spec: the search space ---------------------------------------------------------


DESIGN_EXAMPLE = """\
name: cats-vs-dogs
task: classification
data:
  train: data
  validation: val
  validation_split: 0.2
  test: null
  test_split: 0.0
  on_bad_image: skip
image_size: 160
weights: imagenet
objective: val_accuracy
budget:
  trials: 24
  max_epochs: 10
  grace_epochs: 1
  reduction_factor: 3
  concurrent_trials: 2
  cpus_per_trial: 1
  gpus_per_trial: 0.5
  time_limit: 2h
  stop_at: 0.99
  max_failures: 1
  seed: 0
space:
  backbone: [mobilenet_v2_0.35, mobilenet_0.25, inception_v3, resnet50]
  cut:
    inception_v3: [full, mixed7]
    resnet50: [full, conv4_block6_out]
    default: [full]
  unfreeze: [0, 20]
  head:
    pooling: [avg, flatten]
    units: [[], [32], [256], [1024]]
    dropout: {low: 0.0, high: 0.5}
  optimizer: [rmsprop, adam, sgd, adagrad]
  learning_rate: {low: 1.0e-5, high: 1.0e-2, log: true}
  batch_size: [16, 32, 64]
  augment: [false, true]
"""


def test_the_design_documents_example_spec(project):
    spec = load(project, DESIGN_EXAMPLE)
    assert spec.name == "cats-vs-dogs"
    assert spec.data.validation == (project / "val").resolve()
    assert spec.budget.time_limit == 7200.0
    assert spec.budget.gpus_per_trial == 0.5
    assert spec.budget.stop_at == 0.99

    s = spec.space
    assert s.backbone == Choice(("mobilenet_v2_0.35", "mobilenet_0.25", "inception_v3", "resnet50"))
    assert s.cut_for("inception_v3") == Choice(("full", "mixed7"))
    assert s.cut_for("resnet50") == Choice(("full", "conv4_block6_out"))
    assert s.cut_for("mobilenet_v2_0.35") == Fixed("full")
    assert s.cut_for("mobilenet_0.25") == Fixed("full")
    assert s.unfreeze == Choice((0, 20))
    assert s.head_pooling == Choice(("avg", "flatten"))
    assert s.head_units == Choice(((), (32,), (256,), (1024,)))
    assert s.head_dropout == Range(0.0, 0.5, log=False, integer=False)
    assert s.optimizer == Choice(("rmsprop", "adam", "sgd", "adagrad"))
    assert s.learning_rate == Range(1e-5, 1e-2, log=True, integer=False)
    assert s.batch_size == Choice((16, 32, 64))
    assert s.augment == Choice((False, True))
    assert s.image_size == Fixed(160)


@pytest.mark.parametrize(
    "key, value, attribute, expected",
    [
        ("optimizer", "sgd", "optimizer", Fixed("sgd")),
        ("optimizer", ["sgd"], "optimizer", Fixed("sgd")),  # a one-element list is fixed
        ("optimizer", ["adam", "sgd", "adam"], "optimizer", Choice(("adam", "sgd"))),  # duplicates dropped
        ("learning_rate", 0.01, "learning_rate", Fixed(0.01)),
        ("learning_rate", [0.01, 0.001], "learning_rate", Choice((0.01, 0.001))),
        ("learning_rate", {"low": 1.0e-4, "high": 0.1, "log": True}, "learning_rate", Range(1e-4, 0.1, log=True)),
        ("head.dropout", {"low": 0, "high": 0.5}, "head_dropout", Range(0.0, 0.5)),
        ("head.dropout", {"low": 0.1, "high": 0.5, "step": 0.1}, "head_dropout", Range(0.1, 0.5, step=0.1)),
        ("unfreeze", {"low": 0, "high": 40}, "unfreeze", Range(0, 40, integer=True)),
        ("unfreeze", {"low": 1, "high": 64, "log": True}, "unfreeze", Range(1, 64, log=True, integer=True)),
        ("batch_size", {"low": 16, "high": 128, "step": 16}, "batch_size", Range(16, 128, step=16, integer=True)),
        ("image_size", {"low": 96, "high": 224}, "image_size", Range(96, 224, integer=True)),
        ("image_size", [96, 128], "image_size", Choice((96, 128))),
        ("augment", True, "augment", Fixed(True)),
        ("augment", [True, False], "augment", Choice((True, False))),
        ("head.pooling", "flatten", "head_pooling", Fixed("flatten")),
        ("head.units", [256, 32], "head_units", Fixed((256, 32))),
        ("head.units", 64, "head_units", Fixed((64,))),
        ("head.units", [], "head_units", Fixed(())),
        ("head.units", [[64]], "head_units", Fixed((64,))),
        ("head.units", [[], [256, 32], [32]], "head_units", Choice(((), (256, 32), (32,)))),
        ("backbone", ["resnet50", "vgg16"], "backbone", Choice(("resnet50", "vgg16"))),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_scalar_is_fixed_list_is_choice_mapping_is_range(project, key, value, attribute, expected):
    spec = load(project, with_({f"space.{key}": value}))
    assert getattr(spec.space, attribute) == expected


def test_range_flags(project):
    spec = load(
        project,
        with_(
            {
                "space.learning_rate": {"low": 1.0e-5, "high": 1.0e-2, "log": True},
                "space.unfreeze": {"low": 0, "high": 20},
                "space.batch_size": {"low": 8, "high": 64},
                "space.image_size": {"low": 96, "high": 224},
                "space.head.dropout": {"low": 0.0, "high": 0.5},
            }
        ),
    )
    s = spec.space
    assert s.learning_rate.log is True and s.learning_rate.integer is False
    assert s.head_dropout.log is False and s.head_dropout.integer is False
    for param in (s.unfreeze, s.batch_size, s.image_size):
        assert isinstance(param, Range)
        assert param.integer is True
        assert param.log is False
        assert isinstance(param.low, int) and isinstance(param.high, int)


def test_cut_default_applies_to_backbones_without_their_own_key(project):
    spec = load(
        project,
        with_(
            {
                "space.backbone": ["inception_v3", "resnet50"],
                "space.cut": {"inception_v3": ["full", "mixed7"], "default": "full"},
            }
        ),
    )
    assert spec.space.cut_for("inception_v3") == Choice(("full", "mixed7"))
    assert spec.space.cut_for("resnet50") == Fixed("full")
    assert set(spec.space.cut) == {"inception_v3", "resnet50"}


def test_cut_as_a_plain_list_applies_to_every_backbone(project):
    spec = load(project, with_({"space.backbone": ["mobilenet_0.25", "mobilenet_0.5"], "space.cut": ["full", "conv_pw_11_relu"]}))
    for name in ("mobilenet_0.25", "mobilenet_0.5"):
        assert spec.space.cut_for(name) == Choice(("full", "conv_pw_11_relu"))


def test_top_level_image_size_is_the_default_for_the_space(project):
    assert load(project, with_({"image_size": 96})).space.image_size == Fixed(96)
    # a searched image_size in `space` wins over the top-level one
    spec = load(project, with_({"image_size": 96, "space.image_size": [128, 160]}))
    assert spec.space.image_size == Choice((128, 160))


def test_image_size_at_a_backbones_minimum_is_allowed(project):
    spec = load(project, with_({"space.backbone": "inception_v3", "space.image_size": 75}))
    assert spec.space.image_size == Fixed(75)


@pytest.mark.parametrize(
    "value, seconds",
    [("2h", 7200.0), ("30m", 1800.0), ("90s", 90.0), ("1.5h", 5400.0), ("1d", 86400.0), (45, 45.0), (2.5, 2.5)],
    ids=["2h", "30m", "90s", "1.5h", "1d", "int-seconds", "float-seconds"],
)
def test_time_limit_is_parsed_to_seconds(project, value, seconds):
    spec = load(project, with_({"budget.time_limit": value}))
    assert spec.budget.time_limit == seconds
    assert isinstance(spec.budget.time_limit, float)


def test_budget_values_are_kept(project):
    budget = {
        "trials": 7,
        "max_epochs": 4,
        "grace_epochs": 2,
        "reduction_factor": 2,
        "concurrent_trials": 1,
        "cpus_per_trial": 2,
        "gpus_per_trial": 0.25,
        "stop_at": 0.9,
        "max_failures": 0,
        "seed": 42,
    }
    assert load(project, with_({"budget": budget})).budget == Budget(**budget)


def test_weights_none_and_weights_folder(project):
    assert load(project, with_({"weights": "none"})).weights == "none"
    (project / "my_weights").mkdir()
    spec = load(project, with_({"weights": "my_weights"}))
    assert spec.weights == "imagenet"
    assert spec.weights_dir == (project / "my_weights").resolve()


# --- overrides ---------------------------------------------------------------------------------


def test_grace_epochs_default_to_max_epochs_when_that_is_shorter(project):
    assert load(project, with_({"budget": {"max_epochs": 2}})).budget.grace_epochs == 2
    assert load(project, with_({"budget": {"max_epochs": 5}})).budget.grace_epochs == 3
    assert load_spec(write(project, with_()), {"budget.max_epochs": 1}).budget.grace_epochs == 1  # --max-epochs 1


def test_overrides_replace_top_level_and_budget_keys(project):
    path = write(project, with_({"budget": {"trials": 10, "max_epochs": 5}}))
    spec = load_spec(path, {"budget.trials": 3, "name": "x"})
    assert spec.name == "x"
    assert spec.budget.trials == 3
    assert spec.budget.max_epochs == 5  # the file's other budget keys stay
    assert spec.raw["budget"] == {"trials": 3, "max_epochs": 5}
    assert spec.raw["name"] == "x"


def test_none_overrides_are_ignored(project):
    path = write(project, with_({"budget": {"seed": 5}, "name": "from-file"}))
    spec = load_spec(path, {"budget.seed": None, "name": None})
    assert spec.budget.seed == 5
    assert spec.name == "from-file"


def test_overrides_create_a_missing_budget_section(project):
    spec = load(project, MINIMAL, overrides={"budget.max_epochs": 2, "budget.grace_epochs": 2})
    assert (spec.budget.max_epochs, spec.budget.grace_epochs) == (2, 2)


def test_overrides_are_validated_like_the_file(project):
    path = write(project, MINIMAL)
    with pytest.raises(SpecError, match=r"budget\.trials"):
        load_spec(path, {"budget.trials": 0})
    with pytest.raises(SpecError, match=r"budget\.bogus"):
        load_spec(path, {"budget.bogus": 1})


def test_parse_spec_takes_an_already_loaded_mapping(project):
    spec = parse_spec(dict(MINIMAL), project / "inline.yaml")
    assert spec.name == "inline"
    assert spec.data.train == (project / "data").resolve()


# --- small helpers -----------------------------------------------------------------------------


def test_values_of_and_units_labels():
    assert values_of(Fixed(3)) == (3,)
    assert values_of(Choice((1, 2))) == (1, 2)
    with pytest.raises(TypeError):
        values_of(Range(0.0, 1.0))
    for units in ((), (256,), (256, 32)):
        assert decode_units(encode_units(units)) == units
    assert encode_units(()) == "[]"


def test_shipped_quickstart_spec_loads(tmp_path):
    shutil.copy(ROOT / "search_spaces" / "quickstart.yaml", tmp_path / "quickstart.yaml")
    (tmp_path / "digits" / "0").mkdir(parents=True)
    spec = load_spec(tmp_path / "quickstart.yaml")
    assert spec.name == "quickstart"
    assert spec.space.backbone == Choice(("simple_cnn", "mobilenet_v2_0.35"))
    assert spec.space.image_size == Fixed(32)


def test_spec_data_and_images_modules_do_not_import_tensorflow():
    code = (
        "import sys, sweeper.spec, sweeper.data, sweeper.images, sweeper.backbones; "
        "bad = [m for m in ('tensorflow', 'keras', 'ray') if m in sys.modules]; "
        "sys.exit(str(bad) if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- bad specs ---------------------------------------------------------------------------------


INCEPTION = {"space.backbone": "inception_v3"}


def bad(changes=None, drop=(), *, key, says=(), id):
    return pytest.param(with_(changes, drop), key, tuple(says), id=id)


BAD_SPECS = [
    # unknown keys: the message lists the allowed ones
    bad({"epochs": 5}, key="epochs", says=["unknown key", "budget", "space", "image_size"], id="unknown-top-level-key"),
    bad({"budget.trails": 5}, key="budget.trails", says=["unknown key", "trials", "max_epochs"], id="unknown-budget-key"),
    bad({"space.lr": 0.1}, key="space.lr", says=["unknown key", "learning_rate"], id="unknown-space-key"),
    bad({"space.head.activation": "relu"}, key="space.head.activation", says=["pooling", "units", "dropout"], id="unknown-head-key"),
    bad({"data.labels": "x.csv"}, key="data.labels", says=["unknown key", "train", "validation_split"], id="unknown-data-key"),
    # required sections
    bad(drop=("data",), key="data", says=["required"], id="missing-data"),
    bad(drop=("space",), key="space", says=["required"], id="missing-space"),
    bad({"data": {"validation_split": 0.2}}, key="data.train", says=["required"], id="missing-data-train"),
    bad({"data": "data"}, key="data", says=["mapping"], id="data-not-a-mapping"),
    bad({"space": ["mobilenet_v2_0.35"]}, key="space", says=["mapping"], id="space-not-a-mapping"),
    bad({"space.head": ["avg"]}, key="space.head", says=["mapping"], id="head-not-a-mapping"),
    bad({"budget": 5}, key="budget", says=["mapping"], id="budget-not-a-mapping"),
    # names that do not exist
    bad(
        {"space.backbone": ["mobilenet_v2_0.35", "resnet51"]},
        key="space.backbone",
        says=["unknown backbone 'resnet51'", "did you mean resnet50", "`sweeper backbones` lists all"],
        id="unknown-backbone",
    ),
    bad(
        {**INCEPTION, "space.cut": {"inception_v3": ["full", "mixed99"]}},
        key="space.cut.inception_v3",
        says=["mixed99", "mixed7", "full"],
        id="cut-layer-not-in-backbone",
    ),
    bad(
        {"space.cut": {"default": ["full", "mixed7"]}},
        key="space.cut.default",
        says=["mixed7", "mobilenet_v2_0.35", "block_13_expand_relu", "out_relu"],
        id="default-cut-not-in-backbone",
    ),
    bad(
        {"space.cut": {"inceptionv3": ["full"]}},
        key="space.cut.inceptionv3",
        says=["not a backbone", "default", "inception_v3"],
        id="cut-keyed-by-non-backbone",
    ),
    bad({"space.cut": {"low": 1, "high": 2}}, key="space.cut.low", says=["not a backbone"], id="cut-as-a-range"),
    # wrong types and values
    bad({"space.learning_rate": "fast"}, key="space.learning_rate", says=["'fast'", "number"], id="learning-rate-not-a-number"),
    bad({"space.learning_rate": 20.0}, key="space.learning_rate", says=["20.0", "between"], id="learning-rate-too-high"),
    bad({"space.learning_rate": [0.01, True]}, key="space.learning_rate", says=["True", "number"], id="learning-rate-bool-in-choice"),
    bad({"space.batch_size": 0}, key="space.batch_size", says=["between 1 and 4096"], id="batch-size-zero"),
    bad({"space.batch_size": 32.5}, key="space.batch_size", says=["whole number"], id="batch-size-not-int"),
    bad({"space.unfreeze": -1}, key="space.unfreeze", says=["-1", "at least 0"], id="unfreeze-negative"),
    bad({"space.image_size": "large"}, key="space.image_size", says=["whole number"], id="image-size-not-int"),
    bad({"space.augment": "yes"}, key="space.augment", says=["'yes'", "true or false"], id="augment-string-yes"),
    bad({"space.augment": [False, 1]}, key="space.augment", says=["true or false"], id="augment-int-in-choice"),
    bad({"space.optimizer": ["adam", "nadam"]}, key="space.optimizer", says=["nadam", "rmsprop", "adam", "sgd", "adagrad"], id="optimizer-not-allowed"),
    bad({"space.head.pooling": "max"}, key="space.head.pooling", says=["'max'", "avg", "flatten"], id="pooling-not-allowed"),
    bad({"space.optimizer": []}, key="space.optimizer", says=["empty"], id="empty-choice-list"),
    bad({"space.head.units": [[32], [-1]]}, key="space.head.units", says=["-1", "positive"], id="units-negative"),
    bad({"space.head.units": [0]}, key="space.head.units", says=["positive"], id="units-zero"),
    bad({"space.head.units": [[], 32]}, key="space.head.units", says=["positive"], id="units-mixed-list"),
    bad({"space.head.units": ["wide"]}, key="space.head.units", says=["'wide'"], id="units-string"),
    bad({"space.head.dropout": 1.5}, key="space.head.dropout", says=["1.5"], id="dropout-too-high"),
    # ranges
    bad({"space.head.dropout": {"low": 0.5, "high": 0.1}}, key="space.head.dropout", says=["low", "below high"], id="range-low-above-high"),
    bad({"space.batch_size": {"low": 32, "high": 32}}, key="space.batch_size", says=["low", "below high"], id="range-low-equals-high"),
    bad({"space.head.dropout": {"low": 0.0, "high": 0.5, "log": True}}, key="space.head.dropout", says=["log", "low > 0"], id="log-range-low-zero"),
    bad({"space.unfreeze": {"low": 0, "high": 20, "log": True}}, key="space.unfreeze", says=["log", "low > 0"], id="log-range-int-low-zero"),
    bad({"space.learning_rate": {"low": -1.0e-3, "high": 1.0e-2, "log": True}}, key="space.learning_rate", says=["-0.001"], id="log-range-negative-low"),
    bad({"space.learning_rate": {"low": 1.0e-4, "high": 0.1, "log": "yes"}}, key="space.learning_rate.log", says=["true or false"], id="range-log-not-bool"),
    bad({"space.learning_rate": {"low": 1.0e-4, "high": 0.1, "scale": "log"}}, key="space.learning_rate.scale", says=["low", "high", "log", "step"], id="range-unknown-key"),
    bad({"space.learning_rate": {"low": 1.0e-4}}, key="space.learning_rate", says=["high"], id="range-missing-high"),
    bad({"space.unfreeze": {"low": 1, "high": 20, "log": True, "step": 1}}, key="space.unfreeze.step", says=["log"], id="range-step-with-log"),
    bad({"space.batch_size": {"low": 16, "high": 64, "step": 0}}, key="space.batch_size.step", says=["at least 1"], id="range-step-zero"),
    bad({"space.optimizer": {"low": 1, "high": 2}}, key="space.optimizer", says=["not a range"], id="range-for-a-choice-only-param"),
    bad({"space.backbone": {"low": 1, "high": 2}}, key="space.backbone", says=["not a range"], id="range-for-backbone"),
    # task and objective
    bad({"task": "detection"}, key="task", says=["'detection'", "classification", "regression"], id="task-not-allowed"),
    bad({"objective": "val_rmse"}, key="objective", says=["'val_rmse'", "classification", "val_accuracy", "val_loss"], id="objective-wrong-for-classification"),
    bad({"task": "regression", "objective": "val_accuracy"}, key="objective", says=["regression", "val_rmse", "val_mae"], id="objective-wrong-for-regression"),
    # image size vs backbone minimum
    bad({**INCEPTION, "space.image_size": 64}, key="space.image_size", says=["64", "inception_v3", "75"], id="image-size-below-backbone-minimum"),
    bad(
        {"space.backbone": ["mobilenet_v2_0.35", "inception_v3"], "space.image_size": [64, 160]},
        key="space.image_size",
        says=["64", "inception_v3", "75"],
        id="image-size-choice-below-minimum",
    ),
    bad({**INCEPTION, "space.image_size": {"low": 64, "high": 299}}, key="space.image_size", says=["64", "75"], id="image-size-range-below-minimum"),
    bad({"space.image_size": 4}, key="space.image_size", says=["between 8"], id="image-size-below-8"),
    # data
    bad({"data.train": "nope"}, key="data.train", says=["folder not found", "nope"], id="train-folder-missing"),
    bad({"data.train": "data/cats/a.png"}, key="data.train", says=["folder not found"], id="train-is-a-file"),
    bad({"data.train": 5}, key="data.train", says=["folder path"], id="train-not-a-string"),
    bad({"data.validation": "missing_val"}, key="data.validation", says=["folder not found", "missing_val"], id="validation-folder-missing"),
    bad({"data.validation_split": 1.5}, key="data.validation_split", says=["1.5", "0.9"], id="validation-split-above-range"),
    bad({"data.validation_split": -0.1}, key="data.validation_split", says=["-0.1"], id="validation-split-negative"),
    bad({"data.validation_split": "20%"}, key="data.validation_split", says=["number"], id="validation-split-not-a-number"),
    bad({"data.validation_split": 0}, key="data.validation_split", says=["above 0"], id="validation-split-zero-without-folder"),
    bad({"data.validation_split": 0.5, "data.test_split": 0.5}, key="data.validation_split", says=["test_split"], id="splits-leave-nothing-to-train"),
    bad({"data.on_bad_image": "ignore"}, key="data.on_bad_image", says=["'ignore'", "skip", "error"], id="on-bad-image-not-allowed"),
    # budget
    bad({"budget.grace_epochs": 5, "budget.max_epochs": 3}, key="budget.grace_epochs", says=["max_epochs", "3"], id="grace-above-max-epochs"),
    bad({"budget.trials": 0}, key="budget.trials", says=["between 1 and 1000000"], id="trials-zero"),
    bad({"budget.trials": "many"}, key="budget.trials", says=["whole number"], id="trials-not-int"),
    bad({"budget.max_epochs": 2.5}, key="budget.max_epochs", says=["whole number"], id="max-epochs-float"),
    bad({"budget.reduction_factor": 1}, key="budget.reduction_factor", says=["at least 2"], id="reduction-factor-one"),
    bad({"budget.seed": -1}, key="budget.seed", says=["between 0 and 4294967295"], id="seed-negative"),
    bad({"budget.cpus_per_trial": 0}, key="budget.cpus_per_trial", says=["at least 0.1"], id="cpus-zero"),
    bad({"budget.gpus_per_trial": -1}, key="budget.gpus_per_trial", says=["at least 0"], id="gpus-negative"),
    bad({"budget.time_limit": "soon"}, key="budget.time_limit", says=["'soon'", "2h"], id="time-limit-soon"),
    bad({"budget.time_limit": -5}, key="budget.time_limit", says=["duration"], id="time-limit-negative"),
    bad({"budget.time_limit": "2 hours"}, key="budget.time_limit", says=["duration"], id="time-limit-word-unit"),
    bad({"budget.stop_at": "high"}, key="budget.stop_at", says=["number"], id="stop-at-not-a-number"),
    # name and weights
    bad({"name": "a/b"}, key="name", says=["'a/b'", "letters"], id="name-with-slash"),
    bad({"name": ".hidden"}, key="name", says=["letters"], id="name-starting-with-dot"),
    bad({"name": 12}, key="name", says=["letters"], id="name-not-a-string"),
    bad({"weights": "imagenet21k"}, key="weights", says=["imagenet", "none"], id="weights-unknown"),
    bad({"weights": 5}, key="weights", says=["imagenet", "none"], id="weights-not-a-string"),
]


@pytest.mark.parametrize("spec, key, says", BAD_SPECS)
def test_bad_spec_names_file_key_and_allowed_values(project, spec, key, says):
    path = write(project, spec)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert isinstance(caught.value, SweeperError)
    assert message.startswith(f"{path}: "), message  # names the file
    rest = message[len(f"{path}: ") :]
    assert rest.startswith(f"{key}: "), message  # names the key
    for text in says:
        assert text in rest, f"{text!r} not in {message!r}"
    assert "\n" not in message  # the CLI prints it on one line


def test_bad_catalogue_is_large_and_ids_are_unique():
    ids = [p.id for p in BAD_SPECS]
    assert len(ids) >= 12
    assert len(set(ids)) == len(ids)


def test_invalid_yaml_names_the_file_and_the_line(project):
    path = write(project, "data:\n  train: data\nspace: {backbone: [mobilenet_v2_0.35}\n")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "not valid YAML" in message
    assert "line 3" in message


def test_yaml_tab_indentation_is_reported_as_invalid_yaml(project):
    path = write(project, "data:\n\ttrain: data\nspace: {}\n")
    with pytest.raises(SpecError, match=r"not valid YAML \(line 2\)"):
        load_spec(path)


@pytest.mark.parametrize("text", ["", "- data\n- space\n", "just a string\n"], ids=["empty-file", "a-list", "a-string"])
def test_spec_that_is_not_a_mapping(project, text):
    path = write(project, text)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert "mapping" in str(caught.value)


def test_missing_spec_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(path) in str(caught.value)
    assert "not found" in str(caught.value)


def test_spec_path_that_is_a_folder(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path)


# --- regressions found by review ----------------------------------------------------------------


@pytest.mark.parametrize(
    "space_yaml, key",
    [
        ("backbone: [[mobilenet_v2_0.35]]", "space.backbone"),
        ("backbone: mobilenet_v2_0.35\n  learning_rate: " + "9" * 400, "space.learning_rate"),
        ("backbone: resnet50\n  cut: {inception_v3: [mixed99]}", "space.cut.inception_v3"),
    ],
    ids=["unhashable-backbone", "huge-number", "cut-typo-for-undrawn-backbone"],
)
def test_review_regressions_are_spec_errors(tmp_path, space_yaml, key):
    (tmp_path / "d" / "a").mkdir(parents=True)
    path = tmp_path / "s.yaml"
    path.write_text(f"data: {{train: d}}\nspace:\n  {space_yaml}\n")
    with pytest.raises(SpecError, match=key.replace(".", r"\.")):
        load_spec(path)


def test_top_level_image_size_errors_name_the_top_level_key(tmp_path):
    (tmp_path / "d" / "a").mkdir(parents=True)
    path = tmp_path / "s.yaml"
    path.write_text("data: {train: d}\nimage_size: 64\nspace: {backbone: inception_v3}\n")
    with pytest.raises(SpecError, match=r"s\.yaml: image_size: 64 px is below inception_v3's minimum"):
        load_spec(path)


def test_exponents_without_a_dot_and_zero_durations(tmp_path):
    (tmp_path / "d" / "a").mkdir(parents=True)
    path = tmp_path / "s.yaml"
    path.write_text("data: {train: d}\nspace: {learning_rate: {low: 1e-5, high: 1e-2, log: true}}\n")
    assert load_spec(path).space.learning_rate.low == 1e-5
    path.write_text("data: {train: d}\nbudget: {time_limit: 0s}\nspace: {}\n")
    with pytest.raises(SpecError, match="budget.time_limit"):
        load_spec(path)
