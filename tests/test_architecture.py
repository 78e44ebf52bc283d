"""The layers of ARCHITECTURE.md, enforced: who may import whom, no import cycles, nobody but
the actors holds an Engine, and the drawn exception tree and error table are complete.

The import graph is read from the source with `ast` (imports under `if TYPE_CHECKING:` are
annotations only and do not count), so a new module is checked the moment it exists.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import lobgw
from lobgw import errors
from lobgw.book.types import REJECTIONS, Reason
from lobgw.errors import ErrorCode, LobgwError
from lobgw.gateway.errors import ERRORS

ROOT = Path(lobgw.__file__).parent

PURE_FORBIDDEN = {"asyncio", "aiohttp", "logging", "time", "threading", "socket", "os", "io",
                  "pathlib", "websockets", "uvloop", "aioprometheus", "subprocess", "signal"}
"""What the pure layers (the engine and the order tracker) must never import."""

LAYERS: dict[str, set[str]] = {
    # layer: the lobgw packages and modules it may import (besides itself)
    "lobgw.book": {"lobgw.errors"},
    "lobgw.orders": {"lobgw.book", "lobgw.errors", "lobgw.encoding"},
    "lobgw.actors": {"lobgw.book", "lobgw.errors", "lobgw.histogram", "lobgw.encoding"},
    "lobgw.gateway": {"lobgw", "lobgw.actors", "lobgw.book", "lobgw.orders", "lobgw.errors",
                      "lobgw.config", "lobgw.histogram", "lobgw.encoding"},
    "lobgw.sim": {"lobgw.actors", "lobgw.book", "lobgw.orders", "lobgw.errors",
                  "lobgw.client"},
    "lobgw.client": {"lobgw.gateway.wire"},
    "lobgw.config": {"lobgw.book", "lobgw.errors"},
    "lobgw.histogram": set(),
    "lobgw.encoding": set(),
    "lobgw.errors": set(),
}
"""`lobgw.cli` sits on top and may import anything; everything else is listed here."""


def modules() -> Iterator[tuple[str, Path]]:
    """Every module of the package as (dotted name, file)."""
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


MODULES = dict(modules())


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(name: str) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for each import of module `name`."""
    tree = ast.parse(MODULES[name].read_text())
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, list[str]]] = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _type_checking_only(node):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found.extend((alias.name, []) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                found.append((base, [alias.name for alias in node.names]))
            for field in ("body", "orelse", "handlers", "finalbody"):
                child = getattr(node, field, None)
                if isinstance(child, list) and child and isinstance(child[0], ast.stmt):
                    visit(child)
                elif field == "handlers" and child:
                    for handler in child:
                        visit(handler.body)

    visit(tree.body)
    return found


def edges(name: str) -> set[str]:
    """The lobgw modules `name` imports (a submodule named in `from pkg import sub` counts as
    the submodule, any other name as the package)."""
    targets: set[str] = set()
    for module, names in imports(name):
        if not module.startswith("lobgw"):
            continue
        submodules = [f"{module}.{item}" for item in names if f"{module}.{item}" in MODULES]
        targets.update(submodules)
        if not submodules or len(submodules) < len(names):
            targets.add(module)
    targets.discard(name)
    return targets


def layer_of(name: str) -> str | None:
    """The layer a module belongs to (its longest matching prefix in LAYERS)."""
    for layer in sorted(LAYERS, key=len, reverse=True):
        if name == layer or name.startswith(layer + "."):
            return layer
    return None


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("name", sorted(n for n in MODULES
                                        if within(n, "lobgw.book") or within(n, "lobgw.orders")))
def test_the_engine_and_the_tracker_are_pure(name: str) -> None:
    external = {module.split(".")[0] for module, _ in imports(name)}
    assert not external & PURE_FORBIDDEN, f"{name} imports {external & PURE_FORBIDDEN}"
    assert not any(within(target, "lobgw.actors") for target in edges(name))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_each_layer_imports_only_what_it_may(name: str) -> None:
    layer = layer_of(name)
    if name in ("lobgw", "lobgw.__main__") or within(name, "lobgw.cli"):
        return  # the package root (its version) and the command line sit on top
    assert layer is not None, f"{name} belongs to no layer: add it to LAYERS and ARCHITECTURE.md"
    allowed = LAYERS[layer]
    for target in edges(name):
        if within(target, layer):
            continue
        assert any(target == a or within(target, a) for a in allowed), (
            f"{name} ({layer}) may not import {target}")


def test_actors_are_transport_free() -> None:
    for name in MODULES:
        if within(name, "lobgw.actors"):
            external = {module.split(".")[0] for module, _ in imports(name)}
            assert not external & {"aiohttp", "aioprometheus", "websockets"}, name


def test_nothing_outside_the_actors_holds_an_engine() -> None:
    for name in MODULES:
        if within(name, "lobgw.book") or within(name, "lobgw.actors"):
            continue
        for module, names in imports(name):
            if within(module, "lobgw.book"):
                assert "Engine" not in names and module != "lobgw.book.engine", (
                    f"{name} imports the Engine: reach the book through its actor")
        assert "._engine" not in MODULES[name].read_text(), name


def test_there_is_no_import_cycle() -> None:
    graph = {name: edges(name) for name in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            connect(node)
    assert cycles == []


def test_the_graph_reader_sees_real_edges() -> None:
    """Guard the checks above against a reader that finds nothing."""
    assert "lobgw.book.engine" in edges("lobgw.actors.actor")
    assert "lobgw.gateway.routes" in edges("lobgw.gateway.openapi")
    assert "lobgw.gateway.rest" in edges("lobgw.gateway.routes")
    assert len(MODULES) > 40


def test_the_exception_tree_names_every_error_class() -> None:
    for info in pkgutil.walk_packages(lobgw.__path__, "lobgw."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    pending: list[type] = [LobgwError]
    seen: set[type] = set()
    while pending:
        cls = pending.pop()
        seen.add(cls)
        subclasses: list[type] = cls.__subclasses__()
        pending.extend(sub for sub in subclasses if sub.__module__.startswith("lobgw"))
    assert errors.__doc__ is not None
    missing = sorted(cls.__name__ for cls in seen if cls.__name__ not in errors.__doc__)
    assert missing == []


def test_one_error_table_covers_every_code_and_every_engine_rejection() -> None:
    assert set(ERRORS) == set(ErrorCode)
    for reason in REJECTIONS:
        assert ErrorCode(reason.value) in ERRORS
    # Reason holds only what the engine emits: every member appears in the engine's source,
    # or in a command's, which the engine carries into its event
    engine_source = (ROOT / "book" / "engine.py").read_text() + (
        ROOT / "book" / "commands.py").read_text()
    for reason in Reason:
        assert reason.name in engine_source, f"Reason.{reason.name} is never emitted"


def test_the_api_document_lists_every_code_under_its_status() -> None:
    document = (ROOT.parent / "docs" / "api.md").read_text()
    rows = {int(status): set(re.findall(r"`([A-Z_]+)`", codes))
            for status, codes in re.findall(r"^\| (\d{3}) \| (.*) \|$", document, flags=re.M)}
    for code, (status, _) in ERRORS.items():
        assert code.value in rows.get(status, set()), f"docs/api.md: {code} under {status}"
    assert set().union(*rows.values()) <= {code.value for code in ErrorCode}


@pytest.mark.parametrize(("module", "absent"), [
    ("lobgw.actors", {"aioprometheus", "aiohttp", "websockets"}),
    ("lobgw.book", {"asyncio", "aiohttp", "aioprometheus"}),
    ("lobgw.orders", {"asyncio", "aiohttp", "aioprometheus"}),
])
def test_importing_a_layer_loads_nothing_it_must_not(module: str, absent: set[str]) -> None:
    """Transitively, in a fresh interpreter (the actors once pulled in aioprometheus)."""
    import subprocess
    import sys

    probe = (f"import sys, {module}; print(sorted(m for m in {sorted(absent)!r} "
             "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"
