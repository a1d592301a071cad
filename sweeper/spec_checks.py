"""How a spec's values are checked: each check raises a `SpecError` that names the file, the key
and what is allowed, so the CLI prints it on one line. `spec.py` reads the spec with these.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from .backbones import get_backbone, is_known, names_hint
from .errors import SpecError, quote

# YAML 1.1 reads 1e-3 (no dot) as a string; this is what a number in scientific notation looks like.
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


class SpecChecks:
    """Checks of a spec's values, each raising SpecError with the file and key in the message."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, message: str):
        where = f"{self.path}: {key}: " if key else f"{self.path}: "
        raise SpecError(where + message)

    def no_unknown_keys(self, section: str, raw: dict, allowed) -> None:
        for key in raw:
            if key not in allowed:
                full = f"{section}.{key}" if section else str(key)
                self.fail(full, f"unknown key; allowed: {', '.join(allowed)}")

    def existing(self, key: str, value: Any, folder: bool) -> Path:
        """A path relative to the spec file that must exist: a folder, or a file."""
        kind = "folder" if folder else "file"
        if not isinstance(value, str):
            self.fail(key, f"must be a {kind} path, got {quote(value)}")
        path = self.resolve_path(value)
        if not (path.is_dir() if folder else path.is_file()):
            self.fail(key, f"{kind} not found: {path}")
        return path

    def resolve_path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return (path if path.is_absolute() else self.path.parent / path).resolve()

    def one_of(self, key: str, value: Any, allowed, suffix: str = ""):
        if value not in allowed:
            self.fail(key, f"{quote(value)} is not allowed{suffix}; allowed: {', '.join(map(str, allowed))}")
        return value

    def number(self, key: str, value: Any, low: float = -math.inf, high: float = math.inf) -> float:
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            finite = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        except OverflowError:
            finite = False
        if not finite:
            self.fail(key, f"{quote(value)} must be a number")
        if not low <= value <= high:
            bounds = f"at least {low}" if high == math.inf else f"between {low} and {high}"
            self.fail(key, f"{value} must be {bounds}")
        return value

    def integer(self, key: str, value: Any, low: int = 0, high: float = math.inf) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"{quote(value)} must be a whole number")
        return int(self.number(key, value, low, high))

    # Checks for one value of a space parameter: (key, value) -> value.
    def int_check(self, low: int, high: float = math.inf):
        return lambda key, v: self.integer(key, v, low, high)

    def float_check(self, low: float, high: float):
        return lambda key, v: float(self.number(key, v, low, high))

    def choice_check(self, allowed, suffix: str = ""):
        return lambda key, v: self.one_of(key, v, allowed, suffix)

    def bool_check(self, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            self.fail(key, f"{quote(value)} must be true or false")
        return value

    def layer_name_check(self, key: str, value: Any) -> str:
        if not isinstance(value, str) or not value:
            self.fail(key, f"{quote(value)} must be `full` or a layer name of the model")
        return value

    def backbone_name(self, key: str, value: Any) -> str:
        if not is_known(value):
            self.fail(key, f"unknown backbone {quote(value)}; {names_hint(value)}")
        return get_backbone(value).name
