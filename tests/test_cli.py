"""The command line: exit codes, one-line errors, the registry listing, the demo's inputs."""

from __future__ import annotations

import re
import shlex
from importlib.resources import files
from pathlib import Path

import pytest
import yaml

from sweeper.cli import EXAMPLES, build_parser, main
from sweeper.demo import HELD_OUT, QUICKSTART, write_digits
from sweeper.spec import Choice, parse_spec

ROOT = Path(__file__).resolve().parents[1]


def test_bad_spec_exits_2_with_one_line_naming_the_key(tmp_path, capsys):
    (tmp_path / "d" / "a").mkdir(parents=True)
    spec = tmp_path / "bad.yaml"
    spec.write_text("data: {train: d}\nspace: {optimizer: adamw}\n")
    assert main(["run", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "bad.yaml: space.optimizer: 'adamw' is not allowed" in err and "adam" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "missing.yaml"], "missing.yaml: spec file not found"),
        (["fly"], "invalid choice: 'fly'"),
        (["run"], "the following arguments are required: spec"),
        (["run", "x.yaml", "--trials", "many"], "invalid int value: 'many'"),
        (["leaderboard", "."], "no leaderboard.json here"),
        (["report", "."], "no leaderboard.json here"),
        (["export", ".", "--out", "bundle"], "no spec.yaml or sweep.json here; is this a sweep folder"),
        (["export", ".", "--out", "bundle", "--top", "0"], "argument --top: 0: must be at least 1"),
        (["leaderboard", ".", "--top", "-3"], "argument --top: -3: must be at least 1"),  # it dropped 3 rows
        (["leaderboard", ".", "--top", "0"], "argument --top: 0: must be at least 1"),  # it showed them all
        (["predict", ".", "cat.jpg"], "not a sweeper bundle (no bundle.json)"),
        (["resume", "."], "no spec.yaml or sweep.json here; is this a sweep folder"),
    ],
)
def test_bad_arguments_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--address", "127.0.0.1:1"], "--address 127.0.0.1:1: no Ray cluster answers there"),
        (["--address", "nowhere"], "--address nowhere: expected HOST:PORT"),
        (["--out", "a_file/results"], "a_file/results: cannot create the results folder"),
    ],
)
def test_a_run_that_cannot_start_exits_2_at_once_and_leaves_nothing(extra, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d" / "a").mkdir(parents=True)
    (tmp_path / "a_file").write_text("")
    (tmp_path / "s.yaml").write_text("data: {train: d}\nspace: {backbone: simple_cnn}\n")
    assert main(["run", "s.yaml", "--out", "results", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()


def test_a_run_never_overwrites_an_existing_sweep(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d" / "a").mkdir(parents=True)
    (tmp_path / "s.yaml").write_text("name: taken\ndata: {train: d}\nspace: {backbone: simple_cnn}\n")
    (tmp_path / "results" / "taken").mkdir(parents=True)
    (tmp_path / "results" / "taken" / "leaderboard.json").write_text("[]")
    assert main(["run", "s.yaml", "--out", "results"]) == 2
    err = capsys.readouterr().err
    assert "taken already exists; choose another --name, or continue it with `sweeper resume" in err
    assert len(err.strip().splitlines()) == 1
    assert (tmp_path / "results" / "taken" / "leaderboard.json").read_text() == "[]"


def test_backbones_lists_the_registry(capsys):
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    for name in ("mobilenet_v2_0.35", "inception_v3", "mixed7", "resnet50", "conv4_block6_out", "simple_cnn",
                 "convnext_tiny", "efficientnet_v2_s", "mobilenet_v3_large", "xception"):
        assert name in out
    # parameters and ImageNet top-1 from Keras's table, on each entry's row
    rows = {line.split()[1]: line for line in out.splitlines() if len(line.split()) > 1}
    assert "25.6M" in rows["resnet50"] and "74.9%" in rows["resnet50"]
    assert "21.6M" in rows["efficientnet_v2_s"] and "83.9%" in rows["efficientnet_v2_s"]


def test_backbones_measure_times_each_entry_here_at_the_size_asked_or_its_minimum(capsys):
    import re

    assert main(["backbones", "--measure", "--size", "32", "simple_cnn", "inception_v3"]) == 0
    out = capsys.readouterr().out
    found = re.findall(r"^(\S+): ([0-9.]+) ms at \d+ px \(interquartile range ([0-9.]+) ms over 30 runs\)$", out, re.M)
    assert {name for name, *_ in found} == {"simple_cnn", "inception_v3"}
    assert all(float(ms) > 0 and 0 <= float(spread) for _, ms, spread in found)
    assert "inception_v3: " in out and " ms at 75 px" in out  # InceptionV3 takes 75 px and up

    assert main(["backbones", "--measure", "resnet51"]) == 2
    err = capsys.readouterr().err
    assert "unknown backbone 'resnet51'" in err and len(err.strip().splitlines()) == 1


def _help_examples(argv: list[str], capsys) -> tuple[list[str], set[str]]:
    """The command lines under "examples:" at the end of `sweeper ARGV --help`, their comments cut
    off, and the options that help lists above them."""
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    listed, block = capsys.readouterr().out.split("\nexamples:\n", 1)
    examples = [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]
    return examples, set(re.findall(r"--[a-z0-9-]+", listed))


def test_help_shows_real_examples(capsys):
    examples, _ = _help_examples([], capsys)
    assert examples[:2] == ["sweeper demo", "sweeper run search_spaces/quickstart.yaml --trials 8 --max-epochs 4"]
    # An overview: an example of every command.
    assert {line.split()[1] for line in examples} == set(EXAMPLES) == {
        "demo", "run", "triage", "resume", "leaderboard", "report", "export", "predict", "backbones", "cache"}


@pytest.mark.parametrize("argv", [[command] for command in EXAMPLES] + [["cache", "list"], ["cache", "prune"]],
                         ids=" ".join)
def test_each_commands_help_shows_its_own_examples_and_the_parser_takes_them(argv, capsys):
    examples, _ = _help_examples(argv, capsys)
    assert (2 if len(argv) == 1 else 1) <= len(examples) <= 4  # a cache action shows the cache's lines for it
    parser = build_parser()
    for line in examples:
        words = shlex.split(line)
        assert words[:1 + len(argv)] == ["sweeper", *argv], line
        # Spelled out in full as the command's (or cache action's) help lists them: argparse would
        # take an abbreviation. Then taken by the real parser (a flag it lacks, or a bad value,
        # raises SweeperError); nothing runs.
        _, options = _help_examples(words[1:3] if words[1] == "cache" else words[1:2], capsys)
        assert {w.split("=")[0] for w in words if w.startswith("--")} <= options, line
        args = parser.parse_args(words[1:])
        chosen = [args.command, *([args.cache_command] if args.command == "cache" else [])]
        assert chosen[:len(argv)] == argv, line
        for spec in (w for w in words if w.endswith(".yaml")):  # the specs named are the repository's own
            assert (ROOT / spec).is_file(), spec


def test_the_demo_spec_and_data(tmp_path):
    """The demo's spec ships in the package and sweeps at least 8 trials over simple_cnn and a pretrained net."""
    text = (files("sweeper.search_spaces") / QUICKSTART).read_text()
    assert write_digits(tmp_path / "digits") == 1797
    assert sorted(p.name for p in (tmp_path / "digits").iterdir()) == [str(i) for i in range(10)]
    assert sum(1 for _ in (tmp_path / "digits").rglob("*.png")) == 1797
    # The demo keeps the last digits aside for its exported bundle to label, named with their truth.
    assert write_digits(tmp_path / "kept", held_out=tmp_path / "aside") == 1797 - HELD_OUT
    aside = sorted(p.name for p in (tmp_path / "aside").iterdir())
    assert len(aside) == HELD_OUT and aside[-1] == "digit_1796_is_8.png"
    spec = parse_spec(yaml.safe_load(text), tmp_path / QUICKSTART)
    assert spec.budget.trials >= 8
    assert isinstance(spec.space.backbone, Choice) and "simple_cnn" in spec.space.backbone.options
    assert len(spec.space.backbone.options) >= 2
