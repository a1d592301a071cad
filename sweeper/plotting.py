"""Matplotlib for charts written to files, shared by the test-split evaluation and the sweep report."""

from __future__ import annotations

import io
from pathlib import Path

from .files import write_atomic


def pyplot():
    """matplotlib.pyplot on the Agg backend: files only, never a window. Imported late: it is slow to import."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path, dpi: int) -> bytes:
    """Save a figure as PNG, atomically (a reader never sees half a chart), close it and return the bytes."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    pyplot().close(fig)
    data = buffer.getvalue()
    write_atomic(path, data)
    return data
