"""The spec file: YAML in, a typed and validated `Spec` out.

The defaults live in the dataclasses below, and the space's in `hyperparameters.py`, whose
table also drives the parsing of `space`. Every error names the file, the key and what is
allowed (`spec_checks.py`), so the CLI can print it on one line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .backbones import (
    HUB_PREFIX,
    PREPROCESS_MODES,
    REGISTRY,
    Backbone,
    cut_choices,
    declared,
    get_backbone,
    is_known,
    names_hint,
)
from .constraints import KEYS as CONSTRAINT_KEYS
from .constraints import Constraints
from .errors import SpecError, quote
from .hyperparameters import FULL, HYPERPARAMETERS, SPEC_KEYS, Hyperparameter
from .objective import BY_TASK, COSTS

# Re-exported: Ray pickles these under `sweeper.spec` (sweeps saved before space.py existed resume).
from .space import Choice, Fixed, Param, Range, Space, decode_units, encode_units, grid_space, values_of  # noqa: F401
from .spec_checks import SpecChecks
from .units import plural

TASKS = ("classification", "regression")
DEFAULT_OBJECTIVE = {"classification": "val_accuracy", "regression": "val_rmse"}
BAD_IMAGE_POLICIES = ("skip", "error")

# The keys a spec may hold (docs/spec.md lists each; tests/test_spec_reference.py keeps them in step).
TOP_KEYS = ("name", "task", "data", "image_size", "weights", "objective", "budget", "backbones", "space", "tracking",
            "constraints", "warm_start")
TRACKING_KEYS = ("mlflow",)
OWN_BACKBONE_KEYS = ("file", "factory", "scaling")
SPACE_KEYS = tuple(dict.fromkeys(h.spec_key.split(".")[0] for h in HYPERPARAMETERS))
HEAD_KEYS = tuple(h.spec_key.split(".", 1)[1] for h in HYPERPARAMETERS if h.spec_key.startswith("head."))
RANGE_KEYS = ("low", "high", "log", "step")


# --- the rest of the spec ----------------------------------------------------------------------


@dataclass(frozen=True)
class DataSpec:
    """Where the images and their labels are. Three layouts: folders per class, a CSV, labels in file names."""

    train: Path | None = None  # a folder: one sub-folder per class, or any files with `label_pattern`
    validation: Path | None = None  # a folder, or a CSV file in the CSV layout
    validation_split: float = 0.2
    test: Path | None = None
    test_split: float = 0.0
    on_bad_image: str = "skip"
    # PIL's own default guard (Image.MAX_IMAGE_PIXELS): a 656 KB PNG can claim 1.9 GB of pixels.
    max_image_pixels: int = 89_478_485
    csv: Path | None = None  # the CSV layout: one row per image
    images: Path | None = None  # the folder the CSV's paths are relative to (default: the CSV's folder)
    path_column: str = "path"
    target_column: str = "label"
    label_pattern: str | None = None  # a regex with a named group `label`, matched against file names

    @property
    def layout(self) -> str:
        return "csv" if self.csv else "file names" if self.label_pattern else "folders"


SEARCHES = ("tpe", "random", "grid")
TRIAGES = ("off", "order", "prune")  # triage.py
PRECISIONS = ("float32", "mixed_float16", "bfloat16")  # precision.py


@dataclass(frozen=True)
class Budget:
    # trials, grace_epochs and reduction_factor: measured in benchmarks/README.md (bench_search.py,
    # replay_search.py): within 1 point of the grid's best for under 30 % of its epochs.
    trials: int = 20  # never more than a finite space's configurations (search_space.trial_count)
    max_epochs: int = 10
    grace_epochs: int = 3  # or max_epochs, if that is smaller and grace_epochs is not given
    reduction_factor: int = 4
    concurrent_trials: int = 2
    cpus_per_trial: float = 1
    # A number (fractions share a GPU; above 1, whole GPUs), or "auto": packed by each
    # architecture's peak GPU memory, measured when the sweep starts (gpus.py).
    gpus_per_trial: float | str = 0
    time_limit: float | None = None  # seconds
    stop_at: float | None = None
    max_failures: int = 1
    seed: int = 0
    search: str = "tpe"  # tpe (Optuna's TPE); random; grid (every configuration once, in a random order)
    # Rank the (backbone, cut, image size) pairs on frozen features before the first trial
    # (triage.py): `order` proposes the best-ranked first, `prune` also drops the worst half.
    triage: str = "off"
    # The trials' compute precision; variables, the head's output, the loss and exported models
    # stay float32. The default on GPUs too, until bench_gpu.py has measured the others on one.
    precision: str = "float32"


@dataclass(frozen=True)
class Tracking:
    """Trackers a sweep also goes to. Its own folder always holds TensorBoard event files and an
    Optuna journal; these need a server or a store of the user's."""

    mlflow: str | None = None  # an MLflow tracking URI: sqlite:///mlflow.db, http://host:5000 ...


@dataclass(frozen=True)
class Spec:
    name: str
    data: DataSpec
    space: Space
    path: Path  # the spec file; relative paths were resolved against its folder
    task: str = "classification"
    weights: str = "imagenet"  # "imagenet" or "none"
    weights_dir: Path | None = None  # set when the spec's `weights` names a folder
    objective: str = "val_accuracy"
    # Costs minimized beside the objective (`objective: [val_accuracy, latency_ms]`): Optuna's
    # multi-objective TPE searches the Pareto front; ASHA, ranks and the export follow `objective`.
    cost_objectives: tuple[str, ...] = ()
    budget: Budget = field(default_factory=Budget)
    backbones: dict[str, Backbone] = field(default_factory=dict)  # the spec's own models, by name
    tracking: Tracking = field(default_factory=Tracking)
    constraints: Constraints = field(default_factory=Constraints)
    warm_start: Path | None = None  # a results folder whose sweeps' best configurations go first (warm_start.py)
    raw: dict = field(default_factory=dict, compare=False, repr=False)  # as written, plus overrides

    @property
    def mode(self) -> str:
        return BY_TASK[self.task][self.objective]

    @property
    def objectives(self) -> tuple[str, ...]:
        return (self.objective, *self.cost_objectives)

    @property
    def modes(self) -> tuple[str, ...]:
        return (self.mode, *("min" for _ in self.cost_objectives))

    @property
    def measures_tflite(self) -> bool:
        """tflite_ms takes a TFLite conversion per architecture: measured where bounded or minimized."""
        return self.constraints.tflite_ms is not None or "tflite_ms" in self.cost_objectives


# --- loading -----------------------------------------------------------------------------------


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> Spec:
    """Read and validate a spec file. `overrides` replaces top-level or `budget.*` keys."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: spec file not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                        "save the spec as UTF-8") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise SpecError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return parse_spec(raw, path, overrides)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping: the safe loader keeps the
    last one silently, and a spec that says `trials: 10` then `trials: 50` is a mistake."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"{quote(key)} is given twice", key_node.start_mark)
            try:
                seen.add(key)
            except TypeError:  # an unhashable key: the safe loader says so itself
                pass
        return super().construct_mapping(node, deep=deep)


def parse_spec(raw: Any, path: Path, overrides: dict[str, Any] | None = None) -> Spec:
    ctx = SpecChecks(path)
    if not isinstance(raw, dict):
        ctx.fail("", "the spec must be a mapping with at least `data` and `space`")
    raw = dict(raw)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, sub = key.partition(".")
        if sub:
            raw[section] = {**(raw.get(section) or {}), sub: value}
        else:
            raw[key] = value

    ctx.no_unknown_keys("", raw, TOP_KEYS)
    for required in ("data", "space"):
        if required not in raw:
            ctx.fail(required, "is required")

    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        ctx.fail("name", f"{quote(name)} must be letters, digits, '-', '_' or '.' (it names a folder)")
    task = ctx.one_of("task", raw.get("task", "classification"), TASKS)

    weights, weights_dir = raw.get("weights", "imagenet"), None
    if weights not in ("imagenet", "none"):
        if not isinstance(weights, str):
            ctx.fail("weights", "must be imagenet, none, or a folder holding Keras weight files")
        weights_dir = ctx.resolve_path(weights)
        if not weights_dir.is_dir():
            ctx.fail("weights", f"{quote(weights)} is neither imagenet, none, nor an existing folder")
        weights = "imagenet"

    objective, *cost_objectives = _parse_objective(ctx, raw.get("objective", DEFAULT_OBJECTIVE[task]), task)

    own = _own_backbones(ctx, raw, check_files=True)
    with declared(own):
        space = _parse_space(ctx, raw["space"], raw.get("image_size", Space.image_size.value), task)
    budget = _parse_budget(ctx, raw.get("budget") or {})
    if budget.search == "grid":
        try:
            grid_space(space)
        except ValueError as exc:
            ctx.fail("budget.search", f"grid: {exc}")
        if budget.triage != "off":
            ctx.fail("budget.triage", f"{budget.triage}: a grid trains every configuration; triage orders or "
                                      "prunes the proposals of tpe or random search")
    warmup = _largest(space.warmup_epochs)
    if warmup >= budget.max_epochs:
        ctx.fail("space.warmup_epochs", f"{plural(warmup, 'warm-up epoch')} would leave none of budget.max_epochs "
                                        f"({budget.max_epochs}) at the full learning rate")
    return Spec(
        name=name,
        task=task,
        data=_parse_data(ctx, raw["data"]),
        space=space,
        path=path.resolve(),
        weights=weights,
        weights_dir=weights_dir,
        objective=objective,
        cost_objectives=tuple(cost_objectives),
        budget=budget,
        backbones=own,
        tracking=_parse_tracking(ctx, raw.get("tracking")),
        constraints=_parse_constraints(ctx, raw.get("constraints")),
        warm_start=_parse_warm_start(ctx, raw.get("warm_start")),
        raw=raw,
    )


def _parse_warm_start(ctx: SpecChecks, value: Any) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str):
        ctx.fail("warm_start", "must be a results folder holding earlier sweeps, e.g. results/")
    folder = ctx.resolve_path(value)
    if not folder.is_dir():
        ctx.fail("warm_start", f"{quote(value)}: no such folder")
    return folder


def _parse_objective(ctx: SpecChecks, raw: Any, task: str) -> list[str]:
    """A validation metric, or a list of one and the costs to minimize beside it."""
    if not isinstance(raw, list):
        return [ctx.one_of("objective", raw, tuple(BY_TASK[task]), f" for task {task}")]
    if len(raw) < 2:
        ctx.fail("objective", "a list names the objective and the costs to minimize beside it, e.g. "
                              "[val_accuracy, latency_ms]; for one objective give its name alone")
    first = ctx.one_of("objective[0]", raw[0], tuple(BY_TASK[task]), f" for task {task} (a validation metric comes first)")
    costs = [ctx.one_of(f"objective[{i}]", name, COSTS, " (after the first, costs to minimize)")
             for i, name in enumerate(raw[1:], start=1)]
    if len(set(costs)) < len(costs):
        ctx.fail("objective", f"{quote(raw)} names a cost twice")
    return [first, *costs]


def _parse_constraints(ctx: SpecChecks, raw: Any) -> Constraints:
    if raw is None:
        return Constraints()
    if not isinstance(raw, dict):
        ctx.fail("constraints", "must be a mapping of upper bounds, e.g. {latency_ms: 5.0, size_mb: 4.0}")
    ctx.no_unknown_keys("constraints", raw, CONSTRAINT_KEYS)
    bounds = {}
    for key, value in raw.items():
        bounds[key] = float(ctx.number(f"constraints.{key}", value))
        if bounds[key] <= 0:
            ctx.fail(f"constraints.{key}", f"{value} must be above 0 (an upper bound)")
    return Constraints(**bounds)


def _parse_tracking(ctx: SpecChecks, raw: Any) -> Tracking:
    if raw is None:  # absent, or `tracking:` with nothing under it
        return Tracking()
    if not isinstance(raw, dict):
        ctx.fail("tracking", "must be a mapping, e.g. {mlflow: sqlite:///mlflow.db}")
    ctx.no_unknown_keys("tracking", raw, TRACKING_KEYS)
    uri = raw.get("mlflow")
    if uri is None:
        return Tracking()
    if not isinstance(uri, str) or not uri.strip():
        ctx.fail("tracking.mlflow", "must be an MLflow tracking URI, e.g. sqlite:///mlflow.db or http://host:5000")
    # A relative SQLite file is relative to the spec, as every other path in it: a resume run from
    # another folder must find the same store.
    return Tracking(mlflow=absolute_sqlite(uri, ctx.path.parent))


def absolute_sqlite(uri: str, folder: Path) -> str:
    """An MLflow URI with a relative SQLite file (sqlite:///mlflow.db) made absolute from `folder`."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str((Path(folder) / Path(uri.removeprefix("sqlite:///")).expanduser()).resolve())
    return uri


def read_search_setup(path: str | Path) -> tuple[Space, Budget]:
    """The space and budget of a spec as a sweep saved it (`results/<sweep>/spec.yaml`).

    Unlike `load_spec`, the data folders are not checked: a finished sweep is read where it lies,
    even after its images have moved.
    """
    path = Path(path)
    ctx = SpecChecks(path)
    try:
        raw = yaml.safe_load(path.read_text()) if path.is_file() else None
    except yaml.YAMLError:
        raw = None
    if not isinstance(raw, dict) or "space" not in raw:
        ctx.fail("", "not a spec saved by `sweeper run` (no `space`)")
    with declared(_own_backbones(ctx, raw, check_files=False)):
        space = _parse_space(ctx, raw["space"], raw.get("image_size", Space.image_size.value),
                             raw.get("task", "classification"))
    return space, _parse_budget(ctx, raw.get("budget") or {})


def _own_backbones(ctx: SpecChecks, raw: dict, *, check_files: bool) -> dict[str, Backbone]:
    """The spec's models beside the registry: its `backbones:` and the KerasHub presets it names."""
    return {**_parse_backbones(ctx, raw.get("backbones"), check_files=check_files),
            **_hub_backbones(ctx, raw["space"], check_files=check_files)}


def _parse_backbones(ctx: SpecChecks, raw: Any, *, check_files: bool) -> dict[str, Backbone]:
    """`backbones:`, the spec's own models by name. Whether a model loads, takes images and has the
    layers `space.cut` names is checked by loading it (`own_models.inspect`), before a sweep starts."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        ctx.fail("backbones", "must be a mapping of names to models, e.g. `tinynet: {file: tinynet.keras, scaling: unit}`")
    own = {}
    for name, entry in raw.items():
        key = f"backbones.{name}"
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            ctx.fail(key, f"{quote(name)} must be letters, digits, '-', '_' or '.' (it names the model in tables and folders)")
        if name in REGISTRY:
            ctx.fail(key, f"{name} is a registry backbone already; give your model another name")
        if not isinstance(entry, dict):
            ctx.fail(key, "must be a mapping: {file: <model.keras>, scaling: <mode>} or {factory: <module:function>, scaling: <mode>}")
        ctx.no_unknown_keys(key, entry, OWN_BACKBONE_KEYS)
        if ("file" in entry) == ("factory" in entry):
            ctx.fail(key, "give one of `file` (a .keras model) and `factory` (\"module:function\")")
        if "scaling" not in entry:
            ctx.fail(f"{key}.scaling", f"is required: how the model expects its inputs; one of {', '.join(PREPROCESS_MODES)}")
        scaling = ctx.one_of(f"{key}.scaling", entry["scaling"], PREPROCESS_MODES)
        file = factory = None
        if "file" in entry:
            file = (ctx.existing(f"{key}.file", entry["file"], folder=False) if check_files
                    else ctx.resolve_path(str(entry["file"])))
            if file.suffix != ".keras":
                ctx.fail(f"{key}.file", f"{file.name} is not a .keras file (save the model with model.save(\"name.keras\"))")
            file = str(file)
        else:
            factory = _parse_factory(ctx, f"{key}.factory", entry["factory"], check_files)
        own[name] = Backbone(name=name, constructor="", preprocess=scaling, default_size=224, min_size=1,
                             cut_points=(FULL,), file=file, factory=factory)
    return own


def _hub_backbones(ctx: SpecChecks, raw_space: Any, *, check_files: bool) -> dict[str, Backbone]:
    """The KerasHub presets `space.backbone` names (`hub:<preset>`): a preset folder (relative to the
    spec), a handle such as kaggle://keras/resnetv2/keras/resnet_50_imagenet, or a preset name."""
    chosen = raw_space.get("backbone") if isinstance(raw_space, dict) else None
    names = [v for v in (chosen if isinstance(chosen, list) else [chosen])
             if isinstance(v, str) and v.startswith(HUB_PREFIX)]
    found = {}
    for name in names:
        preset = name[len(HUB_PREFIX):]
        folder = ctx.resolve_path(preset) if preset and "://" not in preset else None
        if folder is not None and folder.is_dir():
            preset = str(folder)
        elif check_files and ("/" in preset or preset.startswith(".") or not preset) and "://" not in preset:
            ctx.fail("space.backbone", f"{name}: no KerasHub preset folder at {folder}")
        found[name] = Backbone(name=name, constructor="", preprocess="affine", default_size=224, min_size=1,
                               cut_points=(FULL,), hub=preset)
    return found


def _parse_factory(ctx: SpecChecks, key: str, value: Any, check_files: bool) -> str:
    """"package.module:function", or "path/to/file.py:function" (relative to the spec)."""
    module, _, function = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    if not module or not function.isidentifier():
        ctx.fail(key, f"{quote(value)} must be \"module:function\", e.g. \"mypkg.nets:build\" or \"nets.py:build\"")
    if module.endswith(".py"):
        module = str(ctx.existing(key, module, folder=False) if check_files else ctx.resolve_path(module))
    elif not all(part.isidentifier() for part in module.split(".")):
        ctx.fail(key, f"{quote(module)} is neither a module name nor a .py file")
    return f"{module}:{function}"


def _parse_data(ctx: SpecChecks, raw: Any) -> DataSpec:
    if not isinstance(raw, dict):
        ctx.fail("data", "must be a mapping: `train: <folder>` (one sub-folder per class) or `csv: <file>`")
    ctx.no_unknown_keys("data", raw, [f.name for f in fields(DataSpec)])
    if "csv" in raw and "train" in raw:
        ctx.fail("data.csv", "and data.train are two layouts; give one: a CSV of images, or a training folder")
    if "csv" in raw and "label_pattern" in raw:
        ctx.fail("data.label_pattern", "labels come from the CSV's target column; drop label_pattern or csv")
    if "csv" not in raw and "train" not in raw:
        ctx.fail("data.train", "is required: a folder with one sub-folder per class (or give data.csv)")
    values: dict[str, Any] = {}
    for key in ("train", "images"):
        if raw.get(key) is not None:
            values[key] = ctx.existing(f"data.{key}", raw[key], folder=True)
    if raw.get("csv") is not None:
        values["csv"] = ctx.existing("data.csv", raw["csv"], folder=False)
    for key in ("validation", "test"):  # a folder, or a CSV file in the CSV layout
        if raw.get(key) is not None:
            values[key] = ctx.existing(f"data.{key}", raw[key], folder="csv" not in raw)
    for key in ("path_column", "target_column"):
        if key in raw:
            if not isinstance(raw[key], str) or not raw[key]:
                ctx.fail(f"data.{key}", f"{quote(raw[key])} must be a column name")
            values[key] = raw[key]
    if raw.get("label_pattern") is not None:
        values["label_pattern"] = _parse_label_pattern(ctx, raw["label_pattern"])
    for key, default in (("validation_split", DataSpec.validation_split), ("test_split", DataSpec.test_split)):
        values[key] = ctx.number(f"data.{key}", raw.get(key, default), low=0.0, high=0.9)
    if values["validation_split"] + values["test_split"] >= 0.95:
        ctx.fail("data.validation_split", "validation_split + test_split must leave images to train on")
    if "validation" not in values and values["validation_split"] == 0:
        ctx.fail("data.validation_split", "must be above 0 when there is no `data.validation` source")
    values["on_bad_image"] = ctx.one_of("data.on_bad_image", raw.get("on_bad_image", "skip"), BAD_IMAGE_POLICIES)
    # Up to twice PIL's default: above that PIL refuses to open a file unless its limit is lifted
    # for the whole process, which sweeper never does.
    values["max_image_pixels"] = ctx.integer("data.max_image_pixels",
                                             raw.get("max_image_pixels", DataSpec.max_image_pixels),
                                             low=1, high=2 * DataSpec.max_image_pixels)
    return DataSpec(**values)


def _parse_label_pattern(ctx: SpecChecks, value: Any) -> str:
    if not isinstance(value, str):
        ctx.fail("data.label_pattern", f"{quote(value)} must be a regular expression")
    try:
        pattern = re.compile(value)
    except re.error as exc:
        ctx.fail("data.label_pattern", f"{quote(value)} is not a valid regular expression: {exc}")
    if "label" not in pattern.groupindex:
        ctx.fail("data.label_pattern", f"{quote(value)} needs a named group `label`, e.g. '^(?P<label>[a-z]+)\\.'")
    return value


def _parse_budget(ctx: SpecChecks, raw: Any) -> Budget:
    if not isinstance(raw, dict):
        ctx.fail("budget", "must be a mapping")
    ctx.no_unknown_keys("budget", raw, [f.name for f in fields(Budget)])
    values = {}
    for key in ("trials", "max_epochs", "concurrent_trials"):  # a million is far beyond any sweep
        values[key] = ctx.integer(f"budget.{key}", raw.get(key, getattr(Budget, key)), low=1, high=1_000_000)
    grace = raw.get("grace_epochs", min(Budget.grace_epochs, values["max_epochs"]))
    values["grace_epochs"] = ctx.integer("budget.grace_epochs", grace, low=1)
    values["reduction_factor"] = ctx.integer("budget.reduction_factor", raw.get("reduction_factor", Budget.reduction_factor),
                                             low=2)
    values["max_failures"] = ctx.integer("budget.max_failures", raw.get("max_failures", Budget.max_failures), low=0)
    values["seed"] = ctx.integer("budget.seed", raw.get("seed", Budget.seed), low=0, high=2**32 - 1)  # numpy's range
    values["cpus_per_trial"] = ctx.number("budget.cpus_per_trial", raw.get("cpus_per_trial", Budget.cpus_per_trial), low=0.1)
    values["gpus_per_trial"] = _parse_gpus(ctx, raw.get("gpus_per_trial", Budget.gpus_per_trial))
    values["precision"] = ctx.one_of("budget.precision", raw.get("precision", Budget.precision), PRECISIONS)
    values["search"] = ctx.one_of("budget.search", raw.get("search", Budget.search), SEARCHES)
    values["triage"] = ctx.one_of("budget.triage", raw.get("triage", Budget.triage), TRIAGES)
    if values["grace_epochs"] > values["max_epochs"]:
        ctx.fail("budget.grace_epochs", f"{values['grace_epochs']} must not exceed max_epochs ({values['max_epochs']})")
    if raw.get("time_limit") is not None:
        values["time_limit"] = _parse_duration(ctx, raw["time_limit"])
    if raw.get("stop_at") is not None:
        values["stop_at"] = ctx.number("budget.stop_at", raw["stop_at"])
    return Budget(**values)


def _parse_gpus(ctx: SpecChecks, value: Any) -> float | str:
    if value == "auto":
        return value
    gpus = ctx.number("budget.gpus_per_trial", value, low=0.0)
    if gpus > 1 and gpus != int(gpus):  # Ray's rule: a share of one GPU, or whole GPUs
        ctx.fail("budget.gpus_per_trial", f"{gpus:g}: above 1, a trial takes whole GPUs; use {int(gpus)}, "
                 f"{int(gpus) + 1}, a fraction of one GPU, or auto")
    return gpus


def _parse_duration(ctx: SpecChecks, value: Any) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", str(value))
    if not match or float(match[1]) <= 0:
        ctx.fail("budget.time_limit", f"{quote(value)} is not a duration; use seconds or e.g. 90s, 30m, 2h")
    return float(match[1]) * units[match[2]]


# --- the space ---------------------------------------------------------------------------------


def _parse_space(ctx: SpecChecks, raw: Any, image_size: Any, task: str) -> Space:
    if not isinstance(raw, dict):
        ctx.fail("space", "must be a mapping of hyperparameters, e.g. `backbone: [mobilenet_v2_0.35]`")
    ctx.no_unknown_keys("space", raw, SPACE_KEYS)
    head = raw.get("head") or {}
    if not isinstance(head, dict):
        ctx.fail("space.head", "must be a mapping with pooling, units and dropout")
    ctx.no_unknown_keys("space.head", head, HEAD_KEYS)
    written = {**raw, **{f"head.{k}": v for k, v in head.items()}, "image_size": raw.get("image_size", image_size)}
    unfreeze = raw.get("unfreeze")
    if isinstance(unfreeze, dict) and "blocks" in unfreeze:  # {blocks: N}: whole blocks, not layers
        ctx.no_unknown_keys("space.unfreeze", unfreeze, ("blocks",))
        written["unfreeze.blocks"] = written.pop("unfreeze")["blocks"]

    size_key = "space.image_size" if "image_size" in raw else "image_size"  # a size given at the top is reported there
    values = {}
    for h in HYPERPARAMETERS:
        key = size_key if h.name == "image_size" else SPEC_KEYS[h.name]
        value = written.get(h.spec_key, h.default)
        if h.task and h.task != task and h.spec_key in written and value != h.default:
            ctx.fail(key, f"applies to {h.task} only, and this spec's task is {task}")
        if h.name == "cut":
            continue  # per backbone, once the backbones are known
        if h.name == "head_units":
            values[h.name] = _parse_units(ctx, written.get(h.spec_key, list(h.default)))
        elif h.name == "backbone":
            values[h.name] = _parse_param(ctx, key, value, ctx.backbone_name, None)
        else:
            numeric = h.type.__name__ if h.type in (int, float) else None  # only numbers take a range
            values[h.name] = _parse_param(ctx, key, value, _check(ctx, h), numeric)
    values["cut"] = _parse_cut(ctx, raw.get("cut"), values_of(values["backbone"]))

    if _largest(values["unfreeze_blocks"]) > 0:
        blockless = [name for name in values_of(values["backbone"]) if not get_backbone(name).blocks]
        if blockless:
            ctx.fail("space.unfreeze.blocks", f"{blockless[0]} has no named blocks; "
                                              "give `unfreeze` as a number of layers for it")
    smallest = _smallest(values["image_size"])
    for name in values_of(values["backbone"]):
        minimum = get_backbone(name).min_size
        if smallest < minimum:
            ctx.fail(size_key, f"{smallest} px is below {name}'s minimum input size of {minimum} px")
    return Space(**values)


def _check(ctx: SpecChecks, h: Hyperparameter) -> Callable:
    """How a spec value of this hyperparameter is checked, from its declared type and bounds."""
    if h.type is bool:
        return ctx.bool_check
    if h.type is int:
        return ctx.int_check(low=int(h.low), high=h.high if h.high is not None else math.inf)
    if h.type is float:
        return ctx.float_check(h.low, h.high)
    return ctx.choice_check(h.values)


def _parse_units(ctx: SpecChecks, value: Any) -> Param:
    """`units` is a list of hidden layer sizes, so a list of lists is the choice."""

    def layers(v: Any) -> tuple[int, ...]:
        if isinstance(v, int) and not isinstance(v, bool):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(u, int) and not isinstance(u, bool) and u > 0 for u in v):
            ctx.fail("space.head.units", f"{quote(v)} must be a list of positive layer sizes, e.g. [] or [256]")
        return tuple(v)

    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        options = tuple(dict.fromkeys(layers(v) for v in value))
        return Fixed(options[0]) if len(options) == 1 else Choice(options)
    return Fixed(layers(value))


def _parse_cut(ctx: SpecChecks, raw: Any, backbones: tuple[str, ...]) -> dict[str, Param]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raw = {"default": raw}  # one list of cuts for every backbone
    unknown = [k for k in raw if k != "default" and not is_known(k)]
    if unknown:
        ctx.fail(f"space.cut.{unknown[0]}", f"is not a backbone (nor `default`); {names_hint(unknown[0])}")
    cuts = {}
    for key, value in raw.items():
        # A cut keyed by a backbone outside `space.backbone` is still checked, so a typo never hides.
        names = [n for n in backbones if n not in raw] if key == "default" else [key]
        for name in names:
            entry = get_backbone(name)
            # An own model's layer names are checked against the model itself, before the sweep starts.
            check = ctx.layer_name_check if entry.own else ctx.choice_check(cut_choices(entry), f" for {name}")
            param = _parse_param(ctx, f"space.cut.{key}", value, check, None)
            if name in backbones:
                cuts[name] = param
    return cuts


def _parse_param(ctx: SpecChecks, key: str, value: Any, check: Callable, numeric: str | None) -> Param:
    if isinstance(value, dict):
        if numeric is None:
            ctx.fail(key, "takes a value or a list of values, not a range")
        ctx.no_unknown_keys(key, value, RANGE_KEYS)
        if "low" not in value or "high" not in value:
            ctx.fail(key, "a range needs both `low` and `high`")
        low, high = check(key, value["low"]), check(key, value["high"])
        if not low < high:
            ctx.fail(key, f"low ({low}) must be below high ({high})")
        log = value.get("log", False)
        if not isinstance(log, bool):
            ctx.fail(f"{key}.log", "must be true or false")
        if log and low <= 0:
            ctx.fail(key, "a log range needs low > 0")
        step = value.get("step")
        if step is not None:
            step = ctx.number(f"{key}.step", step, low=1 if numeric == "int" else 1e-12)
            if log:
                ctx.fail(f"{key}.step", "cannot be combined with log: true")
        return Range(low, high, log, step, integer=numeric == "int")
    if isinstance(value, list):
        if not value:
            ctx.fail(key, "an empty list leaves nothing to choose")
        options = tuple(dict.fromkeys(check(key, v) for v in value))
        return Fixed(options[0]) if len(options) == 1 else Choice(options)
    return Fixed(check(key, value))


def _smallest(param: Param) -> int:
    return int(param.low) if isinstance(param, Range) else min(values_of(param))


def _largest(param: Param) -> int:
    return int(param.high) if isinstance(param, Range) else max(values_of(param))
