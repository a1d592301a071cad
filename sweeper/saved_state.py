"""What `sweeper resume` lets Ray Tune load from a results folder, checked first.

Tune restores an experiment from files in its folder: `experiment_state-*.json` (JSON with
cloudpickled fields, as hex strings), `search_gen_state-*.json` and `searcher-state-*.pkl`
(pickles: Optuna's whole study). Unpickling runs whatever a pickle names, and results folders
are what people zip, share and keep in shared buckets: one crafted key once ran `os.system` at
resume. So before Tune sees them, every pickle in those files is loaded here by a restricted
unpickler that resolves only the names sweeper's own sweeps pickle (checked on real sweeps:
Tune's trial, storage and checkpoint classes, Optuna's study and samplers, numpy arrays and
random states, sweeper's spec and stoppers) and calls only classes and a few known
reconstructors. A file that names anything else is refused and nothing in it runs.
`check_experiment_state` does all of this in one pass, and also refuses a damaged or missing
state, which Tune would answer by silently starting the experiment over.

`error.pkl` in a trial folder holds a cloudpickled exception, class and functions by value,
which no allowlist can check; Tune would load the old ones at the end of a resumed sweep, so
resume renames them `error.pkl.unverified-<time>` (sweeper shows the text in `error.txt`).
"""

from __future__ import annotations

import io
import json
import pickle
import re
import time
import uuid
from fnmatch import fnmatch

from .errors import SweeperError
from .private_apis import PurePythonUnpickler
from .results import filesystem, listing
from .units import plural

STATE_FILES = ("experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl", "callback-states-*.pkl")
UNVERIFIED = ".unverified"

# Names a pickle may resolve whatever they are; everything else must be a class in CLASS_MODULES.
NAMES = {
    ("builtins", name) for name in ("set", "frozenset", "list", "dict", "tuple", "bytearray", "bytes", "complex",
                                    "int", "float", "str", "bool", "slice", "range", "object")
} | {
    ("collections", "deque"), ("collections", "OrderedDict"), ("copyreg", "_reconstructor"),
    ("datetime", "datetime"), ("datetime", "date"), ("datetime", "timedelta"), ("datetime", "timezone"),
    ("uuid", "UUID"), ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
    ("numpy.random._pickle", "__bit_generator_ctor"), ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random._pickle", "__generator_ctor"), ("numpy.random._mt19937", "MT19937"),
    ("numpy.random._pcg64", "PCG64"), ("numpy.random.mtrand", "RandomState"),
    ("pyarrow._fs", "FileSystem._from_uri"),
    # Functions kept as references in the state (never called while unpickling).
    ("optuna.samplers._tpe.sampler", "default_gamma"), ("optuna.samplers._tpe.sampler", "default_weights"),
    ("optuna.samplers._tpe.sampler", "hyperopt_default_gamma"),
    ("ray.train._internal.storage", "_upload_to_fs_path"), ("sweeper.tuner", "trial_dirname"),
    ("sweeper.driver", "_trial_dirname"),  # its name in sweeps saved before tuner.py existed
}
CLASS_MODULES = ("optuna", "ray.tune", "ray.train", "ray.air", "pyarrow._fs", "numpy.dtypes", "sweeper")
# What REDUCE may call besides classes: the reconstructors above.
CALLABLE = {("copyreg", "_reconstructor"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
            ("numpy.core.multiarray", "scalar"), ("numpy.random._pickle", "__bit_generator_ctor"),
            ("numpy.random._pickle", "__randomstate_ctor"), ("numpy.random._pickle", "__generator_ctor"),
            ("pyarrow._fs", "FileSystem._from_uri")}


class UnsafeState(Exception):
    """A pickle names something sweeper's sweeps never pickle."""


class _Verifier(PurePythonUnpickler):  # its REDUCE can be checked
    dispatch = dict(PurePythonUnpickler.dispatch)

    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data))
        self.callable: set[int] = set()

    def find_class(self, module: str, name: str):
        listed = (module, name) in NAMES
        if not listed and not any(module == m or module.startswith(m + ".") for m in CLASS_MODULES):
            raise UnsafeState(f"{module}.{name}")
        try:
            found = super().find_class(module, name)
        except (ImportError, AttributeError):
            raise UnsafeState(f"{module}.{name}") from None
        if not listed and not isinstance(found, type):
            raise UnsafeState(f"{module}.{name}")
        if (module, name) in CALLABLE:
            self.callable.add(id(found))
        return found

    def load_reduce(self):
        func = self.stack[-2]
        if not isinstance(func, type) and id(func) not in self.callable:
            raise UnsafeState(f"a call to {getattr(func, '__qualname__', type(func).__name__)}")
        super().load_reduce()

    dispatch[pickle.REDUCE[0]] = load_reduce

    def persistent_load(self, pid):
        raise UnsafeState("a persistent reference")


def verify_pickle(data: bytes, *, maybe_not_a_pickle: bool = False) -> None:
    """Load `data` with the restricted unpickler; raises UnsafeState for anything not allowed.

    A hex string in Tune's JSON that starts like a pickle may be none (a trial id such as
    806c9004, a node id): with `maybe_not_a_pickle`, what fails to load is let pass. That is
    safe: unpickling runs opcode by opcode, so every one before the failure passed the checks,
    and a real load would stop at the same place.
    """
    try:
        _Verifier(data).load()
    except UnsafeState:
        raise
    except Exception as exc:  # a truncated or malformed pickle
        if not maybe_not_a_pickle:
            raise UnsafeState(f"a damaged pickle ({type(exc).__name__})") from None


_HEX_PICKLE = re.compile(r"80(?:[0-9a-f]{2})+")  # a hex string that starts with pickle's PROTO opcode


def pickles_in_json(value):
    """Every pickle embedded in Tune's JSON state: hex strings, also inside JSON held in strings."""
    if isinstance(value, dict):
        for item in value.values():
            yield from pickles_in_json(item)
    elif isinstance(value, list):
        for item in value:
            yield from pickles_in_json(item)
    elif isinstance(value, str):
        if value[:1] in "{[":
            try:
                yield from pickles_in_json(json.loads(value))
                return
            except ValueError:
                pass
        if _HEX_PICKLE.fullmatch(value):
            yield bytes.fromhex(value)


def check_experiment_state(experiment: str, *, trials_recorded: int) -> None:
    """Everything resume checks in Tune's saved state, each file read once, before Tune sees it:
    a one-line error if the state is missing while the leaderboard records trials (Tune would
    start over and lose them), if the newest cannot be read, or if any file names what sweeper
    never pickles. Then the trials' old `error.pkl` are set aside. Nothing from the files is run."""
    import pyarrow.fs

    fs, path = filesystem(experiment)
    entries = listing(fs, path)
    states = sorted(info.path for info in entries if fnmatch(info.base_name, "experiment_state-*.json"))
    if not states and trials_recorded:
        raise SweeperError(f"{experiment}: no saved state of the sweep here (experiment_state-*.json), yet its "
                           f"leaderboard records {plural(trials_recorded, 'trial')}; resuming would start over and "
                           "lose them. Was the experiment folder moved or is --storage unreachable?")
    for info in entries:
        if not any(fnmatch(info.base_name, pattern) for pattern in STATE_FILES):
            continue
        try:
            with fs.open_input_stream(info.path) as stream:
                data = stream.readall()
            if data[:1] == b"\x80":
                verify_pickle(data)
            else:
                for embedded in pickles_in_json(json.loads(data)):
                    verify_pickle(embedded, maybe_not_a_pickle=True)
        except UnsafeState as exc:
            raise SweeperError(f"{info.path}: refused: it names {str(exc)[:100]}, which no sweeper sweep saves; "
                               "loading it could run code, so the sweep is not resumed (resume only "
                               "results folders you trust)") from None
        except (OSError, ValueError) as exc:
            if states and info.path == states[-1]:  # the state Tune reads; a damaged older one is left alone
                raise SweeperError(f"{info.path}: the saved state of the sweep cannot be read ({exc}); "
                                   "it cannot be resumed, run the spec again with another --name") from None
    for trial in entries:
        if trial.base_name.startswith("trial_"):
            error = f"{trial.path}/error.pkl"
            if fs.get_file_info(error).type == pyarrow.fs.FileType.File:  # a unique name: a second resume keeps the first's
                fs.move(error, f"{error}{UNVERIFIED}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}")
