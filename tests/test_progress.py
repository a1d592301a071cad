"""What the driver shows while it waits on work that reports nothing: a spinner with the time
elapsed on a terminal, one plain line elsewhere."""

from __future__ import annotations

import io
import re
import time

from rich.console import Console

from sweeper.progress import waiting

TEXT = "evaluating the best trial, 1a2b3c4d, on the 1 test image..."


def test_off_a_terminal_a_wait_is_one_plain_line():
    out = io.StringIO()
    with waiting(Console(file=out, width=200), TEXT):
        time.sleep(0.3)
    assert out.getvalue() == TEXT + "\n"


def test_on_a_terminal_a_wait_spins_with_the_time_elapsed_and_is_gone_after():
    out = io.StringIO()
    with waiting(Console(file=out, width=200, force_terminal=True, color_system=None), TEXT):
        time.sleep(1.3)
    frames = [f for f in re.split(r"[\r\n]", out.getvalue().replace("\x1b[2K", "")) if TEXT in f]
    assert len(frames) >= 3 and {f.split()[0] for f in frames} <= set("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")
    assert frames[0].strip().endswith(f"{TEXT} 0:00:00") and frames[-1].strip().endswith(f"{TEXT} 0:00:01")
    assert out.getvalue().endswith("\x1b[1A\x1b[2K")  # the line is erased: transient
