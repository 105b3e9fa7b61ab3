"""No import cycles in rlinf_http, lazy (function-level) imports included.

The graph is built from the syntax trees: every ``import`` / ``from ... import``
anywhere in a module (``if TYPE_CHECKING:`` blocks excepted: they never run) is
an edge to the rlinf_http module it names.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "rlinf_http"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool, modules: set[str]) -> set[str]:
    out: set[str] = set()
    base = module.split(".") if is_package else module.split(".")[:-1]

    def resolve(name: str) -> None:
        # the longest prefix that is a module of the package
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            candidate = ".".join(parts[:end])
            if candidate in modules:
                out.add(candidate)
                return

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                resolve(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - node.level + 1]
                target = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                target = node.module or ""
            for alias in node.names:
                resolve(f"{target}.{alias.name}")
            resolve(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    out.discard(module)
    return out


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    return {
        _module_name(p): _imports(
            ast.parse(p.read_text()), _module_name(p), p.name == "__init__.py", modules
        )
        for p in paths
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    # Tarjan's strongly connected components; a component of 2+ modules is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strongconnect(w)
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
            strongconnect(v)
    return found


def _without_package_parents(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    # Importing a.b runs a/__init__.py first; an edge a.b -> a is that, not a cycle.
    return {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}


def test_no_import_cycles() -> None:
    graph = _without_package_parents(import_graph())
    assert _cycles(graph) == []


def test_the_graph_sees_lazy_imports() -> None:
    graph = import_graph()
    # the CLI imports the fake server inside serve-fake (a function-level import)
    assert "rlinf_http.testing._server" in graph["rlinf_http.cli"]
    assert "rlinf_http._driver" in graph["rlinf_http._client"]


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
