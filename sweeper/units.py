"""Sizes and ages as people type them ("20GB", "512MiB", "30d"), for options and environment
variables, and sizes and counts as people read them ("1.2 MB", "1 trial", "2 trials"). Decimal and
binary units both mean what they say."""

from __future__ import annotations

import re

_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(text: str, *, what: str) -> int:
    """Bytes from "0", "1500", "20GB", "512MiB" or "1.5G"; ValueError naming `what` otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"{what}: {text!r} is not a size (examples: 0, 512MB, 20GB, 2GiB)")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def parse_age(text: str, *, what: str) -> float:
    """Seconds from "90s", "45m", "12h", "30d" or "2w"; ValueError naming `what` otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", str(text))
    if not match:
        raise ValueError(f"{what}: {text!r} is not an age (examples: 12h, 30d, 2w)")
    return float(match.group(1)) * _AGE_UNITS[match.group(2)]


def format_size(n: float) -> str:
    """1234567 -> "1.2 MB" (decimal units, as disks are sold and `df -H` shows)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def plural(count: float, singular: str, many: str | None = None) -> str:
    """"1 trial", "2 trials", "0 trials"; "1 class", "2 classes"; "1 entry", "2 entries"; a verb too:
    plural(n, "was", "were"). `many` gives a plural the rules miss ("batches": -ch takes -s, as
    "epochs" does); a float count prints as `:g` does ("0.5 GPUs")."""
    if many is None:
        if singular.endswith(("s", "x")):
            many = singular + "es"
        elif singular.endswith("y") and singular[-2:-1] not in "aeiou":
            many = singular[:-1] + "ies"
        else:
            many = singular + "s"
    shown = f"{count:g}" if isinstance(count, float) else str(count)
    return f"{shown} {singular if count == 1 else many}"
