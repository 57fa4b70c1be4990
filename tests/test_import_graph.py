"""No import loops inside ``grader`` or ``leaderboard``: the web views reach the services
through ``leaderboard.context``, never the factory's module, and ``grader`` never imports
``leaderboard``.

Every import that runs counts, also one deferred into a function (a loop kept alive by a
deferred import is still a loop); imports under ``if TYPE_CHECKING:`` do not run and do not
count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST, here: str, is_package: bool) -> set[str]:
    """The modules this one imports when it runs (relative imports resolved)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = here.split(".") if is_package else here.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            # ``from pkg import sub`` imports the submodule; ``from mod import name``, the module
            # (both are kept: the graph keeps the names that are modules of the tree)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(*packages: str) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports at run time."""
    files = {_module_name(p): p for pkg in packages for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        imported = _runtime_imports(ast.parse(path.read_text()), name, path.name == "__init__.py")
        # a package's own __init__ runs before any of its modules: no edge back to it, when
        # the names imported from it are its submodules
        graph[name] = {m for m in imported if m in files and m != name
                       and not (name.startswith(f"{m}.") and any(i.startswith(f"{m}.") for i in imported))}
    return graph


def loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_the_loop_finder_finds_a_loop_through_a_deferred_import() -> None:
    source = "import typing\nif typing.TYPE_CHECKING:\n    import b\ndef f():\n    import c\n"
    assert _runtime_imports(ast.parse(source), "a", False) == {"typing", "c"}
    assert loops({"a": {"c"}, "c": {"d"}, "d": {"a"}, "e": {"a"}}) == [["a", "c", "d"]]
    assert loops({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", ["leaderboard", "grader"])
def test_no_import_loop(package: str) -> None:
    assert loops(import_graph(package)) == []


def test_views_reach_the_services_through_the_context_module() -> None:
    graph = import_graph("leaderboard")
    importers = sorted(m for m, imported in graph.items() if "leaderboard.app" in imported)
    assert importers == ["leaderboard", "leaderboard.demo"]  # the entry points, nothing else
    views = [m for m in graph if m.startswith("leaderboard.views.")]
    assert views
    others = [v for v in views if v != "leaderboard.views.student"]
    assert [v for v in others if any(i.startswith("leaderboard.views.student") for i in graph[v])] == []


def test_grader_never_imports_the_web_service() -> None:
    graph = import_graph("grader", "leaderboard")
    grader = [m for m in graph if m.startswith("grader")]
    assert [m for m in grader if any(i.startswith("leaderboard") for i in graph[m])] == []
