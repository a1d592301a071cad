"""`sweeper export`: the model that earned a leaderboard score, as a bundle people deploy.

The bundle is rebuilt from the trial's best-epoch checkpoint as the whole model (backbone and
trained parts, also when the trial trained on cached features), written in every format, and
then checked before it is moved into place: its Keras model must reproduce the trial's
validation metric, and every other format must agree with the Keras model. A bundle that
fails the check is not written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from . import __version__, checkpoint, images, leaderboard, results
from .bundle import FORMAT, MANIFEST, to_probabilities
from .data import DatasetIndex, build_index
from .errors import CheckpointMissing, ParityError, SweeperError
from .evaluate import scores
from .files import fsync_dir, fsync_tree
from .native_stderr import quiet_native_stderr
from .units import plural

FORMATS_AGREE = 1e-4  # largest difference allowed between a format's outputs and the Keras model's
METRIC_AGREES = 1e-6  # relative: the Keras model against the trial's reported metric
# The same, for trials that computed in a reduced precision (budget.precision) while the export is
# float32: float16 keeps about 3 significant digits, bfloat16 about 2, and a few images near the
# decision boundary change their class.
REDUCED_PRECISION_AGREES = 0.02
CALIBRATION_IMAGES = 100  # training images that calibrate the int8 model
# What the int8 TFLite model may lose against the float one on the validation split, by default:
# points of accuracy, or percent of RMSE (regression). More refuses the bundle (--int8-max-drop).
INT8_MAX_DROP = 1.0


@dataclass(frozen=True)
class ExportOptions:
    trial: str | None = None  # None: the best trial
    top: int = 1  # more than 1: an ensemble averaging the K best trials
    int8: bool = False  # also write model_int8.tflite, calibrated on training images
    int8_max_drop: float | None = None  # None: INT8_MAX_DROP
    force: bool = False  # replace an existing bundle
    cache_dir: Path | None = None  # default: the sweep's, <out>/.cache
    mlflow: str | None = None  # an MLflow tracking URI: the bundle is also logged there
    # Upper bounds on leaderboard columns (latency_ms, tflite_ms, size_mb, params): the best trials within them.
    limits: dict[str, float] = field(default_factory=dict)


def export_bundle(sweep_dir: Path, out: Path, options: ExportOptions = ExportOptions(),
                  console: Console | None = None) -> Path:
    console = console or Console()
    sweep_dir = Path(sweep_dir).resolve()
    meta = results.require_sweep(sweep_dir)
    cache_dir = Path(options.cache_dir or results.SweepFolder(sweep_dir).cache)
    out = _checked_out(Path(out), force=options.force, protected={
        "the working directory": Path.cwd(), "your home folder": Path.home(), "the root folder": Path("/"),
        "the sweep": sweep_dir, "the cache": cache_dir,
        **({"the sweep's experiment": Path(experiment)} if "://" not in (experiment := results.experiment_of(sweep_dir)) else {}),
    })
    if options.mlflow:  # before any work: the bundle is logged after it is written
        from .mlflow_runs import check

        check(options.mlflow)
    rows = leaderboard.read(sweep_dir)
    objective = meta.get("objective") or leaderboard.objective_of(rows)
    index = _sweep_data(sweep_dir, meta)
    if "tflite_ms" in options.limits:
        _measure_tflite_where_missing(rows, objective, options.limits, sweep_dir, index, console)
    members = _choose(rows, objective, options, sweep_dir)
    if options.limits:
        console.print(within_limits_line(rows, members, objective, options.limits), markup=False, highlight=False)

    with quiet_native_stderr():
        from .trial import init_tensorflow

        init_tensorflow(os.cpu_count() or 1)
        loaded = [checkpoint.load_model(checkpoint.find(sweep_dir, row["trial_id"]), task=index.task,
                                        n_classes=len(index.classes)) for row in members]
        model = loaded[0][0] if len(loaded) == 1 else _ensemble([m for m, _ in loaded])
        size = max(config.image_size for _, config in loaded)
        names = ", ".join(row["trial_id"] for row in members)
        console.print(f"exporting {'trial' if len(members) == 1 else f'an ensemble of the {len(members)} best trials:'} "
                      f"{names} from {sweep_dir.name}", markup=False)

        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            index, pixels = images.load_images(index, size, cache_dir)
            calibration = pixels[index.indices("train")[:CALIBRATION_IMAGES]] if options.int8 else None
            write_models(model, tmp, size=size, task=index.task, classes=index.classes, calibration=calibration)
            checks = _check(model, tmp, index, pixels, members, objective, loaded[0][1], console,
                            trained_in=meta.get("precision", "float32"))
            _check_int8(checks, index.task, options.int8_max_drop)
            manifest = _manifest(sweep_dir, meta, index, members, loaded, size, objective, checks, tmp)
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
            (tmp / "model_card.md").write_text(_model_card(sweep_dir, manifest))
            fsync_tree(tmp)
            _swap_in(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # the temp folder made above, and nothing else
            raise
    console.print(f"bundle: {out}", markup=False)
    if options.mlflow:
        from .mlflow_runs import log_bundle

        run_id = log_bundle(options.mlflow, sweep_dir=sweep_dir, meta=meta, bundle=out, checks=checks)
        console.print(f"logged to MLflow at {options.mlflow}: run {run_id}", markup=False)
    return out


def _checked_out(out: Path, *, force: bool, protected: dict[str, Path]) -> Path:
    """`--out` made absolute, once it is clear that writing the bundle there loses nothing.

    `--force` replaces an existing bundle and nothing else: not a folder of other files (a typo
    of `--out results` for `results/bundle` once deleted every sweep), nor a bundle someone added
    files to, nor a folder that holds the sweep, its experiment, its cache, the working
    directory, the home folder or `/` (refused even when they are empty or absent).
    """
    out = Path(os.path.abspath(out.expanduser()))
    real = out.resolve()
    protected = {what: path.resolve() for what, path in protected.items()}
    clash = next(((what, p) for what, p in protected.items() if real == p), None)
    clash = clash or next(((f"a folder that holds {what}", p) for what, p in protected.items() if real in p.parents), None)
    if clash:
        raise SweeperError(f"--out {out}: that is {clash[0]} ({clash[1]}); give the bundle a folder of its own, "
                           "e.g. --out bundles/<name>")
    if not out.exists() and not out.is_symlink():
        return out
    if not force:
        raise SweeperError(f"--out {out}: already exists; choose another --out, or pass --force to replace the bundle")
    if out.is_symlink() or not out.is_dir():
        raise SweeperError(f"--out {out}: exists and is not a sweeper bundle folder; --force replaces only a bundle, "
                           "so it is left as it is")
    try:
        listed = json.loads((out / MANIFEST).read_bytes())["files"]
        listed = set(listed) if all(isinstance(name, str) for name in listed) else None
    except (OSError, ValueError, KeyError, TypeError):
        listed = None
    if listed is None:
        raise SweeperError(f"--out {out}: exists and is not a sweeper bundle (no readable {MANIFEST}); "
                           "--force replaces only a bundle, so it is left as it is")
    others = sorted(p.name for p in out.iterdir() if p.name not in listed)
    if others:
        shown = ", ".join(repr(name[:60]) for name in others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise SweeperError(f"--out {out}: the bundle holds files export did not write ({shown}); "
                           "move them out first: --force replaces only what export wrote")
    return out


def _swap_in(new: Path, out: Path) -> None:
    """Put the finished bundle `new` at `out`: the old bundle (if any) is moved aside, the new one
    moved in, and only then the old one removed. A crash leaves one whole bundle, at `out` or aside."""
    aside = None
    if out.exists():
        aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, aside)  # onto the empty folder just made: a unique name no one else uses
    try:
        os.replace(new, out)
    except BaseException:
        if aside is not None:
            os.replace(aside, out)
        raise
    fsync_dir(out.parent)
    if aside is not None:
        shutil.rmtree(aside)


def _choose(rows: list[dict], objective: str, options: ExportOptions, sweep_dir: Path) -> list[dict]:
    """The trials to export, best first: those that reported a value and kept a checkpoint."""
    if options.trial and options.top > 1:
        raise SweeperError("--trial and --top: choose one trial, or the K best")
    usable = [r for r in leaderboard.scored(rows, objective) if _has_checkpoint(sweep_dir, r["trial_id"])]
    if options.limits:
        if options.trial:
            raise SweeperError("--trial and the --max-* limits: choose one trial, or let the limits choose")
        within = [r for r in usable if _within(r, options.limits)]
        if not within:
            raise SweeperError(f"no trial with a checkpoint is within {_limits_text(options.limits)} "
                               f"(of {len(usable)}; {_closest(usable, options.limits)})")
        usable = within
    if options.trial:
        chosen = [r for r in usable if r["trial_id"] == options.trial]
        if not chosen:
            known = ", ".join(r["trial_id"] for r in usable[:10])
            raise SweeperError(f"--trial {options.trial}: no such trial with a checkpoint in {sweep_dir}; "
                               f"the best are: {known}")
        return chosen
    if not usable:
        raise SweeperError(f"{sweep_dir}: no trial has a checkpoint yet; nothing to export")
    if options.top > len(usable):
        raise SweeperError(f"--top {options.top}: {sweep_dir} has {plural(len(usable), 'trial')} with a checkpoint")
    return usable[:options.top]


def limits_of(*, max_latency_ms: float | None = None, max_tflite_ms: float | None = None,
              max_size_mb: float | None = None, max_params: float | None = None) -> dict[str, float]:
    """`ExportOptions.limits` from the --max-* options (or Sweep.export's keywords) that were given."""
    given = {"latency_ms": max_latency_ms, "tflite_ms": max_tflite_ms, "size_mb": max_size_mb, "params": max_params}
    return {key: bound for key, bound in given.items() if bound is not None}


def _measure_tflite_where_missing(rows: list[dict], objective: str, limits: dict[str, float], sweep_dir: Path,
                                  index: DatasetIndex, console: Console) -> None:
    """A sweep measures tflite_ms only where its spec bounds it. Otherwise it is measured here, on
    the trials within the other limits, best first, until one is within them all; the rows gain it
    (in memory: the sweep's files are left as they are). Trials of one architecture share a figure."""
    from .latency import tflite_latency

    others = {key: bound for key, bound in limits.items() if key != "tflite_ms"}
    measured: dict[tuple, float] = {}
    for row in leaderboard.scored(rows, objective):
        if not (_within(row, others) and _has_checkpoint(sweep_dir, row["trial_id"])):
            continue
        if row.get("tflite_ms") is None:
            architecture = tuple(str(row.get(k)) for k in ("backbone", "cut", "head_pooling", "head_units", "image_size"))
            if architecture not in measured:
                with console.status(f"measuring tflite_ms of trial {row['trial_id']} (LiteRT, 1 thread)"), \
                        quiet_native_stderr():
                    from .trial import init_tensorflow

                    init_tensorflow(os.cpu_count() or 1)
                    model, _ = checkpoint.load_model(checkpoint.find(sweep_dir, row["trial_id"]), task=index.task,
                                                     n_classes=len(index.classes))
                    measured[architecture] = tflite_latency(model).ms
                console.print(f"trial {row['trial_id']}: tflite_ms {measured[architecture]:g}", markup=False,
                              highlight=False)
            row["tflite_ms"] = measured[architecture]
        if row["tflite_ms"] <= limits["tflite_ms"]:
            return


def _within(row: dict, limits: dict[str, float]) -> bool:
    """A row within every bound; a value not measured is not."""
    return all(isinstance(row.get(key), (int, float)) and row[key] <= bound for key, bound in limits.items())


def _limits_text(limits: dict[str, float]) -> str:
    return ", ".join(f"{key} <= {bound:g}" for key, bound in limits.items())


def _closest(rows: list[dict], limits: dict[str, float]) -> str:
    """The smallest value each bound saw, so the user sees how far off the limits are."""
    parts = []
    for key in limits:
        values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        parts.append(f"the smallest {key}: {min(values):g}" if values else f"none has {key} measured")
    return "; ".join(parts)


def within_limits_line(rows: list[dict], members: list[dict], objective: str, limits: dict[str, float]) -> str:
    """Which trial the limits chose, and why: its figures, and what the best trial overall missed."""
    chosen = members[0]
    figures = ", ".join(f"{key} {chosen[key]:g}" for key in limits)
    line = (f"within {_limits_text(limits)}: trial {chosen['trial_id']} ({objective} "
            f"{leaderboard.format_value(chosen[objective])}; {figures})")
    best = next(iter(leaderboard.scored(rows, objective)), None)
    if best is not None and best["trial_id"] != chosen["trial_id"]:
        missed = [f"{key} {best[key]:g}" if isinstance(best.get(key), (int, float)) else f"no {key} measured"
                  for key, bound in limits.items() if not _within(best, {key: bound})]
        line += (f"; the best trial overall, {best['trial_id']} ({objective} "
                 f"{leaderboard.format_value(best[objective])}), has {', '.join(missed)}")
    return line


def _has_checkpoint(sweep_dir: Path, trial_id: str) -> bool:
    try:
        checkpoint.find(sweep_dir, trial_id)
    except CheckpointMissing:
        return False
    return True


def _sweep_data(sweep_dir: Path, meta: dict) -> DatasetIndex:
    """The sweep's data set, indexed again and checked against the fingerprint the sweep recorded."""
    spec = results.saved_spec(sweep_dir)
    index = build_index(spec.data, spec.task)
    if meta.get("data_fingerprint") and index.fingerprint != meta["data_fingerprint"]:
        raise SweeperError(f"{sweep_dir}: the data changed since the sweep (fingerprint {index.fingerprint}, "
                           f"the sweep saw {meta['data_fingerprint']}); the export could not be checked against it")
    return index


def _ensemble(models: list):
    """One model averaging the members' outputs; each member resizes the input to its own size."""
    import keras

    size = max(m.inputs[0].shape[1] for m in models)
    inputs = keras.Input((size, size, 3), name="image")
    outputs = []
    for i, member in enumerate(models):
        x = inputs
        own = member.inputs[0].shape[1]
        if own != size:
            x = keras.layers.Resizing(own, own, interpolation="bilinear", name=f"resize_{i}")(x)
        outputs.append(keras.Model(member.inputs[0], member.outputs[0], name=f"member_{i}")(x))
    return keras.Model(inputs, keras.layers.Average(name="average")(outputs), name="sweeper_ensemble")


# --- formats -----------------------------------------------------------------------------------


def write_models(model, folder: Path, *, size: int, task: str, classes, calibration: np.ndarray | None = None) -> None:
    """Every format of the bundle; `calibration`: training images for an int8 TFLite model, or None."""
    import keras
    import tensorflow as tf

    model.save(folder / "model.keras")
    labels = list(classes)
    label_names = tf.constant(labels or [""])
    regression = task == "regression"

    def head(raw, labelled=True):
        if regression:
            return {"value": tf.reshape(raw, [-1])}
        probabilities = tf.concat([1 - raw, raw], axis=1) if raw.shape[-1] == 1 else raw
        out = {"probabilities": probabilities, "confidence": tf.reduce_max(probabilities, axis=-1)}
        if labelled:
            out["label"] = tf.gather(label_names, tf.argmax(probabilities, axis=-1))
        return out

    def resized(x):
        shape = tf.shape(x)
        return tf.cond(tf.logical_and(shape[-3] == size, shape[-2] == size), lambda: x,
                       lambda: tf.image.resize(x, (size, size), method="bilinear", antialias=True))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def serve(images_in):
        return head(model(resized(tf.cast(images_in, tf.float32)), training=False))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(encoded):  # what TF Serving's REST clients send: the files' bytes
        def decode(one):
            image = tf.io.decode_image(one, channels=3, expand_animations=False)
            return resized(tf.cast(tf.ensure_shape(image, [None, None, 3]), tf.float32))

        x = tf.map_fn(decode, encoded, fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
        return head(model(x, training=False))

    images_at_size = tf.TensorSpec([None, size, size, 3], tf.uint8, name="images")

    @tf.function(input_signature=[images_at_size])
    def fixed_size(images_in):  # TFLite: at the bundle's size; the labels travel inside the model
        return head(model(tf.cast(images_in, tf.float32), training=False))

    @tf.function(input_signature=[images_at_size])
    def numbers(images_in):  # ONNX: numbers only (the labels are in its metadata)
        return head(model(tf.cast(images_in, tf.float32), training=False), labelled=False)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="class_ids")])
    def class_names(class_ids):  # a TFLite signature: the model alone says what its outputs mean
        return {"labels": tf.gather(label_names, class_ids)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", serve)
    archive.add_endpoint("serve_bytes", serve_bytes)
    archive.add_endpoint("tflite", fixed_size)
    archive.write_out(str(folder / "saved_model"), verbose=False)

    # TFLite from a SavedModel of its own signatures: converting two signatures of the bundle's
    # SavedModel pulls `serve` in too (TF 2.21), whose resize has no TFLite kernel.
    signatures = {"tflite": fixed_size, **({} if regression else {"labels": class_names})}
    lite = keras.export.ExportArchive()
    lite.track(model)
    for name, function in signatures.items():
        lite.add_endpoint(name, function)
    with tempfile.TemporaryDirectory(prefix="sweeper-tflite-") as source:
        lite.write_out(source, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(source, signature_keys=list(signatures))
        (folder / "model.tflite").write_bytes(converter.convert())
        if calibration is not None:
            converter = tf.lite.TFLiteConverter.from_saved_model(source, signature_keys=list(signatures))
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: (("tflite", {"images": calibration[i:i + 1]})
                                                        for i in range(len(calibration)))
            (folder / "model_int8.tflite").write_bytes(converter.convert())
    _write_onnx(numbers, folder / "model.onnx", task=task, classes=labels)

    (folder / "labels.json").write_text(json.dumps({"task": task, "classes": labels}, indent=2))
    preprocessing = {
        "input": "RGB, uint8 0-255, channels last",
        "image_size": size,
        "resize": "EXIF orientation applied, then squashed to image_size x image_size with bilinear "
                  "resampling (PIL); sweeper's own `predict` reads files this way",
        "scaling": "inside the model: pass pixels as they are",
        "saved_model": "signature `serve`: images uint8 [N, H, W, 3] of any size, resized in the graph "
                       "(bilinear, antialiased; pass image_size images for results identical to sweeper's)",
        "saved_model_bytes": "signature `serve_bytes`: image_bytes string [N], each the bytes of a JPEG, PNG, "
                             "GIF or BMP file, decoded to RGB (EXIF orientation not applied) and resized in the "
                             "graph as `serve` does",
        "tflite": f"signature `tflite`: images uint8 [N, {size}, {size}, 3]"
                  + ("" if regression else "; signature `labels`: class_ids int32 [K] -> their names"),
        "onnx": f"input `images`: uint8 [N, {size}, {size}, 3]; metadata `task` and `labels` (a JSON list)",
        "outputs": ("value: [N]" if regression else
                    "probabilities: [N, classes] in labels.json order; label (not in ONNX) and confidence"),
    }
    (folder / "preprocessing.json").write_text(json.dumps(preprocessing, indent=2))


ONNX_OPSET = 17  # onnxruntime runs it; tf2onnx 1.17 writes up to 18


def _write_onnx(function, path: Path, *, task: str, classes: list[str]) -> None:
    """`function` (uint8 images at the bundle's size -> numbers) as an ONNX model; the task and the
    class names go in its metadata (onnxruntime: `session.get_modelmeta().custom_metadata_map`)."""
    import onnx
    import tf2onnx

    proto, _ = tf2onnx.convert.from_function(function, input_signature=function.input_signature, opset=ONNX_OPSET)
    onnx.helper.set_model_props(proto, {"task": task, "labels": json.dumps(classes)})
    path.write_bytes(proto.SerializeToString())


# --- the check ---------------------------------------------------------------------------------


def _check(model, folder: Path, index: DatasetIndex, pixels: np.ndarray, members: list[dict], objective: str,
           config, console: Console, trained_in: str = "float32") -> dict:
    """Every format's metrics on the validation split (and the test split); ParityError where they disagree.
    `model` is float32 whatever precision the trials `trained_in`."""
    from .model import compile_model

    task = index.task
    rows = index.indices("validation")
    x, y = pixels[rows], index.targets[rows]
    # The objective, computed by Keras the way the trials computed it.
    compile_model(model, config, task=task, n_classes=len(index.classes))
    measured = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    value = float(measured[objective.removeprefix("val_")])
    checks: dict = {"objective": objective, objective: value, "best_trial": float(members[0][objective]),
                    "trained_in": trained_in}
    agrees = METRIC_AGREES if trained_in == "float32" else REDUCED_PRECISION_AGREES
    if len(members) == 1 and abs(value - checks["best_trial"]) > agrees * max(1.0, abs(value)):
        raise ParityError(f"the exported model's {objective} on the validation split is {value:.6f}, but trial "
                          f"{members[0]['trial_id']} reported {checks['best_trial']:.6f} (computing in {trained_in}); "
                          "the bundle was not written")

    reference = to_probabilities(np.asarray(model.predict(x, batch_size=64, verbose=0), np.float64), task)
    outputs = {"model.keras": reference, **format_outputs(folder, x, task)}
    checks["formats"] = {}
    for name, out in outputs.items():
        checks["formats"][name] = {**scores(out, y, task, len(index.classes), "val"),
                                   "max_abs_difference": float(np.max(np.abs(out - reference)))}
        difference = checks["formats"][name]["max_abs_difference"]
        if name != "tflite_int8" and difference > FORMATS_AGREE:
            raise ParityError(f"{name} differs from the Keras model by up to {difference:.2e} on the validation "
                              f"split (allowed {FORMATS_AGREE:.0e}); the bundle was not written")
    if task == "classification":
        for name, names in labels_inside(folder, len(index.classes)).items():
            if names != list(index.classes):
                raise ParityError(f"{name} carries the labels {names}, not the data's {list(index.classes)}; "
                                  "the bundle was not written")
    test = index.indices("test")
    if len(test):
        out = to_probabilities(np.asarray(model.predict(pixels[test], batch_size=64, verbose=0), np.float64), task)
        checks["test"] = scores(out, index.targets[test], task, len(index.classes), "test")
    _print_checks(checks, members, console)
    return checks


def format_outputs(folder: Path, x: np.ndarray, task: str) -> dict[str, np.ndarray]:
    """What each written format (but the Keras file) outputs for the images `x`, as probabilities."""
    outputs = {"saved_model": _saved_model_out(folder, x, task),
               "saved_model_bytes": _saved_model_out(folder, x, task, as_files=True),
               "tflite": _tflite_out(folder / "model.tflite", x, task),
               "onnx": _onnx_out(folder / "model.onnx", x, task)}
    if (folder / "model_int8.tflite").is_file():
        outputs["tflite_int8"] = _tflite_out(folder / "model_int8.tflite", x, task)
    return outputs


def _saved_model_out(folder: Path, x: np.ndarray, task: str, *, as_files: bool = False) -> np.ndarray:
    """`serve` on the images `x`; with `as_files`, `serve_bytes` on them sent as PNG files, which
    are lossless, so it must give the same outputs."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(folder / "saved_model"))  # held: `serve` needs its variables alive
    key = "value" if task == "regression" else "probabilities"
    serve = loaded.serve_bytes if as_files else loaded.serve
    batches = (x[i:i + 64] for i in range(0, len(x), 64))
    return np.concatenate([serve(tf.constant([_png(image) for image in batch]) if as_files else batch)[key].numpy()
                           for batch in batches]).astype(np.float64)


def _png(image: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _tflite_out(path: Path, x: np.ndarray, task: str) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner("tflite")
    key = "value" if task == "regression" else "probabilities"
    return np.concatenate([runner(images=x[i:i + 32])[key] for i in range(0, len(x), 32)]).astype(np.float64)


def _onnx_out(path: Path, x: np.ndarray, task: str) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    key = "value" if task == "regression" else "probabilities"
    return np.concatenate([session.run([key], {"images": x[i:i + 64]})[0] for i in range(0, len(x), 64)]).astype(np.float64)


def labels_inside(folder: Path, classes: int) -> dict[str, list[str]]:
    """The names of the first `classes` classes as each model file carries them: {file: names}."""
    import onnxruntime
    from ai_edge_litert.interpreter import Interpreter

    inside = {}
    for name in ("model.tflite", "model_int8.tflite"):
        if (folder / name).is_file():
            interpreter = Interpreter(model_path=str(folder / name))
            if "labels" in interpreter.get_signature_list():
                names = interpreter.get_signature_runner("labels")(class_ids=np.arange(classes, dtype=np.int32))
                inside[name] = [b.decode() for b in names["labels"]]
    meta = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"]).get_modelmeta()
    inside["model.onnx"] = json.loads(meta.custom_metadata_map.get("labels", "[]"))
    return inside


def _print_checks(checks: dict, members: list[dict], console: Console) -> None:
    objective = checks["objective"]
    single = len(members) == 1
    console.print(f"{objective} on the validation split: {checks[objective]:.6g} "
                  + (f"(trial {members[0]['trial_id']} reported {checks['best_trial']:.6g})" if single
                     else f"(the best single trial: {checks['best_trial']:.6g})"), highlight=False)
    metrics = [k for k in next(iter(checks["formats"].values())) if k != "max_abs_difference"]
    table = Table(title="every format on the validation split", title_justify="left")
    for column in ("format", *metrics, "max |difference| from model.keras"):
        table.add_column(column, justify="left" if column == "format" else "right")
    for name, row in checks["formats"].items():
        table.add_row(name, *(f"{row[m]:.6g}" for m in metrics), f"{row['max_abs_difference']:.2e}")
    console.print(table)
    task = "regression" if "val_rmse" in metrics else "classification"
    drop = int8_drop(checks["formats"], task)
    if drop is not None:
        console.print(f"int8 TFLite: loses {drop:.2f} {_drop_unit(task)} against the float model on the "
                      "validation split", highlight=False)


def int8_drop(formats: dict, task: str) -> float | None:
    """What the int8 TFLite model loses against the float one on the validation split: points of
    accuracy, or the percentage by which its RMSE is higher (negative: it did better); None
    without an int8 model."""
    if "tflite_int8" not in formats:
        return None
    float_model, int8 = formats["model.keras"], formats["tflite_int8"]
    if task == "regression":
        return 100 * (int8["val_rmse"] - float_model["val_rmse"]) / float_model["val_rmse"] if float_model["val_rmse"] else 0.0
    return 100 * (float_model["val_accuracy"] - int8["val_accuracy"])


def _check_int8(checks: dict, task: str, max_drop: float | None) -> None:
    max_drop = INT8_MAX_DROP if max_drop is None else max_drop
    drop = int8_drop(checks["formats"], task)
    if drop is not None and drop > max_drop:
        raise ParityError(f"the int8 TFLite model loses {drop:.2f} {_drop_unit(task)} against the float model on the validation "
                          f"split (allowed: {max_drop:g}, --int8-max-drop); the bundle was not written")


def _drop_unit(task: str) -> str:
    return "% of RMSE" if task == "regression" else "points of accuracy"


# --- what the bundle says of itself --------------------------------------------------------------


def _manifest(sweep_dir: Path, meta: dict, index: DatasetIndex, members: list[dict], loaded: list, size: int,
              objective: str, checks: dict, folder: Path) -> dict:
    files = sorted(p.name for p in folder.iterdir())
    return {
        "format": FORMAT,
        "task": index.task,
        "classes": list(index.classes),
        "image_size": size,
        "objective": objective,
        "sweep": meta.get("name", sweep_dir.name),
        "members": [
            {"trial_id": row["trial_id"], "epoch": row.get("best_epoch"), objective: row[objective],
             "config": {k: v for k, v in vars(config).items()}}
            for row, (_, config) in zip(members, loaded)
        ],
        "checks": checks,
        "data_fingerprint": index.fingerprint,
        "versions": _versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": files + [MANIFEST, "model_card.md"],
    }


def _versions() -> dict[str, str]:
    versions = {"sweeper": __version__}
    for name, dist in (("tensorflow", "tensorflow-cpu"), ("tensorflow", "tensorflow"), ("keras", "keras"),
                       ("ray", "ray"), ("optuna", "optuna"), ("numpy", "numpy"), ("ai-edge-litert", "ai-edge-litert"),
                       ("tf2onnx", "tf2onnx"), ("onnxruntime", "onnxruntime")):
        if name not in versions:
            try:
                versions[name] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                pass
    return versions


def _model_card(sweep_dir: Path, manifest: dict) -> str:
    objective = manifest["objective"]
    checks = manifest["checks"]
    members = manifest["members"]
    kind = "one trial" if len(members) == 1 else f"an ensemble averaging the {len(members)} best trials"
    lines = [
        f"# Model card: {manifest['sweep']}",
        "",
        f"Exported by sweeper {manifest['versions']['sweeper']} on {manifest['created']} from {kind} of the sweep "
        f"`{sweep_dir.name}`.",  # the name only: a bundle that is shared carries no local paths
        "",
        f"- Task: {manifest['task']}" + (f", classes: {', '.join(manifest['classes'])}" if manifest["classes"] else ""),
        f"- Input: RGB images, {manifest['image_size']} x {manifest['image_size']} px (see preprocessing.json)",
        f"- Data fingerprint: `{manifest['data_fingerprint']}`",
        "- Loading: `saved_model/` needs TensorFlow alone, `model.tflite` LiteRT alone (its `labels` signature "
        "gives the class names) and `model.onnx` onnxruntime alone (its metadata `labels`); `model.keras` holds "
        "sweeper's `Preprocess` layer, so load it with `sweeper.load_bundle(folder)` (or `import sweeper.model` "
        "before `keras.saving.load_model`)",
        "",
        "## Configuration",
        "",
        "| trial | epoch | " + objective + " | " + " | ".join(members[0]["config"]) + " |",
        "|" + "---|" * (3 + len(members[0]["config"])),
    ]
    for m in members:
        lines.append(f"| {m['trial_id']} | {m['epoch']} | {leaderboard.format_value(m[objective])} | "
                     + " | ".join(leaderboard.format_value(v) if not isinstance(v, (list, tuple)) else str(list(v))
                                  for v in m["config"].values()) + " |")
    lines += ["", "## Metrics", "", f"{objective} on the validation split (model.keras): {checks[objective]:.6g}", "",
              "| split | format | metric | value |", "|---|---|---|---|"]
    for name, row in checks["formats"].items():
        lines += [f"| validation | {name} | {k} | {v:.6g} |" for k, v in row.items()]
    lines += [f"| test | model.keras | {k} | {v:.6g} |" for k, v in checks.get("test", {}).items()]
    lines += ["", "## Versions", ""] + [f"- {k}: {v}" for k, v in manifest["versions"].items()]
    spec = results.SweepFolder(sweep_dir).spec.read_text()
    spec = "\n".join(line for line in spec.splitlines() if not line.startswith("# The spec as run"))  # a local path
    lines += ["", "## The sweep's spec", "", "```yaml", spec.rstrip(), "```", ""]
    return "\n".join(lines)
