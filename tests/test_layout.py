"""The code's layout: no import circles, no reaching into another module's private names.

The import graph is read from the source with :mod:`ast`, so it holds every import a
module can run: those at the top and the deferred ones inside functions (a deferred import
still makes a circle, it only hides it from the start-up). Imports under
``if TYPE_CHECKING:`` never run and are left out. A package's ``__init__`` is not counted
as a dependency of its submodules (Python runs it first, but it only gathers names).
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
# The tests of the real tree share one reading of it (~1-2 s each before): on one worker.
pytestmark = pytest.mark.xdist_group("layout")


@dataclass
class Module:
    """One module of the tree: its imports and the private names it takes from others."""

    name: str
    path: Path
    imports: dict[str, int] = field(default_factory=dict)  # module imported -> first line
    private: list[str] = field(default_factory=list)  # "line: what"


def _modules(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """Ids of the nodes under ``if TYPE_CHECKING:`` (its body, not its ``else``)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.body:
                skipped.update(id(sub) for sub in ast.walk(statement))
    return skipped


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def read_tree(root: Path) -> dict[str, Module]:
    """Every module under ``root`` (a package folder) with its imports inside the package."""
    paths = _modules(root)
    top = root.name
    modules: dict[str, Module] = {}
    for name, path in paths.items():
        module = Module(name, path)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        skipped = _type_checking_nodes(tree)
        module_aliases: dict[str, str] = {}  # local name -> module of the tree it stands for

        def depend(target: str, line: int, module: Module = module) -> None:
            if target in paths and target != module.name:
                module.imports[target] = min(line, module.imports.get(target, line))

        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.ImportFrom):
                source = _absolute(name, path.name == "__init__.py", node)
                if source != top and not source.startswith(top + "."):
                    continue
                for alias in node.names:
                    full = f"{source}.{alias.name}"
                    if full in paths:  # a module (private modules such as _lazy are fine)
                        depend(full, node.lineno)
                        module_aliases[alias.asname or alias.name] = full
                        continue
                    depend(source, node.lineno)
                    if _private(alias.name):
                        module.private.append(f"{node.lineno}: from {source} import {alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in paths:
                        depend(alias.name, node.lineno)
                        if alias.asname:
                            module_aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in module_aliases
                and _private(node.attr)
                and f"{module_aliases[node.value.id]}.{node.attr}" not in paths
                and module_aliases[node.value.id] != name
            ):
                module.private.append(f"{node.lineno}: {module_aliases[node.value.id]}.{node.attr}")
        modules[name] = module
    return modules


def _strongly_connected(graph: dict[str, list[str]]) -> Iterator[list[str]]:
    """Tarjan's components, iterative (the tree is small, but no recursion limit to mind)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(graph[nxt])))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        yield sorted(component)


def _one_circle(graph: dict[str, list[str]], component: list[str]) -> list[str]:
    """A shortest circle through the component's first module, for the message."""
    members = set(component)
    start = component[0]
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for nxt in graph[node]:
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if nxt in members and nxt not in came_from:
                    came_from[nxt] = node
                    following.append(nxt)
        frontier = following
    return component  # not reached: a component always has a circle


def import_circles(modules: dict[str, Module]) -> list[str]:
    """Each import circle as ``a (line) -> b (line) -> … -> a``, with the importing lines."""
    graph = {name: sorted(module.imports) for name, module in modules.items()}
    found = []
    for component in _strongly_connected(graph):
        circle = _one_circle(graph, component)
        steps = [f"{a} (line {modules[a].imports[b]})" for a, b in zip(circle, circle[1:], strict=False)]
        found.append(f"{len(component)} modules in a circle, e.g. {' -> '.join([*steps, circle[-1]])}")
    return found


def private_imports(modules: dict[str, Module]) -> list[str]:
    """Every use of another module's ``_private`` name, as ``module:line: what``."""
    return [f"{module.name}:{entry}" for module in modules.values() for entry in module.private]


@functools.cache
def healthsim_tree() -> dict[str, Module]:
    """The modules of ``src/healthsim``, read once for the tests of this file (none changes them)."""
    return read_tree(SRC / "healthsim")


def test_the_import_graph_has_no_circle() -> None:
    modules = healthsim_tree()
    assert len(modules) > 50  # the whole tree was read
    assert import_circles(modules) == []


def test_no_module_takes_another_modules_private_names() -> None:
    assert private_imports(healthsim_tree()) == []


# The checks themselves, on small trees: each would miss something silently otherwise.


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, Module]:
    root = tmp_path / "healthsim"
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return read_tree(root)


def test_a_deferred_import_makes_a_circle_and_type_checking_does_not(tmp_path: Path) -> None:
    modules = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from . import b\n",
            "b.py": "def f():\n    from .pkg.c import g\n    return g\n",
            "pkg/__init__.py": "",
            "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import x\nimport healthsim.a\n",
            "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n",
        },
    )
    assert import_circles(modules) == [
        "3 modules in a circle, e.g. healthsim.a (line 1) -> healthsim.b (line 2) -> healthsim.pkg.c (line 4) -> healthsim.a"
    ]
    assert modules["healthsim.d"].imports == {}


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("from .a import _hidden\n", ["healthsim.b:1: from healthsim.a import _hidden"]),
        ("def f():\n    from healthsim.a import _hidden as h\n", ["healthsim.b:2: from healthsim.a import _hidden"]),
        ("from . import a\nx = a._hidden\n", ["healthsim.b:2: healthsim.a._hidden"]),
        ("import healthsim.a as m\nx = m._hidden\n", ["healthsim.b:2: healthsim.a._hidden"]),
        ("from . import _lazy\nfrom ._lazy import lazy\nx = _lazy.lazy\n", []),  # a private module is fine
        ("from .a import __all__, public\n", []),
        ("_own = 1\nx = _own\n", []),
    ],
)
def test_private_names_are_found(tmp_path: Path, text: str, found: list[str]) -> None:
    modules = _tree(
        tmp_path,
        {"__init__.py": "", "a.py": "_hidden = public = 1\n", "_lazy.py": "lazy = 1\n", "b.py": text},
    )
    assert private_imports(modules) == found


# The layering of issue 22: each engine's folder imports nothing from the operations, the
# facade, exchange or the front ends; engine-neutral code imports neither driver nor an
# engine's folder (only the interface and the chooser, ``healthsim.state._engines``).
_ENGINES = "healthsim.state._engines"
_ENGINE_FOLDERS = (f"{_ENGINES}.duckdb", f"{_ENGINES}.postgres")
#: Engine-neutral modules that compute in DuckDB itself and say so: the analytics formats
#: write Parquet with DuckDB's COPY and tell its errors apart. Named here so that no new one
#: comes in unnoticed, and the list only shrinks.
_DRIVER_USERS = {"healthsim.state.exchange.formats": {"duckdb"}, "healthsim.mcp_server": {"duckdb"}}


def _in_engine_folder(name: str) -> bool:
    return any(name == folder or name.startswith(folder + ".") for folder in _ENGINE_FOLDERS)


def _below_the_operations(target: str) -> bool:
    """What an engine may import: the engines' own modules, and the library's low modules
    (errors, ids, validation, redaction, the lazy importer)."""
    low = {"errors", "id_sql", "entities", "validation", "redaction", "clock", "sandbox_rules", "files"}
    low |= {"partials", "safe_csv"}
    if target.startswith(_ENGINES) or target in {"healthsim", "healthsim._lazy", "healthsim._text"}:
        return True
    return target.removeprefix("healthsim.state.") in low


def test_the_engines_import_nothing_above_them() -> None:
    modules = healthsim_tree()
    assert any(_in_engine_folder(name) for name in modules)
    upward = sorted(
        f"{name} -> {target}"
        for name, module in modules.items()
        if _in_engine_folder(name)
        for target in module.imports
        if not _below_the_operations(target)
    )
    assert upward == []


def _drivers(path: Path) -> set[str]:
    """The database drivers a module imports (at the top or deferred; not for type checking)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skipped = _type_checking_nodes(tree)
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        elif isinstance(node, ast.Call) and ast.unparse(node.func).endswith("lazy_module") and node.args:
            names = [ast.literal_eval(node.args[0])] if isinstance(node.args[0], ast.Constant) else []
        found |= {n.split(".")[0] for n in names if n.split(".")[0] in {"duckdb", "psycopg"}}
    return found


def test_engine_neutral_code_imports_no_driver_and_no_engine_folder() -> None:
    modules = healthsim_tree()
    neutral = {name: module for name, module in modules.items() if not name.startswith(_ENGINES)}
    into_engines = sorted(
        f"{name} -> {target}"
        for name, module in neutral.items()
        for target in module.imports
        if _in_engine_folder(target)
    )
    assert into_engines == []
    drivers = {name: found for name, module in neutral.items() if (found := _drivers(module.path))}
    assert drivers == _DRIVER_USERS


def test_engine_neutral_code_never_asks_which_engine_it_has() -> None:
    """Issue 22's grep: no ``is_postgres`` and no ``isinstance(…, TeamDatabase)`` outside
    the engines' folders (the engine's capabilities and methods answer instead)."""
    pattern = re.compile(r"is_postgres|isinstance\([^)]*TeamDatabase")
    found = [
        f"{path.relative_to(SRC)}:{number}"
        for path in sorted((SRC / "healthsim").rglob("*.py"))
        if "_engines" not in path.parts
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []
