"""The house rules (docs/architecture.md), checked on the source tree itself."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"convexdict": ROOT / "convexdict", "convexdict_solvers": ROOT / "solvers"}
MAX_MODULE_LINES = 520
MAX_FUNCTION_LINES = 120  # code lines: the docstring does not count


def _modules() -> dict[str, Path]:
    out = {}
    for name, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([name, *parts])] = path
    return out


MODULES = _modules()


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom) -> list[str]:
    """Modules of this tree that an ``import`` / ``from ... import`` statement loads."""
    if node.level:
        base = module.split(".") if _is_package(module) else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    found = []
    for alias in node.names:
        full = f"{target}.{alias.name}"
        found.append(full if full in MODULES else target)
    return [m for m in found if m in MODULES]


def _imports(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text())
    static_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                   for stmt in block.body for n in ast.walk(stmt)}
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in static_only:  # type-checking imports do not run
            continue
        if isinstance(node, ast.ImportFrom):
            out.update(_resolve(module, node))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in MODULES)
    # A package's __init__ re-exports: edges into a package mean "some module in it";
    # the package's own file is not a stage, so edges to it are dropped.
    return {m for m in out if m != module and not _is_package(m)}


def _graph() -> dict[str, set[str]]:
    return {m: _imports(m) for m in MODULES if not _is_package(m)}


def test_solvers_never_import_convexdict() -> None:
    offenders = [m for m, deps in _graph().items()
                 if m.startswith("convexdict_solvers") and any(
                     d.startswith("convexdict.") for d in deps)]
    assert not offenders, offenders


def test_no_import_circle() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_modules_and_functions_stay_small() -> None:
    long_modules, long_functions = [], []
    for module, path in MODULES.items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long_modules.append((module, len(text.splitlines())))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                numba = any("njit" in ast.unparse(d) or "jit" in ast.unparse(d)
                            for d in node.decorator_list)
                size = node.end_lineno - node.lineno + 1
                first = node.body[0]
                if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                    size -= first.end_lineno - first.lineno + 1  # the docstring is prose
                if size > MAX_FUNCTION_LINES and not numba:
                    long_functions.append((module, node.name, size))
    assert not long_modules, long_modules
    assert not long_functions, long_functions


def test_no_function_shadows_its_module() -> None:
    import convexdict

    for name in convexdict.__all__:
        assert f"convexdict.{name}" not in MODULES, f"convexdict.{name} is also a module"


def test_import_is_light() -> None:
    """``import convexdict`` loads neither torch, numba nor CVXPY (they load on use)."""
    code = ("import sys, convexdict; heavy = [m for m in ('torch', 'numba', 'cvxpy') "
            "if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "", f"import convexdict loaded {out}"


def test_public_names_resolve() -> None:
    import convexdict

    for name in convexdict.__all__:
        assert getattr(convexdict, name) is not None, name
