"""A deployable bundle, as `sweeper export` writes it, and predictions with it.

    bundle.json         what the bundle holds: task, classes, input size, the trials it came from
    model.keras         the whole model (one trial's, or the average of several), RGB 0-255 in
    saved_model/        TensorFlow SavedModel; `serve` takes uint8 RGB images of any size
    model.tflite        float TFLite (model_int8.tflite too, with --int8); uint8 at the input size
    labels.json, preprocessing.json, model_card.md

Images are read exactly as the sweep read them (`images.decode`: EXIF orientation, squashed to
a square, bilinear), so a bundle sees what its trials saw.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from .errors import SweeperError
from .native_stderr import quiet_native_stderr

MANIFEST = "bundle.json"
PREDICT_BATCH = 256  # images decoded and predicted at a time: a bound on memory, whatever the number of files
FORMAT = 1
REQUIRED = ("format", "task", "classes", "image_size", "members", "files")
MIN_SIZE, MAX_SIZE = 8, 1024  # the input sizes a spec allows (spec.py), so the only sizes a bundle can have


def read_manifest(folder: Path) -> dict:
    """The bundle's manifest, checked against the files beside it; a clear error when it does not hold."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise SweeperError(f"{folder}: not a sweeper bundle (no {MANIFEST}); make one with `sweeper export`")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise SweeperError(f"{path}: not valid JSON ({exc})") from None
    missing = [key for key in REQUIRED if key not in manifest]
    if missing:
        raise SweeperError(f"{path}: missing {', '.join(missing)}")
    if manifest["format"] != FORMAT:
        raise SweeperError(f"{path}: bundle format {str(manifest['format'])[:20]}; this sweeper reads format {FORMAT}")
    _check_manifest(path, manifest)
    absent = [name for name in manifest["files"] if not (folder / name).exists()]
    if absent:
        raise SweeperError(f"{folder}: the bundle is incomplete: {', '.join(absent)} missing")
    return manifest


def _check_manifest(path: Path, manifest: dict) -> None:
    """bundle.json is not trusted: `image_size: 100000` once had predict killed for memory at 24 GB."""
    task, classes, size, files = manifest["task"], manifest["classes"], manifest["image_size"], manifest["files"]
    if task not in ("classification", "regression"):
        raise SweeperError(f"{path}: task must be classification or regression, not {str(task)[:40]!r}")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes) or len(set(classes)) != len(classes):
        raise SweeperError(f"{path}: classes must be a list of distinct names")
    if task == "classification" and len(classes) < 2:
        raise SweeperError(f"{path}: a classification bundle needs at least 2 classes, has {len(classes)}")
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise SweeperError(f"{path}: image_size must be a whole number of pixels from {MIN_SIZE} to {MAX_SIZE}, "
                           f"not {str(size)[:20]}")
    if not isinstance(files, list) or not all(isinstance(f, str) and f and "/" not in f and f not in (".", "..")
                                              for f in files):
        raise SweeperError(f"{path}: files must list the names of the files beside it")


@dataclass
class Bundle:
    folder: Path
    manifest: dict
    model: object  # keras.Model

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def classes(self) -> list[str]:
        return self.manifest["classes"]

    @property
    def image_size(self) -> int:
        return self.manifest["image_size"]

    def outputs(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities (N, classes), or values (N,), for uint8 RGB images at the bundle's size."""
        with quiet_native_stderr():  # TensorFlow's first predict logs from C++ (devices, XLA)
            raw = np.asarray(self.model.predict(pixels, batch_size=32, verbose=0), dtype=np.float64)
        return to_probabilities(raw, self.task)

    def predict(self, items: Iterable[str | Path | np.ndarray]) -> list[dict]:
        """One dict per item: `path`, `label` and `confidence` (or `value`, for regression).

        Items are image files or RGB arrays of any size. A file that cannot be read gets `error`
        instead, as the sweep would have skipped it.
        """
        return [row for batch in self.predict_batches(items) for row in batch]

    def predict_batches(self, items: Iterable[str | Path | np.ndarray], batch_size: int = PREDICT_BATCH):
        """`predict`, a batch at a time (a generator of lists of dicts): only one batch of decoded
        images is held, so any number of files takes the same memory, and rows come as they are ready."""
        if isinstance(items, (str, os.PathLike)) or (isinstance(items, np.ndarray) and items.ndim == 3):
            items = [items]  # one image, not its characters or its rows
        numbered = enumerate(items)
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:  # PIL releases the GIL
            while batch := list(islice(numbered, batch_size)):
                read = list(pool.map(self._read, batch))
                good = [i for i, (_, pixels) in enumerate(read) if pixels is not None]
                results = [row for row, _ in read]
                if good:
                    outputs = self.outputs(np.stack([read[i][1] for i in good]))
                    for i, output in zip(good, outputs):
                        results[i].update(describe(output, self.task, self.classes))
                yield results

    def _read(self, numbered: tuple[int, object]) -> tuple[dict, np.ndarray | None]:
        """({"path": name}, pixels), or ({"path": name, "error": why}, None) for a file that cannot be read."""
        from .images import ImageTooLarge

        i, item = numbered
        name = f"array[{i}]" if isinstance(item, np.ndarray) else str(item)
        try:
            return {"path": name}, read_image(item, self.image_size)
        except ImageTooLarge as exc:
            return {"path": name, "error": str(exc)}, None
        except Exception as exc:  # PIL raises many types for broken files
            return {"path": name, "error": f"unreadable image: {type(exc).__name__}: {exc}".splitlines()[0]}, None


def load_bundle(path: str | Path) -> Bundle:
    """A bundle written by `sweeper export`, ready to predict: `load_bundle(dir).predict(["cat.jpg"])`."""
    folder = Path(path)
    manifest = read_manifest(folder)
    # TensorFlow's start-up lines (oneDNN, CPU features, CUDA) are not for a script's or notebook's stderr.
    with quiet_native_stderr():
        import keras

        from . import model as _registers_custom_layers  # noqa: F401  (Preprocess)

        if any(str(m.get("config", {}).get("backbone", "")).startswith("hub:") for m in manifest.get("members", [])):
            import keras_hub  # noqa: F401  (registers the layers of KerasHub backbones)
        try:
            model = keras.saving.load_model(folder / "model.keras", compile=False, safe_mode=True)
        except Exception as exc:  # missing, truncated or not a Keras archive: Keras' own words run long
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SweeperError(f"{folder / 'model.keras'}: cannot be loaded ({type(exc).__name__}: {first[:200]}); "
                               "export the bundle again") from None
    n_out = model.outputs[0].shape[-1]
    expected = 1 if manifest["task"] == "regression" or len(manifest["classes"]) == 2 else len(manifest["classes"])
    if n_out != expected:
        raise SweeperError(f"{folder}: model.keras has {n_out} outputs but {MANIFEST} describes {expected}")
    return Bundle(folder, manifest, model)


def read_image(item: str | Path | np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    from .images import decode

    if not isinstance(item, np.ndarray):
        return decode(str(item), size)
    array = np.asarray(item)
    if array.dtype != np.uint8:
        raise ValueError(f"arrays must be uint8 RGB (0-255), got {array.dtype}")
    if array.shape[:2] == (size, size) and array.ndim == 3 and array.shape[2] == 3:
        return array
    return np.asarray(Image.fromarray(array).convert("RGB").resize((size, size), Image.Resampling.BILINEAR))


def to_probabilities(raw: np.ndarray, task: str) -> np.ndarray:
    """Model outputs as (N, classes) probabilities; a sigmoid's one column becomes two. Values stay (N,)."""
    if task == "regression":
        return raw.reshape(-1)
    return np.concatenate([1 - raw, raw], axis=1) if raw.shape[1] == 1 else raw


def describe(output, task: str, classes: list[str]) -> dict:
    if task == "regression":
        return {"value": float(output)}
    # Ties go to the first class, as Keras' accuracy (p > 0.5) counts a sigmoid's 0.5.
    best = int(np.argmax(output))
    return {"label": classes[best], "confidence": float(output[best])}
