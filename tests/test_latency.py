"""Latency is a median with its spread, taken again when a round was disturbed, measured once per
architecture (and machine, threads, library versions) and shared through the cache folder."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

from sweeper import latency
from sweeper.latency import Latency

ARCH = dict(backbone="mobilenet_v2_0.35", cut="full", head_pooling="avg", head_units=(32,), image_size=96,
            task="classification", outputs=2, threads=1)


def test_one_measurement_per_architecture_even_when_trials_ask_at_once(tmp_path):
    calls = []

    def measure(value):
        def run():
            calls.append(value)
            return asdict(Latency(ms=value, spread_ms=0.1, runs=30, rounds=1))
        return run

    def measured_once(key, run, kind=""):
        return latency.remembered(tmp_path, key, kind, run)["ms"]

    key = latency.architecture_key(**ARCH)
    with ThreadPoolExecutor(4) as pool:
        values = list(pool.map(lambda v: measured_once(key, measure(v)), [1.5, 2.5, 3.5, 4.5]))
    assert len(calls) == 1 and values == [calls[0]] * 4
    assert measured_once(key, measure(9.0)) == calls[0]  # a later sweep reuses it too
    stored = json.loads((tmp_path / "latency" / f"{key}.json").read_text())
    assert stored == {"ms": calls[0], "spread_ms": 0.1, "runs": 30, "rounds": 1}
    assert latency.recorded(tmp_path, key) == stored
    # Another kind of figure for the same architecture is another record.
    assert latency.recorded(tmp_path, key, "tflite") is None
    assert measured_once(key, measure(0.5), "tflite") == 0.5 and latency.recorded(tmp_path, key, "tflite")["ms"] == 0.5
    assert measured_once(key, measure(9.0)) == calls[0]

    bigger = latency.architecture_key(**{**ARCH, "image_size": 128})
    assert bigger != key and measured_once(bigger, measure(7.0)) == 7.0
    assert latency.architecture_key(**ARCH) == key
    assert latency.architecture_key(**{**ARCH, "threads": 2}) != key


def test_another_library_version_or_way_of_measuring_measures_again(monkeypatch):
    key = latency.architecture_key(**ARCH)
    real = latency._version
    monkeypatch.setattr(latency, "_version", lambda package: "0.0.1" if package == "keras" else real(package))
    assert latency.architecture_key(**ARCH) != key
    monkeypatch.setattr(latency, "_version", real)
    monkeypatch.setattr(latency, "METHOD", latency.METHOD + 1)
    assert latency.architecture_key(**ARCH) != key


def test_a_disturbed_round_is_taken_again_and_the_lowest_median_stands():
    quiet = [0.0030 + 0.0001 * (i % 3) for i in range(30)]  # 3.0-3.2 ms
    disturbed = [0.0030 if i % 2 else 0.0074 for i in range(30)]  # another process half the time
    rounds = iter([disturbed, quiet, quiet])
    measured = latency.measure(lambda: next(rounds))
    assert measured == Latency(ms=3.1, spread_ms=0.2, runs=30, rounds=2)
    # Load only adds time: of rounds that all stay noisy, the fastest stands.
    slower = [t * 2 for t in disturbed]
    rounds = iter([slower, disturbed, slower])
    measured = latency.measure(lambda: next(rounds))
    assert measured.rounds == 3 and measured.ms == 5.2 and measured.spread_ms == 4.4
