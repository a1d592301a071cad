"""Latency is measured once per architecture and shared through the cache folder."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sweeper import latency

ARCH = dict(backbone="mobilenet_v2_0.35", cut="full", head_pooling="avg", head_units=(32,), image_size=96,
            task="classification", outputs=2, threads=1)


def test_one_measurement_per_architecture_even_when_trials_ask_at_once(tmp_path):
    calls = []

    def measure(value):
        def run():
            calls.append(value)
            return value
        return run

    key = latency.architecture_key(**ARCH)
    with ThreadPoolExecutor(4) as pool:
        values = list(pool.map(lambda v: latency.measured_once(tmp_path, key, measure(v)), [1.5, 2.5, 3.5, 4.5]))
    assert len(calls) == 1 and values == [calls[0]] * 4
    assert latency.measured_once(tmp_path, key, measure(9.0)) == calls[0]  # a later sweep reuses it too

    bigger = latency.architecture_key(**{**ARCH, "image_size": 128})
    assert bigger != key and latency.measured_once(tmp_path, bigger, measure(7.0)) == 7.0
    assert latency.architecture_key(**ARCH) == key
    assert latency.architecture_key(**{**ARCH, "threads": 2}) != key
