"""The import graph of comp/: no cycles, and no module over the size limit.

The graph is read from the source (AST), not by importing: every ``import`` and ``from ... import``
at any depth (module level and inside functions, since a lazy import still runs and still ties the two
modules together), relative imports resolved against the importing module's package, and modules
named by a string: ``importlib.import_module("comp.x")`` and registries whose values are exactly a
submodule's dotted name (``comp.models.FAMILIES``), since those modules are imported by that name.
Imports under ``if TYPE_CHECKING:`` never run and are left out. The implicit import of a package's
``__init__`` by its submodules is left out too (a package re-exporting its submodules is no cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

COMP = Path(__file__).resolve().parents[1] / "comp"
MAX_LINES = 400


def module_names(root: Path) -> dict[str, Path]:
    """Dotted name -> file, for every .py under ``root`` (a package named by its folder)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` (their ``else`` runs)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _is_import_module(func: ast.expr) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id in ("import_module", "__import__")
    )


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ``modules`` that module ``name`` (file ``path``) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def add(target: str) -> None:
        if target in modules and target != name:
            found.add(target)

    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    logger_names = {  # logging.getLogger("comp.x") names a logger, it imports nothing
        id(arg)
        for call in ast.walk(tree)
        if isinstance(call, ast.Call) and getattr(call.func, "attr", getattr(call.func, "id", None)) == "getLogger"
        for arg in call.args
    }
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                add(submodule if submodule in modules else base)
        elif isinstance(node, ast.Call) and _is_import_module(node.func) and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                add(first.value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value:
            if id(node) in logger_names:
                continue
            add(node.value)  # a registry entry: a module imported by its dotted name (not files("comp"))
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = module_names(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle through each strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan's algorithm; comp/ is shallow enough for recursion
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_shortest_cycle(graph, component) for component in components]


def _shortest_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for other in sorted(graph[node] & component):
            if other == start:
                return paths[node] + [start]
            if other not in paths:
                paths[other] = paths[node] + [other]
                queue.append(other)
    raise AssertionError(f"no cycle through {start} in its component")  # a component always has one


def test_comp_has_no_import_cycle():
    found = cycles(import_graph(COMP))
    assert not found, "import cycles in comp/:\n" + "\n".join("  " + " -> ".join(cycle) for cycle in found)


def test_no_module_over_the_size_limit():
    sizes = {
        path.relative_to(COMP.parent).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted(COMP.rglob("*.py"))
    }
    over = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not over, f"modules over {MAX_LINES} lines: " + ", ".join(f"{name} ({n})" for name, n in over.items())


# ---- the walker itself: each kind of import it must see -------------------------------------------


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        # module level, both ways
        ({"a.py": "import pkg.b\n", "b.py": "from pkg import a\n"}, ["pkg.a", "pkg.b", "pkg.a"]),
        # an import inside a function, and a relative one from a subpackage
        (
            {"a.py": "def f():\n    from pkg.sub import c\n", "sub/__init__.py": "", "sub/c.py": "from .. import a\n"},
            ["pkg.a", "pkg.sub.c", "pkg.a"],
        ),
        # a name imported from a module (not a submodule) ties to that module
        (
            {"a.py": "from .b import helper\n", "b.py": "def g():\n    from .a import thing\n"},
            ["pkg.a", "pkg.b", "pkg.a"],
        ),
        # importlib.import_module with a literal, and a registry of dotted names
        (
            {
                "a.py": "import importlib\nimportlib.import_module('pkg.b')\n",
                "b.py": "REG = {'x': 'pkg.c'}\n",
                "c.py": "from pkg.a import z\n",
            },
            ["pkg.a", "pkg.b", "pkg.c", "pkg.a"],
        ),
    ],
    ids=["module-level", "function-level-relative", "from-module-import-name", "import-module-and-registry"],
)
def test_the_walker_finds_each_kind_of_cycle(tmp_path, files, expected):
    assert cycles(import_graph(_package(tmp_path, files))) == [expected]


def test_the_walker_leaves_out_type_checking_imports_and_parent_packages(tmp_path):
    files = {
        "__init__.py": "from pkg.a import x\n",  # a package re-exporting its submodule
        "a.py": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import y\nelse:\n    import json\n"
        ),
        "b.py": "from pkg.a import x\n",
    }
    graph = import_graph(_package(tmp_path, files))
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": set(), "pkg.b": {"pkg.a"}}
    assert cycles(graph) == []
