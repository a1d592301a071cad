"""The package's shape: no import cycle (lazy imports included), and the hyperparameter vocabulary
readable without Optuna or Keras."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sweeper"


def _imports() -> dict[str, set[str]]:
    """sweeper's modules and the sweeper modules each imports, at the top or inside a function."""
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    graph = {}
    for path in PACKAGE.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found |= {node.module.split(".")[0]} if node.module else {alias.name for alias in node.names}
        graph[path.stem] = found & modules
    return graph


def test_no_import_cycle_in_the_package():
    graph = _imports()
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(graph[module]):
            assert state.get(imported) != "open", " -> ".join(path + [imported])
            if imported not in state:
                visit(imported, path + [imported])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_the_vocabulary_and_the_leaderboard_import_neither_optuna_nor_keras():
    code = ("import sys, sweeper.hyperparameters, sweeper.space, sweeper.leaderboard; "
            "print(sorted(m for m in ('optuna', 'keras', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_sweeps_saved_before_space_py_still_unpickle_their_space():
    """Ray pickled the parameter types as `sweeper.spec.Fixed` and so on; `spec` re-exports them."""
    import pickle

    from sweeper.space import Choice, Fixed
    from sweeper.spec import Space

    old = b"\x80\x04csweeper.spec\nFixed\n)\x81}\x94\x8c\x05value\x94K\x03sb."  # Fixed(3), as the old module
    assert pickle.loads(old) == Fixed(3)
    space = Space(optimizer=Choice(("adam", "sgd")))
    assert pickle.loads(pickle.dumps(space)) == space
