"""Decoding images into arrays, once per data set and size.

The decoded, resized images are kept as one .npy file per (data fingerprint, size) in the
cache folder, so that no epoch and no trial decodes a JPEG again; trials memory-map it.
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from filelock import FileLock
from PIL import Image, ImageOps

from .data import DatasetIndex
from .errors import DataError
from .files import write_atomic
from .spec import DataSpec

DEFAULT_MAX_PIXELS = DataSpec.max_image_pixels


class ImageTooLarge(ValueError):
    """The file claims more pixels than `data.max_image_pixels`: decoding it could take gigabytes."""


def decode(path: str, size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """An RGB uint8 array of shape (size, size, 3): EXIF orientation applied, squashed to a square.

    The pixel cap is checked on the header, before any pixel is decoded; PIL's process-wide
    guard is left as it is (a program that loads a bundle keeps it).
    """
    try:
        opened = Image.open(path)
    except Image.DecompressionBombError as exc:  # over twice PIL's limit: PIL refuses it itself
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        raise ImageTooLarge(f"too large: {int(claimed[1]) if claimed else 0:,} pixels, "
                            f"over data.max_image_pixels ({max_pixels:,})") from None
    with opened as img:
        width, height = img.size
        if width * height > max_pixels:
            raise ImageTooLarge(f"too large: {width}×{height} pixels, over data.max_image_pixels ({max_pixels:,})")
        img.draft("RGB", (size, size))  # JPEG: let the decoder downscale by 2, 4 or 8 for free
        img = ImageOps.exif_transpose(img)
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit: scale to 8 bits instead of clipping
            img = Image.fromarray((np.asarray(img, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8))
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")  # transparent pixels become white, not black
            img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        if max(img.size) > 4 * size:
            img.thumbnail((2 * size, 2 * size), Image.Resampling.BILINEAR, reducing_gap=2.0)  # cheap first pass
        img = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.uint8)


def decode_all(paths, size: int, progress=None, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, dict[int, str]]:
    """Decode in parallel (PIL releases the GIL). Returns the array and {position: reason} of bad files."""
    out = np.zeros((len(paths), size, size, 3), dtype=np.uint8)
    bad: dict[int, str] = {}

    def work(i: int) -> None:
        try:
            out[i] = decode(paths[i], size, max_pixels)
        except ImageTooLarge as exc:
            bad[i] = str(exc)
        except Exception as exc:  # PIL raises many types for broken files
            bad[i] = f"unreadable image: {type(exc).__name__}: {exc}".splitlines()[0]

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for _ in pool.map(work, range(len(paths))):
            if progress:
                progress()
    return out, bad


def cache_path(cache_dir: Path, index: DatasetIndex, size: int) -> Path:
    cap = "" if index.max_image_pixels == DEFAULT_MAX_PIXELS else f"-max{index.max_image_pixels}"  # skips differ
    return Path(cache_dir) / "images" / f"{index.fingerprint}-{size}px{cap}.npy"


def load_images(
    index: DatasetIndex, size: int, cache_dir: Path, on_bad_image: str = "skip", progress=None
) -> tuple[DatasetIndex, np.ndarray]:
    """The index without unreadable images, and their decoded array (memory-mapped from the cache).

    Concurrent callers (trials, the driver) wait on a lock instead of decoding the same set twice.
    """
    path = cache_path(cache_dir, index, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    skipped_file = path.with_suffix(".skipped.json")  # bad files found earlier in this same set
    with FileLock(str(path) + ".lock"):
        bad = _read_skipped(skipped_file)
        if bad is not None:
            _check_policy(index, bad, on_bad_image)
            index = index.without(bad)
            path = cache_path(cache_dir, index, size)
        array = _open_cached(path, (len(index.paths), size, size, 3))
        if array is None:
            array, bad = decode_all(index.paths, size, progress, index.max_image_pixels)
            if bad:
                _check_policy(index, bad, on_bad_image)
                keep = np.array([i not in bad for i in range(len(index.paths))])
                write_atomic(skipped_file, json.dumps(bad))
                index, array = index.without(bad), array[keep]
                path = cache_path(cache_dir, index, size)
            tmp = path.with_suffix(".tmp.npy")  # one writer at a time: the lock is held
            with open(tmp, "wb") as f:
                np.save(f, array)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            array = np.load(path, mmap_mode="r")
    return index, array


def _read_skipped(path: Path) -> dict[int, str] | None:
    """The bad files recorded for this set; None when there is no record, or a damaged one."""
    try:
        return {int(i): str(r) for i, r in json.loads(path.read_text()).items()}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError):
        path.unlink(missing_ok=True)  # sweeper's own record, damaged: found again as the set is decoded
        return None


def _open_cached(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached array, memory-mapped; None when absent, or damaged (truncated, another shape),
    which is then removed to be decoded again: a cache is never trusted blindly."""
    if not path.exists():
        return None
    try:
        array = np.load(path, mmap_mode="r")
        if array.shape == shape and array.dtype == np.uint8:
            return array
    except (OSError, ValueError):
        pass
    path.unlink(missing_ok=True)
    return None


def _check_policy(index: DatasetIndex, bad: dict[int, str], on_bad_image: str) -> None:
    if bad and on_bad_image == "error":
        first = min(bad)
        raise DataError(f"{index.paths[first]}: {bad[first]} (set data.on_bad_image: skip to skip it)")


