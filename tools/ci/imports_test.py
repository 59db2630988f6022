"""The first-party import graph: no cycles, and dependencies point the way ARCHITECTURE.md says.

Every first-party ``.py`` file is parsed (nothing is imported). Every ``import`` counts,
at module level or inside a function: a function-level import is a cycle put off, not
removed. ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else
to ``pkg``. Whatever files exist are scanned, so a module may move between packages.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

# package -> the other first-party packages its modules may import (ARCHITECTURE.md: sweep ->
# deploy, loadgen, analysis -> serving, model; the result formats and tools/python are shared).
# Only benchmarks import tests (bench/search simulates the tests' known queue, tests/standin), so
# tests never import bench. A new top-level package needs a line here to be scanned.
MAY_IMPORT = {
    "formats": set(),  # the result files' schemas: stdlib only
    "tools": set(),
    "model": {"tools"},
    "serving": {"model", "formats", "tools"},
    "deploy": {"serving", "model", "formats", "tools"},
    "loadgen": {"serving", "model", "formats", "tools"},  # never deploy or sweep
    "analysis": {"serving", "model", "formats", "tools"},  # reads result files, never loadgen
    "sweep": {"deploy", "loadgen", "analysis", "serving", "model", "formats", "tools"},
    "bench": {"deploy", "loadgen", "analysis", "serving", "model", "formats", "tools", "sweep", "tests"},
    "tests": {"deploy", "loadgen", "analysis", "serving", "model", "formats", "tools", "sweep"},
}
PACKAGES = tuple(sorted(MAY_IMPORT))  # the first-party top-level packages (absent ones are skipped)
# package -> third-party top-level modules it must not import
MUST_NOT_IMPORT = {
    "loadgen": {"tensorflow"},
    "analysis": {"tensorflow"},
    "formats": {"tensorflow"},
}


def repo_root() -> Path:
    """The workspace: under Bazel the runfiles tree (which holds the py_srcs given as `data`)."""
    if os.environ.get("TEST_SRCDIR") and os.environ.get("TEST_WORKSPACE"):
        return Path(os.environ["TEST_SRCDIR"], os.environ["TEST_WORKSPACE"])
    return Path(__file__).absolute().parents[2]


def module_files(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    """Module name -> file, for every ``.py`` file under the given top-level packages."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def imported_names(module: str, source: str, is_package: bool) -> set[str]:
    """Absolute dotted names ``source`` imports anywhere (``from a import b`` gives ``a.b``,
    a module or a name in ``a``: see ``_resolve``)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[:len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            names.update(base if alias.name == "*" else f"{base}.{alias.name}" for alias in node.names)
    return names


def _resolve(name: str, modules: Mapping[str, object]) -> str | None:
    """The first-party module ``name`` refers to: itself, else its longest existing prefix."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_graph(root: Path, packages: Iterable[str] = PACKAGES) -> tuple[dict[str, set[str]],
                                                                           dict[str, set[str]]]:
    """(module -> first-party modules it imports, module -> everything it imports: those
    modules and the dotted names of third-party ones)."""
    files = module_files(root, packages)
    graph, names = {}, {}
    for module, path in files.items():
        found = imported_names(module, path.read_text(encoding="utf-8"), path.name == "__init__.py")
        resolved = {name: _resolve(name, files) for name in found}
        graph[module] = {m for m in resolved.values() if m is not None}
        names[module] = {m or name for name, m in resolved.items()}
    return graph, names


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected component that has one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(start: str) -> None:  # Tarjan's algorithm, iterative (no recursion limit)
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    cycles = []
    for component in components:
        start = min(component)
        if len(component) == 1 and start not in graph.get(start, ()):
            continue
        cycles.append(_path_back(graph, start, component))
    return sorted(cycles)


def _path_back(graph: Mapping[str, Iterable[str]], start: str, within: set[str]) -> list[str]:
    """A shortest path ``start -> ... -> start`` through ``within`` (breadth first)."""
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph.get(node, ())):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if child in within and child not in parent:
                    parent[child] = node
                    nxt.append(child)
        frontier = nxt
    raise AssertionError(f"{start} is in a cycle but no path leads back to it")


def layering_violations(names: Mapping[str, Iterable[str]],
                        may_import: Mapping[str, set[str]] = MAY_IMPORT,
                        must_not_import: Mapping[str, set[str]] = MUST_NOT_IMPORT) -> list[str]:
    """``"importer imports name"`` for every import the rules exclude (module names: as
    ``import_graph`` gives them)."""
    found = set()
    for module, imported in names.items():
        package = module.split(".")[0]
        for name in imported:
            top = name.split(".")[0]
            first_party_ok = top not in may_import or top == package or top in may_import.get(package, ())
            if not first_party_ok or top in must_not_import.get(package, ()):
                found.add(f"{module} imports {name}")
    return sorted(found)


@pytest.fixture(scope="module")
def graph_and_names():
    graph, names = import_graph(repo_root())
    assert "loadgen.engine" in graph, f"no first-party modules found under {repo_root()}"
    return graph, names


def describe_cycles(cycles: list[list[str]]) -> str:
    return "import cycles (each module imports the next):\n" + "\n".join(
        "  " + " -> ".join(cycle) for cycle in cycles)


def test_no_import_cycles(graph_and_names):
    cycles = find_cycles(graph_and_names[0])
    assert not cycles, describe_cycles(cycles)


def test_layering(graph_and_names):
    violations = layering_violations(graph_and_names[1])
    assert not violations, ("imports ARCHITECTURE.md rules out (see MAY_IMPORT, MUST_NOT_IMPORT):\n"
                            + "\n".join("  " + v for v in violations))


# -- the checker itself --------------------------------------------------------------------------

def test_find_cycles_finds_a_synthetic_cycle():
    graph = {"a.x": {"a.y"}, "a.y": {"a.z", "b"}, "a.z": {"a.x"}, "b": set(), "c": {"c"}}
    assert find_cycles(graph) == [["a.x", "a.y", "a.z", "a.x"], ["c", "c"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert "a.x -> a.y -> a.z -> a.x" in describe_cycles(find_cycles(graph))


def test_function_level_and_submodule_imports_are_edges(tmp_path: Path):
    (tmp_path / "p" / "sub").mkdir(parents=True)
    (tmp_path / "p" / "__init__.py").write_text("")
    (tmp_path / "p" / "sub" / "__init__.py").write_text("from . import leaf\n")
    (tmp_path / "p" / "sub" / "leaf.py").write_text("def f():\n    from p import top\n")
    (tmp_path / "p" / "top.py").write_text(
        "import numpy\nfrom p.sub import leaf, CONSTANT\nfrom .sub.leaf import f\n")
    graph, names = import_graph(tmp_path, ["p"])
    assert graph == {"p": set(), "p.sub": {"p.sub.leaf"}, "p.sub.leaf": {"p.top"},
                     "p.top": {"p.sub", "p.sub.leaf"}}
    assert names["p.top"] == {"numpy", "p.sub", "p.sub.leaf"}
    # p.top's `from p.sub import CONSTANT` is an edge to p.sub; leaf's import is in a function
    assert find_cycles(graph) == [["p.sub", "p.sub.leaf", "p.top", "p.sub"]]


def test_layering_names_the_modules():
    names = {"loadgen.run": {"deploy.target", "numpy", "loadgen.engine", "formats.results"},
             "loadgen.engine": {"tensorflow.keras"}, "analysis.report": {"loadgen.results"},
             "sweep.loop": {"deploy.target", "loadgen.run", "analysis.report"},
             "tools.x": {"tests.helpers"}, "tests.a": {"tests.helpers", "sweep.loop"}}
    assert layering_violations(names) == ["analysis.report imports loadgen.results",
                                          "loadgen.engine imports tensorflow.keras",
                                          "loadgen.run imports deploy.target",
                                          "tools.x imports tests.helpers"]
