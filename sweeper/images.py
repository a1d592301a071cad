"""Decoding images into arrays, once per data set and size.

The decoded, resized images are kept as one .npy file per (data fingerprint, size) in the
cache folder, so that no epoch and no trial decodes a JPEG again; trials memory-map it. Its
manifest lists the file (path, size, modification time) behind each row: when the data set
changes (images added, one touched), the rows of files that did not change are copied from the
last entry of the same folder and only the others are decoded.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from filelock import FileLock
from PIL import Image, ImageOps

from . import cache
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


WINDOW = 64  # decoded images in flight: enough to keep every thread busy, a bound on memory


def decode_all(paths, size: int, path: Path, progress=None, max_pixels: int = DEFAULT_MAX_PIXELS,
               reuse: dict[int, tuple[np.ndarray, int]] | None = None) -> dict[int, str]:
    """Decode in parallel (PIL releases the GIL) straight into the .npy file `path`, in order, leaving
    unreadable images out as it goes. Returns {position: reason} of the bad files. `reuse`:
    {position: (array, row)} of images decoded before, copied instead of decoded.

    The data set is never held in memory (the file is memory-mapped; its pages are the system's to
    write out) and dropping an image costs no copy: the rows after it simply move up, and the
    file is cut to the rows kept. At most WINDOW decoded images wait to be written.
    """
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3))
    bad: dict[int, str] = {}

    def work(i: int) -> np.ndarray | str:
        if reuse and i in reuse:
            array, row = reuse[i]
            return np.array(array[row])
        try:
            return decode(paths[i], size, max_pixels)
        except ImageTooLarge as exc:
            return str(exc)
        except Exception as exc:  # PIL raises many types for broken files
            return f"unreadable image: {type(exc).__name__}: {exc}".splitlines()[0]

    def in_order():  # (position, image or reason), decoded in parallel
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            pending: deque = deque()
            for i in range(len(paths)):
                pending.append((i, pool.submit(work, i)))
                if len(pending) > WINDOW:
                    position, future = pending.popleft()
                    yield position, future.result()
            for position, future in pending:
                yield position, future.result()

    kept = 0
    for position, decoded in in_order():
        if isinstance(decoded, str):
            bad[position] = decoded
        else:
            out[kept] = decoded
            kept += 1
        if progress:
            progress()
    out.flush()
    del out
    if bad:
        _keep_first_rows(path, kept)
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
    return bad


def _keep_first_rows(path: Path, rows: int) -> None:
    """Cut an .npy file (version 1.0, C order) to its first `rows` rows, in place: its header is
    rewritten for the new shape, padded to its old length so the data does not move."""
    with open(path, "rb+") as f:
        if np.lib.format.read_magic(f) != (1, 0):
            raise ValueError(f"{path}: expected an .npy file of format version 1.0")
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
        offset = f.tell()
        header = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran_order,
                       "shape": (rows, *shape[1:])}).encode("latin1")
        length = offset - 10  # magic (6), version (2) and the header's length (2) come first
        f.seek(8)
        f.write(struct.pack("<H", length) + header.ljust(length - 1) + b"\n")
        f.truncate(offset + rows * int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize)


def cache_path(cache_dir: Path, index: DatasetIndex, size: int) -> Path:
    cap = "" if index.max_image_pixels == DEFAULT_MAX_PIXELS else f"-max{index.max_image_pixels}"  # skips differ
    return Path(cache_dir) / "images" / f"{index.fingerprint}-{size}px{cap}.npy"


def is_decoded(cache_dir: Path, index: DatasetIndex, size: int) -> bool:
    """Whether `load_images` would read these images from the cache rather than decode them."""
    path = cache_path(cache_dir, index, size)
    return path.is_file() or path.with_suffix(".skipped.json").is_file()


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
            tmp = path.with_suffix(".tmp.npy")  # one writer at a time: the lock is held
            files = _identities(index.paths)
            try:
                reuse = _decoded_before(cache_dir, index.folder, files, size, index.max_image_pixels)
                bad = decode_all(index.paths, size, tmp, progress, index.max_image_pixels, reuse)
                _check_policy(index, bad, on_bad_image)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            if bad:
                write_atomic(skipped_file, json.dumps(bad))
                index = index.without(bad)
                path = cache_path(cache_dir, index, size)
            cache.write_manifest(path, {
                "kind": "decoded", "data": index.folder, "image_size": size, "images": len(index.paths),
                "max_image_pixels": index.max_image_pixels, "reused": len(reuse),
                "files": [f for i, f in enumerate(files) if i not in bad], "skipped_file": skipped_file.name if bad else None,
            })
            os.replace(tmp, path)
            array = np.load(path, mmap_mode="r")
        cache.hold(path)
    return index, array


def _identities(paths) -> list[list]:
    """[path, bytes, modification time in ns] of each file: what a decoded row was made from."""
    found = []
    for path in paths:
        stat = os.stat(path)
        found.append([path, stat.st_size, stat.st_mtime_ns])
    return found


def _decoded_before(cache_dir: Path, folder: str, files: list[list], size: int,
                    max_pixels: int) -> dict[int, tuple[np.ndarray, int]]:
    """{position: (array, row)} of these files already decoded, unchanged, at this size: from the
    most recently used entry of the same folder (or none)."""
    for entry in reversed(cache.entries(cache_dir)):
        about = entry.about
        if (entry.kind, about.get("data"), about.get("image_size"), about.get("max_image_pixels")) != (
                "decoded", folder, size, max_pixels):
            continue
        try:
            array = np.load(entry.path, mmap_mode="r")
        except (OSError, ValueError):
            continue
        rows = {tuple(f): row for row, f in enumerate(about.get("files", []))}
        if array.shape != (len(rows), size, size, 3):
            continue
        return {i: (array, rows[tuple(f)]) for i, f in enumerate(files) if tuple(f) in rows}
    return {}


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


