"""Matplotlib for charts written to files, shared by the test-split evaluation and the sweep report."""

from __future__ import annotations


def pyplot():
    """matplotlib.pyplot on the Agg backend: files only, never a window. Imported late: it is slow to import."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
