"""The import graph of ``morl_core``: no cycles, and the methods never import the job system.

Every ``import`` counts, at module level or inside a function: a lazy import that only hides a
cycle is still a cycle. ``from package import submodule`` is an edge to the submodule; the
implicit import of a parent package's ``__init__`` is not an edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def module_graph(package: str = "morl_core") -> dict[str, set[str]]:
    """Module name -> the ``package`` modules it imports anywhere in its source."""
    files = {}
    for path in (ROOT / package).rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def known(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names
                ]
            else:
                continue
            graph[name] |= {t for t in map(known, targets) if t and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_checker_finds_a_cycle_and_none_in_a_chain():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_morl_core_has_no_import_cycle():
    assert cycles(module_graph()) == []


def test_the_methods_do_not_import_the_job_system():
    graph = module_graph()
    into_jobs = sorted(
        (name, other)
        for name, imported in graph.items()
        if name.startswith("morl_core.methods")
        for other in imported
        if other.startswith("morl_core.jobs")
    )
    assert into_jobs == []


def test_settings_sit_at_the_bottom():
    assert module_graph()["morl_core.settings"] == set()


@pytest.mark.parametrize("name", ["morl_core.config", "morl_core.config_cli"])
def test_config_does_not_import_the_methods(name):
    assert not any(m.startswith("morl_core.methods") for m in module_graph()[name])
