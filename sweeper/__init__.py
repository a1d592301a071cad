"""sweeper: hyperparameter sweeps for image transfer learning on Ray Tune, Optuna TPE and ASHA.

The names below are the public Python API; the modules behind them each hold one stage of
the data flow (spec -> data -> backbones/model -> trial -> driver -> leaderboard -> export/bundle).
"""

__version__ = "0.1.0"

from .backbones import REGISTRY, Backbone
from .bundle import Bundle, load_bundle
from .errors import DataError, SpecError, SweeperError
from .spec import Budget, DataSpec, Space, Spec, load_spec
from .sweeps import Sweep, open, run

__all__ = [
    "REGISTRY",
    "Backbone",
    "Budget",
    "Bundle",
    "DataError",
    "DataSpec",
    "Space",
    "Spec",
    "SpecError",
    "Sweep",
    "SweeperError",
    "load_bundle",
    "load_spec",
    "open",
    "run",
]
