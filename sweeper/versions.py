"""Which sweeper made a sweep or a bundle, and what to say when it is not this one.

sweep.json records `sweeper_version` and a bundle's manifest `versions.sweeper`. A sweep resumed,
or a bundle used, by another version still works as far as its formats allow; the user is told
which version made it, and how to get that one, rather than left to wonder at a difference.
"""

from __future__ import annotations

from . import __version__

DISTRIBUTION = "sweeper-tune"  # the name on the package index (`sweeper` there is another project)


def another_version(recorded: str | None, what: str) -> str | None:
    """One line when `what` records that another sweeper made it; None when this one did, or it does
    not say (files written by hand, or by a sweeper from before the version was recorded)."""
    if not recorded or recorded == __version__:
        return None
    return (f"{what} was made by sweeper {recorded}; this is sweeper {__version__} "
            f"(pip install '{DISTRIBUTION}=={recorded}' gives the one that made it)")
