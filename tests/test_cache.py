"""The cache folder: entries with manifests, decoded rows reused when a data set changes, listing
and pruning that never remove what a running process uses."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from sweeper import cache, images
from sweeper.cli import main
from sweeper.data import build_index
from sweeper.spec import DataSpec
from sweeper.units import format_size


def _folder(root, count, start=0):
    rng = np.random.default_rng(start)
    for i in range(start, start + count):
        label = "even" if i % 2 == 0 else "odd"
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / label / f"{i:03d}.png")
    return root


def _load(root, cache_dir, size=16):
    return images.load_images(build_index(DataSpec(train=root), "classification"), size, cache_dir)


def _counting_decodes(monkeypatch):
    decoded = []
    real = images.decode

    def counted(path, size, max_pixels=images.DEFAULT_MAX_PIXELS):
        decoded.append(os.path.basename(path))
        return real(path, size, max_pixels)

    monkeypatch.setattr(images, "decode", counted)
    return decoded


def test_adding_or_touching_images_decodes_only_those(tmp_path, monkeypatch):
    data, cache_dir = _folder(tmp_path / "data", 30), tmp_path / "cache"
    decoded = _counting_decodes(monkeypatch)
    _load(data, cache_dir)
    assert len(decoded) == 30

    decoded.clear()
    _folder(data, 5, start=30)  # five new images
    index, pixels = _load(data, cache_dir)
    assert sorted(decoded) == [f"{i:03d}.png" for i in range(30, 35)]
    os.utime(data / "odd" / "007.png", ns=(time.time_ns(), time.time_ns() + 10**9))  # one touched
    decoded.clear()
    index, pixels = _load(data, cache_dir)
    assert decoded == ["007.png"]
    # Every row is what decoding the file gives, in the index's order.
    expected = np.stack([images.decode(p, 16) for p in index.paths])
    np.testing.assert_array_equal(np.asarray(pixels), expected)
    newest = max(cache.entries(cache_dir), key=lambda e: e.last_used)
    assert newest.about["reused"] == 34 and newest.about["images"] == 35 and newest.about["data"] == str(data)


def test_the_list_names_each_entry_its_data_set_size_and_last_use(tmp_path, capsys):
    data, cache_dir = _folder(tmp_path / "data", 12), tmp_path / "cache"
    _load(data, cache_dir, size=16)
    _load(data, cache_dir, size=24)
    assert main(["cache", "list", "--cache-dir", str(cache_dir)]) == 0
    out = capsys.readouterr().out
    assert "images at 16 px" in out and "images at 24 px" in out and str(data) in out
    total = sum(e.size for e in cache.entries(cache_dir))
    assert total > 12 * (16 * 16 + 24 * 24) * 3 and f"2 entries, {format_size(total)}" in out
    assert "yes" in out  # this process holds what it loaded


def test_prune_removes_old_and_least_recently_used_entries_but_never_one_in_use(tmp_path, capsys):
    data, cache_dir = _folder(tmp_path / "data", 12), tmp_path / "cache"
    mine = cache_dir / "my_notes.txt"  # not sweeper's: never touched
    theirs = cache_dir / "images" / "my_array.npy"  # where sweeper's arrays go, but with no manifest
    theirs.parent.mkdir(parents=True)
    mine.write_text("keep")
    np.save(theirs, np.zeros(3))
    for size in (16, 20, 24, 28):
        _load(data, cache_dir, size=size)
    cache.release_all()  # as if this process had ended: only the holder below uses an entry
    by_size = {e.about["image_size"]: e for e in cache.entries(cache_dir)}
    holder = subprocess.Popen(  # another process (a running sweep) uses the 20 px entry
        [sys.executable, "-c", "import sys; from sweeper import cache; cache.hold(sys.argv[1]); print('held', flush=True); "
         "sys.stdin.read()", str(by_size[20].path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        now = time.time()
        for size, days in ((16, 40), (20, 35), (24, 2), (28, 1)):  # last used that many days ago
            os.utime(by_size[size].manifest, (now - days * 86400, now - days * 86400))
        assert main(["cache", "prune", "--cache-dir", str(cache_dir), "--older-than", "30d"]) == 0
        out = capsys.readouterr().out
        assert "removed 1 entry (" in out and "kept 1 that running sweeps use" in out
        assert sorted(e.about["image_size"] for e in cache.entries(cache_dir)) == [20, 24, 28]
        assert not by_size[16].path.exists() and not by_size[16].manifest.exists()

        # Within a size: the least recently used go first (28 px, the newest, is kept).
        keep = by_size[28].size + by_size[20].size
        assert main(["cache", "prune", "--cache-dir", str(cache_dir), "--max-size", str(keep)]) == 0
        assert sorted(e.about["image_size"] for e in cache.entries(cache_dir)) == [20, 28]
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert main(["cache", "prune", "--cache-dir", str(cache_dir), "--max-size", "0"]) == 0
    assert cache.entries(cache_dir) == [] and mine.read_text() == "keep" and np.load(theirs).shape == (3,)
    # Nothing of the entries is left but their empty lock files (a process may be waiting on one).
    assert {p.suffix for p in (cache_dir / "images").iterdir() if p != theirs} == {".lock"}


def test_a_pruned_entry_is_decoded_again_when_next_needed(tmp_path):
    data, cache_dir = _folder(tmp_path / "data", 6), tmp_path / "cache"
    _, first = _load(data, cache_dir)
    first = np.asarray(first).copy()
    cache.release_all()
    assert main(["cache", "prune", "--cache-dir", str(cache_dir), "--max-size", "0"]) == 0
    _, again = _load(data, cache_dir)
    np.testing.assert_array_equal(np.asarray(again), first)


@pytest.mark.parametrize("argv, message", [
    (["cache", "prune", "--cache-dir", "{tmp}"], "give --max-size, --older-than or both"),
    (["cache", "prune", "--cache-dir", "{tmp}", "--max-size", "lots"], "'lots' is not a size"),
    (["cache", "prune", "--cache-dir", "{tmp}", "--older-than", "30"], "'30' is not an age"),
    (["cache", "list", "--cache-dir", "{tmp}/nowhere"], "nowhere: no such folder"),
])
def test_bad_cache_arguments_exit_2_in_one_line(tmp_path, capsys, argv, message):
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_pruning_an_entry_removes_its_record_of_unreadable_files(tmp_path):
    data, cache_dir = _folder(tmp_path / "data", 6), tmp_path / "cache"
    (data / "odd" / "broken.png").write_bytes(b"not a png")
    index, _ = _load(data, cache_dir)
    assert len(index.paths) == 6 and len(index.skipped) == 1
    assert len(list((cache_dir / "images").glob("*.skipped.json"))) == 1
    cache.release_all()
    assert main(["cache", "prune", "--cache-dir", str(cache_dir), "--max-size", "0"]) == 0
    assert {p.suffix for p in (cache_dir / "images").iterdir()} == {".lock"}


def test_images_found_decoded_in_the_cache_are_said_to_be_read_and_their_bar_filled(tmp_path):
    """Read from the cache, the images advance no bar: it once sat at 0/6 under "decoding images"."""
    from io import StringIO

    from conftest import write_spec
    from rich.console import Console

    from sweeper.preparation import decode_data
    from sweeper.spec import load_spec

    _folder(tmp_path / "data", 6)
    spec = load_spec(write_spec(tmp_path, "name: t\ndata: {train: data}\nimage_size: 16\nweights: none\n"
                                          "space: {backbone: simple_cnn}\n"))
    index = build_index(spec.data, spec.task)
    printed = []
    for _ in range(2):  # off a terminal, each bar prints once, as it ended
        out = StringIO()
        decode_data(spec, index, tmp_path / "cache", Console(file=out, width=150))
        printed.append([line.split()[:-1] for line in out.getvalue().splitlines() if "px" in line][0])
    first, again = printed
    assert first[:4] == ["decoding", "images", "at", "16"] and first[-1] == "6/6"
    assert " ".join(again).startswith("reading the images decoded at 16 px from the cache") and again[-1] == "6/6"
