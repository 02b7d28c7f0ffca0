"""The code's own rules, checked on the source: no import cycles among our modules, no module over
400 lines, the linter's verdict (ruff, configured in pyproject.toml), MLflow opened by
search.tracking alone, and the light modules light."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# simvp_core joins when the simvp_core half of issue 21 is merged (its data package ends the
# data <-> fetch cycle and the 406-line data.py); pyproject.toml's ruff exclusion goes with it
PACKAGES = ("search", "benchmarks", "simvp_core")
MAX_LINES = 400


def our_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of our packages (a package by its __init__)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """Our modules that `name` imports anywhere in it (module level, in functions, for type
    checking): `from a import b` counts as a.b when b is a module, else as a."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets += [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    found = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_ring_and_only_it() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycles_among_our_modules() -> None:
    modules = our_modules()
    graph = {name: imported(name, path, set(modules)) for name, path in modules.items()}
    assert graph["search.run.driver"] >= {"search.run.plan", "search.runfolder", "search.tracking"}  # it sees imports
    assert cycles(graph) == []


def test_no_module_is_over_400_lines() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in our_modules().items()}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_mlflow_is_opened_by_search_tracking_alone() -> None:
    modules = our_modules()
    users = {name for name, path in modules.items()
             if any(isinstance(node, (ast.Import, ast.ImportFrom))
                    and any((getattr(node, "module", None) or alias.name).split(".")[0] == "mlflow"
                            for alias in node.names)
                    for node in ast.walk(ast.parse(path.read_text())))}
    assert users and all(name.startswith("search.tracking.") for name in users), users


def test_ruff_finds_nothing() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it comes with the test extras: pip install -e '.[test]')")
    out = subprocess.run([ruff, "check", "--no-cache", "--output-format", "concise", "."], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-1000:]


@pytest.mark.parametrize("module, heavy", [
    ("search.runfolder", ("pandas", "pyarrow", "ray", "torch")),
    ("search.metric", ("pandas", "pyarrow", "ray", "torch")),
    ("search.runfolder.results", ("pandas", "ray", "torch")),
    ("search.run", ("ray", "torch")),
    ("search.tracking", ("mlflow", "ray", "torch")),
    ("search.run.watchdog", ("mlflow", "ray", "torch")),
    ("search.run.counts", ("mlflow", "ray", "torch")),
    ("search.status", ("mlflow", "ray", "torch")),
])
def test_light_modules_import_no_heavy_library(module: str, heavy: tuple[str, ...]) -> None:
    code = f"import sys, {module}; print(sorted(set({heavy!r}) & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
