"""Nothing a user owns is lost: each case is run as a user runs it (the CLI, its exit code, its
one-line message), and every file that existed before is checked to be unchanged after."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from sweeper import results
from sweeper.bundle import MANIFEST
from sweeper.cli import main
from sweeper.files import write_atomic


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under `folder`."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def _sweep(results_dir: Path) -> Path:
    """A sweep folder as `sweeper run` leaves one, with its cache beside it (no trial needed:
    every case below is refused before a trial is read)."""
    sweep = results_dir / "mine"
    (sweep / "experiment").mkdir(parents=True)
    (results_dir / ".cache").mkdir()
    (results_dir / ".cache" / "pixels.npy").write_bytes(b"decoded images")
    (sweep / "spec.yaml").write_text("name: mine\n")
    (sweep / "leaderboard.json").write_text("[]")
    results.write_meta(sweep, {"spec_path": str(results_dir / "spec.yaml"), "name": "mine", "state": "finished",
                               "experiment": str(sweep / "experiment"),
                               "options": {"cache_dir": str(results_dir / ".cache")}})
    return sweep


def _export(sweep: Path, out: Path, *flags: str) -> int:
    return main(["export", str(sweep), "--out", str(out), *flags])


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_export_force_refuses_a_folder_that_is_not_a_bundle(tmp_path, capsys):
    sweep = _sweep(tmp_path / "results")
    thesis = tmp_path / "thesis"
    (thesis / "chapters").mkdir(parents=True)
    (thesis / "chapters" / "one.tex").write_text("four years of work")
    before = snapshot(tmp_path)
    assert _export(sweep, thesis, "--force") == 2
    assert "is not a sweeper bundle (no readable bundle.json); --force replaces only a bundle" in _one_line(capsys)
    assert _export(sweep, thesis) == 2
    assert "already exists; choose another --out, or pass --force" in _one_line(capsys)
    (tmp_path / "notes.txt").write_text("a file")
    before = snapshot(tmp_path)
    assert _export(sweep, tmp_path / "notes.txt", "--force") == 2
    assert "exists and is not a sweeper bundle folder" in _one_line(capsys)
    assert snapshot(tmp_path) == before


def test_export_force_refuses_a_bundle_someone_added_files_to(tmp_path, capsys):
    sweep = _sweep(tmp_path / "results")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / MANIFEST).write_text(json.dumps({"format": 1, "files": [MANIFEST, "model.keras"]}))
    (bundle / "model.keras").write_bytes(b"weights")
    (bundle / "my_notes.md").write_text("how we deploy it")
    before = snapshot(tmp_path)
    assert _export(sweep, bundle, "--force") == 2
    assert "the bundle holds files export did not write ('my_notes.md')" in _one_line(capsys)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("target, what", [
    ("results", "a folder that holds the sweep"),  # the typo for results/bundle that once deleted every sweep
    ("results/mine", "that is the sweep"),
    ("results/mine/experiment", "that is the sweep's experiment"),
    ("results/.cache", "that is the cache"),
    (".", "that is the working directory"),
    ("..", "a folder that holds the working directory"),
    ("home", "that is your home folder"),
    ("/", "the root folder"),
])
def test_export_never_replaces_the_sweep_its_cache_or_a_folder_holding_them(tmp_path, monkeypatch, capsys, target, what):
    sweep = _sweep(tmp_path / "work" / "results")
    monkeypatch.chdir(tmp_path / "work")
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    out = tmp_path / "home" if target == "home" else Path(target)
    before = snapshot(tmp_path)
    assert _export(sweep, out, "--force") == 2
    err = _one_line(capsys)
    assert what in err and "give the bundle a folder of its own" in err, err
    assert snapshot(tmp_path) == before


def test_export_of_a_folder_that_is_not_a_sweep_is_one_line(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    assert _export(tmp_path / "photos", tmp_path / "bundle") == 2
    assert "no spec.yaml or sweep.json here; is this a sweep folder" in _one_line(capsys)
    assert not (tmp_path / "bundle").exists()


@pytest.mark.parametrize("content", [b"", b"[{\"trial_id\": \"a\", \"sta", b"{}", b"\x89PNG\r\n\x1a\n\x00\xff",
                                     b"[1, 2]"])
def test_a_damaged_leaderboard_is_one_line_for_leaderboard_report_and_export(tmp_path, capsys, content):
    sweep = _sweep(tmp_path / "results")
    (sweep / "leaderboard.json").write_bytes(content)
    before = snapshot(tmp_path)
    for argv in (["leaderboard", str(sweep)], ["export", str(sweep), "--out", str(tmp_path / "b")]):
        assert main(argv) == 2, argv
        err = _one_line(capsys)
        assert f"{sweep / 'leaderboard.json'}: " in err and ("damaged" in err or "not a leaderboard" in err), err
    assert snapshot(tmp_path) == before


def test_atomic_writes_use_unique_temp_names_and_leave_none_behind(tmp_path, monkeypatch):
    target = tmp_path / "leaderboard.json"
    (tmp_path / ".leaderboard.json.tmp").write_text("someone else's temp file")  # the old fixed name
    write_atomic(target, "[]")
    assert target.read_text() == "[]"
    assert (tmp_path / ".leaderboard.json.tmp").read_text() == "someone else's temp file"

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        write_atomic(target, "[1]")
    assert target.read_text() == "[]"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".leaderboard.json.tmp", "leaderboard.json"]


# --- a results folder runs no code ----------------------------------------------------------------


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_resume_refuses_a_tampered_state_and_runs_nothing_in_it(tmp_path, digits_dir, capsys):
    """One crafted key in Tune's experiment state once ran `os.system` at resume."""
    import pickle

    from fault_injection import SPEC

    sweep = _sweep(tmp_path / "results")
    (sweep / "spec.yaml").write_text(SPEC.format(digits=digits_dir, trials=2, epochs=2, seed=0))
    results.mark(sweep, "interrupted")
    marker = tmp_path / "pwned"
    state = {"trial_data": [[json.dumps({"trial_id": "a", "placement_group_factory": pickle.dumps(_RunsCode(marker)).hex()}),
                             "{}"]], "runner_data": {}}
    (sweep / "experiment" / "experiment_state-2026-12-01_00-00-00.json").write_text(json.dumps(state))
    (sweep / "leaderboard.json").write_text(json.dumps([{"trial_id": "a", "status": "running"}]))
    before = snapshot(tmp_path)
    assert main(["resume", str(sweep)]) == 2
    err = _one_line(capsys)
    assert "experiment_state-2026-12-01_00-00-00.json: refused: it names posix.system" in err, err
    assert not marker.exists()
    after = snapshot(tmp_path)
    after.pop("results/mine/.driver.lock")  # the lock resume took, naming itself
    assert after == before


def test_the_verifier_refuses_every_way_a_pickle_runs_code_and_passes_real_state():
    import pickle

    from sweeper.saved_state import UnsafeState, verify_pickle
    from sweeper.tuner import trial_dirname

    class CallsAFunction:  # a listed function, called rather than referenced
        def __reduce__(self):
            return (trial_dirname, (None,))

    for payload in (pickle.dumps(_RunsCode(Path("x"))), pickle.dumps(_RunsCode(Path("x")), protocol=0), pickle.dumps(eval),
                    pickle.dumps(CallsAFunction()), b"\x80\x04\x95"):
        with pytest.raises(UnsafeState):
            verify_pickle(payload)
    # A hex string of Tune's JSON that only starts like a pickle (trial id 806c9004: PROTO, then
    # protocol 0x6c) is let pass; one that is a pickle is still checked, even cut short.
    verify_pickle(bytes.fromhex("806c9004"), maybe_not_a_pickle=True)
    from sweeper.saved_state import check_experiment_state

    with tempfile.TemporaryDirectory() as folder:  # how it was met: a real sweep's trial id
        state = {"trial_data": [[json.dumps({"trial_id": "806c9004"}), "{}"]], "runner_data": {}}
        (Path(folder) / "experiment_state-2026-12-02_15-17-31.json").write_text(json.dumps(state))
        check_experiment_state(folder, trials_recorded=1)
    with pytest.raises(UnsafeState):
        verify_pickle(pickle.dumps(_RunsCode(Path("x")))[:-1], maybe_not_a_pickle=True)
    # What Tune and Optuna save for a sweeper sweep passes (the SIGKILL test resumes real ones).
    import numpy as np
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    verify_pickle(pickle.dumps({"study": study, "rng": np.random.RandomState(0), "a": np.arange(3)}))


# --- user text is printed as text, never as rich markup -------------------------------------------

MARKUP = "IMG [edited] [/x] [bold]"


def test_markup_in_a_path_or_an_error_is_printed_as_it_is(tmp_path, capsys):
    folder = tmp_path / MARKUP  # '/x]' makes it two folders deep
    folder.mkdir(parents=True)
    assert main(["run", str(folder / "spec.yaml")]) == 2
    err = _one_line(capsys)
    assert f"{folder / 'spec.yaml'}" in err, err

    sweep = _sweep(tmp_path / "results")
    rows = [{"trial_id": "a1", "status": "error", "epochs": 0, "error": f"ValueError: {MARKUP}"}]
    (sweep / "leaderboard.json").write_text(json.dumps(rows))
    assert main(["leaderboard", str(sweep)]) == 0
    assert f"trial a1 failed: ValueError: {MARKUP}" in capsys.readouterr().out


def test_class_names_with_brackets_show_in_the_data_summary(capsys):
    import numpy as np
    from rich.console import Console

    from sweeper.data import DatasetIndex
    from sweeper.preparation import print_data_summary

    index = DatasetIndex(paths=("/a.png", "/b.png"), targets=np.array([0, 1]), splits=np.array(["train", "train"]),
                         classes=("[bold]cats", "dogs [/x]"), skipped=(("/c [edited].png", "unreadable [word]"),))
    index.__dict__["fingerprint"] = "f" * 16  # no files to stat
    print_data_summary(index, Console(width=200))
    out = capsys.readouterr().out
    assert "[bold]cats" in out and "dogs [/x]" in out and "/c [edited].png (unreadable [word])" in out


# --- a bundle's manifest is checked, not trusted ----------------------------------------------------


@pytest.mark.parametrize("change, message", [
    ({"image_size": 100000}, "image_size must be a whole number of pixels from 8 to 1024, not 100000"),
    ({"image_size": "96"}, "image_size must be a whole number"),
    ({"classes": ["cat", "cat"]}, "classes must be a list of distinct names"),
    ({"classes": ["cat"]}, "needs at least 2 classes, has 1"),
    ({"task": "segmentation"}, "task must be classification or regression"),
    ({"files": ["../../etc/passwd"]}, "files must list the names of the files beside it"),
])
def test_predict_refuses_a_manifest_that_does_not_hold(tmp_path, capsys, change, message):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    manifest = {"format": 1, "task": "classification", "classes": ["cat", "dog"], "image_size": 96, "members": [],
                "files": [MANIFEST]}
    (bundle / MANIFEST).write_text(json.dumps({**manifest, **change}))
    (tmp_path / "cat.jpg").write_bytes(b"")
    assert main(["predict", str(bundle), str(tmp_path / "cat.jpg")]) == 2
    assert message in _one_line(capsys)


# --- bad input: one line naming the problem, exit 2, nothing written ------------------------------


def _classes(root: Path, names=("cats", "dogs"), per_class: int = 4) -> Path:
    from PIL import Image

    for c, name in enumerate(names):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("RGB", (16, 16), (40 * i, 90 * c, 0)).save(root / name / f"{i}.png")
    return root


def _csv_rows() -> str:
    return "".join(f"train/{c}/{i}.png,{c}\n" for c in ("cats", "dogs") for i in range(4))


BAD_SPECS = {
    "not-utf8": (lambda d: "data: {train: train}\nspace: {backbone: simple_cnn}\nname: caf\xe9\n".encode("latin-1"),
                 "not UTF-8 text (byte 0xe9 at offset"),
    "duplicate-key": (lambda d: "data: {train: train}\nspace: {backbone: simple_cnn}\nbudget: {trials: 10}\n"
                                "budget: {trials: 50}\n", "'budget' is given twice"),
    "seed-2**32": (lambda d: "data: {train: train}\nspace: {backbone: simple_cnn}\nbudget: {seed: 4294967296}\n",
                   "budget.seed: 4294967296 must be between 0 and 4294967295"),
    "trials-10**30": (lambda d: f"data: {{train: train}}\nspace: {{backbone: simple_cnn}}\nbudget: {{trials: {10**30}}}\n",
                      "budget.trials: 1000000000000000000000000000000 must be between 1 and 1000000"),
    "alias-bomb": (lambda d: "data: {train: train}\nspace:\n  backbone: [&a [" + ",".join(['"xxxxxxxxxx"'] * 9) + "], "
                   + ", ".join(f"&{n} [" + ",".join([f"*{p}"] * 9) + "]" for p, n in zip("abcdefgh", "bcdefghi")) + "]\n",
                   "space.backbone: unknown backbone ['xxxxxxxxxx', 'xxxxxxxxxx', 'xxxxxxxxxx', 'xxxxxxxxxx', 'xxxxxxxxxx', 'xxxxxxxxxx', ...]"),
    "csv-only-blank-lines": (lambda d: (d / "labels.csv").write_text("path,label\n\n\n\n") and
                             "data: {csv: labels.csv}\nspace: {backbone: simple_cnn}\n",
                             "labels.csv: the CSV has no rows (only a header and blank lines)"),
    "csv-nul-byte": (lambda d: (d / "labels.csv").write_text("path,label\ntrain/cats/0.png\x00.png,cats\n" + _csv_rows())
                     and "data: {csv: labels.csv}\nspace: {backbone: simple_cnn}\n", "line 2: 'train/cats/0.png\\x00.png' holds a NUL byte"),
    "csv-300-char-name": (lambda d: (d / "labels.csv").write_text("path,label\n" + "a" * 300 + ".png,cats\n" + _csv_rows())
                          and "data: {csv: labels.csv}\nspace: {backbone: simple_cnn}\n",
                          "cannot be a file here (File name too long)"),
    "csv-duplicate-column": (lambda d: (d / "labels.csv").write_text("path,label,label\n" + _csv_rows().replace("\n", ",x\n"))
                             and "data: {csv: labels.csv}\nspace: {backbone: simple_cnn}\n",
                             "labels.csv: column 'label' appears twice in the header"),
    "one-class": (lambda d: "data: {train: one}\nspace: {backbone: simple_cnn}\n", "only one class ('cats')"),
}


@pytest.mark.parametrize("case", BAD_SPECS)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, case):
    make, message = BAD_SPECS[case]
    _classes(tmp_path / "train")
    _classes(tmp_path / "one", names=("cats",))
    text = make(tmp_path)
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(text if isinstance(text, bytes) else text.encode())
    before = snapshot(tmp_path)
    assert main(["run", str(spec), "--dry-run"]) == 2  # --dry-run indexes the data too
    err = _one_line(capsys)
    assert message in err and len(err) < 400, err
    assert snapshot(tmp_path) == before


def test_a_file_name_that_is_not_utf8_simply_works(tmp_path, capsys):
    """Zips made on Windows carry latin-1 names: they index, hash, decode and print."""
    from sweeper.data import build_index
    from sweeper.images import load_images
    from sweeper.spec import load_spec

    train = _classes(tmp_path / "train")
    latin1 = os.fsdecode(bytes(train / "cats") + b"/caf\xe9.png")
    os.link(train / "cats" / "0.png", latin1)
    spec = tmp_path / "spec.yaml"
    spec.write_text("data: {train: train}\nspace: {backbone: simple_cnn}\nweights: none\nimage_size: 32\n")
    assert main(["run", str(spec), "--dry-run"]) == 0
    assert "data: 9 images, 2 classes" in capsys.readouterr().out
    index = build_index(load_spec(spec).data, "classification")
    cleaned, pixels = load_images(index, 32, tmp_path / "cache")
    assert latin1 in cleaned.paths and pixels.shape == (9, 32, 32, 3) and not cleaned.skipped


def test_a_cache_dir_that_is_a_file_is_refused_and_leaves_no_sweep_folder(tmp_path, capsys):
    _classes(tmp_path / "train")
    spec = tmp_path / "spec.yaml"
    spec.write_text("data: {train: train}\nspace: {backbone: simple_cnn}\nweights: none\nimage_size: 32\n")
    (tmp_path / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    assert main(["run", str(spec), "--out", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "notes.txt")]) == 2
    assert f"--cache-dir {tmp_path / 'notes.txt'}: cannot be the cache folder" in _one_line(capsys)
    after = snapshot(tmp_path)
    assert after == {**before, "results": None}  # the results folder was made; no sweep folder is left in it


@pytest.mark.ray
def test_a_trial_asking_for_a_gpu_no_node_has_is_refused_before_any_trial(tmp_path, capsys, ray_session):
    _classes(tmp_path / "train")
    spec = tmp_path / "spec.yaml"
    spec.write_text("data: {train: train}\nspace: {backbone: simple_cnn}\nweights: none\nimage_size: 32\n"
                    "budget: {gpus_per_trial: 1}\n")
    assert main(["run", str(spec), "--out", str(tmp_path / "results")]) == 2
    err = _one_line(capsys)
    assert "a trial asks for 1 CPU and 1 GPU" in err and "no Ray node has that much" in err, err
    assert not (tmp_path / "results" / "spec").exists()


def test_a_truncated_model_keras_is_one_line(tmp_path, capsys):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / MANIFEST).write_text(json.dumps({"format": 1, "task": "classification", "classes": ["cat", "dog"],
                                               "image_size": 32, "members": [], "files": [MANIFEST, "model.keras"]}))
    (bundle / "model.keras").write_bytes(b"PK\x03\x04 cut short")
    (tmp_path / "cat.png").write_bytes(b"")
    assert main(["predict", str(bundle), str(tmp_path / "cat.png")]) == 2
    assert f"{bundle / 'model.keras'}: cannot be loaded (" in _one_line(capsys)


def test_a_moved_sweep_finds_its_own_experiment(tmp_path):
    old, new = tmp_path / "old" / "mine", tmp_path / "new" / "mine"
    (new / "experiment").mkdir(parents=True)
    results.write_meta(new, {"experiment": "experiment"})  # as `run` records it now
    assert results.experiment_of(new) == str(new / "experiment")
    results.write_meta(new, {"experiment": str(old / "experiment")})  # recorded absolute, then moved
    assert results.experiment_of(new) == str(new / "experiment")
    results.write_meta(new, {"experiment": "s3://bucket/sweeps/mine"})
    assert results.experiment_of(new) == "s3://bucket/sweeps/mine"
    assert results.recorded_experiment(new, None) == "experiment"
    assert results.recorded_experiment(new, str(tmp_path / "shared")) == str(tmp_path / "shared" / "mine")


def _online() -> bool:
    import socket

    try:
        socket.getaddrinfo("storage.googleapis.com", 443)
    except OSError:
        return False
    return True


@pytest.mark.ray
@pytest.mark.skipif(_online(), reason="needs a machine where Keras' weight downloads fail (CI and dev are offline)")
def test_a_backbone_without_weights_stops_the_run_before_any_trial(tmp_path, capsys, monkeypatch, ray_session):
    """Offline, TPE kept proposing such a backbone and 3 of 4 trials errored, exit 0."""
    _classes(tmp_path / "train")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # no cached download either
    monkeypatch.delenv("SWEEPER_WEIGHTS", raising=False)
    spec = tmp_path / "spec.yaml"
    spec.write_text("data: {train: train}\nimage_size: 32\nspace: {backbone: [simple_cnn, mobilenet_v2_1.0]}\n")
    assert main(["run", str(spec), "--dry-run"]) == 0
    assert "no local ImageNet weights for mobilenet_v2_1.0" in capsys.readouterr().out
    assert main(["run", str(spec), "--out", str(tmp_path / "results")]) == 2
    err = _one_line(capsys)
    assert "no ImageNet weights for mobilenet_v2_1.0: looked for" in err and "the download failed too (" in err, err
    assert not (tmp_path / "results" / "spec").exists()


def test_numeric_labels_in_a_classification_csv_hint_at_regression(tmp_path, capsys):
    from PIL import Image

    (tmp_path / "img").mkdir()
    rows = []
    for i in range(6):
        Image.new("RGB", (16, 16), (i * 30, 0, 0)).save(tmp_path / "img" / f"{i}.png")
        rows.append(f"img/{i}.png,{[21, 21, 7, 7, 13, 30][i]}")
    (tmp_path / "counts.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text("data: {csv: counts.csv}\nspace: {backbone: simple_cnn}\n")  # task: regression forgotten
    assert main(["run", str(spec), "--dry-run"]) == 2
    err = _one_line(capsys)
    assert "needs at least 2 images" in err and "for numeric targets, set `task: regression`" in err, err


def test_run_on_a_finished_sweep_points_at_its_leaderboard_not_at_resume(tmp_path, capsys):
    _classes(tmp_path / "train")
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: mine\ndata: {train: train}\nspace: {backbone: simple_cnn}\n")
    _sweep(tmp_path / "results")  # a finished sweep called `mine`
    before = snapshot(tmp_path)
    assert main(["run", str(spec), "--out", str(tmp_path / "results")]) == 2
    err = _one_line(capsys)
    assert "already exists; choose another --name, or see it with `sweeper leaderboard`" in err, err
    assert snapshot(tmp_path) == before
