"""The package's layout stays one a newcomer can carry on (docs/architecture.md): every
module of workbench/ imports, the module import graph has no cycle, and no module takes a
private name (``_name``) from another.

The graph is read statically with :mod:`ast`: every ``import``/``from ... import`` of a
``workbench`` module, at module level or inside a function (a lazy import that closes a
circle still is one), except those under ``if TYPE_CHECKING:``, which never run. An edge
goes to the module named (``from .x import y`` imports ``x``, or ``x.y`` when ``y`` is a
submodule); the parent packages Python imports on the way are not edges, since every
module would then depend on ``workbench/__init__.py``. The checkers are tested on a small
package of their own as well, so that they cannot pass by finding nothing.
"""

from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass
from pathlib import Path

import pytest

import workbench

PACKAGE_DIR = Path(workbench.__file__).parent


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # the module imported
    name: str | None  # the name taken from it (``from target import name``), if any
    line: int


def find_modules(package_dir: Path) -> dict[str, Module]:
    """Every ``.py`` module under ``package_dir``, by dotted name."""
    found: dict[str, Module] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = Module(".".join(parts), path, is_package)
    return found


def _runtime_nodes(tree: ast.Module) -> list[ast.stmt]:
    """Import statements that can run: everywhere but under ``if TYPE_CHECKING:``."""
    out: list[ast.stmt] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return out


def _absolute(module: Module, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    base = module.name.split(".")
    if not module.is_package:
        base.pop()
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([name] if name else [])])


def find_imports(modules: dict[str, Module]) -> list[Import]:
    """Every runtime import of one of ``modules`` by one of them."""
    root = next(iter(modules)).split(".")[0]
    out: list[Import] = []
    for module in modules.values():
        tree = ast.parse(module.path.read_text(), str(module.path))
        for node in _runtime_nodes(tree):
            if isinstance(node, ast.Import):
                out += [
                    Import(module.name, a.name, None, node.lineno)
                    for a in node.names
                    if a.name in modules
                ]
                continue
            assert isinstance(node, ast.ImportFrom)
            target = _absolute(module, node.level, node.module)
            if target.split(".")[0] != root:
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if submodule in modules:
                    out.append(Import(module.name, submodule, None, node.lineno))
                elif target in modules:
                    out.append(Import(module.name, target, alias.name, node.lineno))
    return out


def import_graph(modules: dict[str, Module]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for imp in find_imports(modules):
        if imp.target != imp.importer:
            graph[imp.importer].add(imp.target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (``[a, b, ..., a]``), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def private_imports(modules: dict[str, Module]) -> list[str]:
    """``importer:line takes target._name`` for each private name taken from another module
    (dunder names like ``__version__`` are public)."""
    return [
        f"{imp.importer}:{imp.line} takes {imp.target}.{imp.name}"
        for imp in find_imports(modules)
        if imp.name is not None
        and imp.name.startswith("_")
        and not imp.name.startswith("__")
        and imp.target != imp.importer
    ]


MODULES = find_modules(PACKAGE_DIR)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not n.endswith(".__main__")))
def test_every_module_imports(name: str) -> None:
    """(``__main__`` runs the command line when imported; it is in the graph all the same.)"""
    importlib.import_module(name)


def test_the_package_has_no_import_cycle() -> None:
    assert len(MODULES) > 50  # the whole package was found
    cycle = find_cycle(import_graph(MODULES))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_imports_a_private_name_of_another() -> None:
    assert private_imports(MODULES) == []


def _write(root: Path, files: dict[str, str]) -> dict[str, Module]:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return find_modules(root / "pkg")


def test_the_checks_find_a_lazy_cycle_and_a_private_import(tmp_path: Path) -> None:
    """The checkers themselves: a circle closed by an import inside a function, a private
    name taken from a sibling; neither an import under TYPE_CHECKING nor a dunder counts."""
    modules = _write(
        tmp_path,
        {
            "pkg/__init__.py": "from ._version import __version__\n",
            "pkg/_version.py": "__version__ = '1'\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/a.py": "from . import b\nfrom .b import _helper\n",
            "pkg/sub/b.py": "def _helper():\n    from .c import thing\n",
            "pkg/sub/c.py": "def thing():\n    from ..sub.a import b\n",
            "pkg/d.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .sub import a\n"
            ),
        },
    )
    assert find_cycle(import_graph(modules)) == ["pkg.sub.a", "pkg.sub.b", "pkg.sub.c", "pkg.sub.a"]
    assert private_imports(modules) == ["pkg.sub.a:2 takes pkg.sub.b._helper"]
    assert import_graph(modules)["pkg.d"] == set()

    (tmp_path / "pkg/sub/c.py").write_text("def thing():\n    pass\n")
    (tmp_path / "pkg/sub/a.py").write_text("from . import b\nfrom .b import helper\n")
    assert find_cycle(import_graph(modules)) is None
    assert private_imports(modules) == []
