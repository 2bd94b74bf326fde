"""The house rules of ARCHITECTURE.md, checked on the source: import direction, no cycles, room sizes.

Every import counts, lazy ones inside functions and ``TYPE_CHECKING`` blocks included: a lazy
import still couples two modules, and a cycle through one breaks as soon as someone hoists it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "videolmm"

#: The core: plain Python + torch + transformers (+ PyAV/decord for media).
CORE = ("videolmm.models", "videolmm.media", "videolmm.errors", "videolmm.types", "videolmm.registry", "videolmm.log")
#: What the core must never import: the hosts, the integrations, the fixtures and the converters.
OUTSIDE_CORE = (
    "videolmm.plugin",
    "videolmm.load",
    "videolmm.serve",
    "videolmm.eval",
    "videolmm.tasks",
    "videolmm.toy",
    "videolmm.convert",
    "videolmm.cli",
)
#: Third-party hosts the core never imports.
HOST_LIBRARIES = ("lmms_eval", "ray", "pluggy", "fastapi", "starlette")
MAX_MODULE_LINES = 500
MAX_MODELS_LINES = 4000


@cache
def modules() -> dict[str, Path]:
    """Module name → file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imported_names(name: str, path: Path) -> Iterator[str]:
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules() else base


def _resolve(name: str) -> str | None:
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


@cache
def graph() -> dict[str, frozenset[str]]:
    """Module → the package modules it imports (every import statement, wherever it is)."""
    out = {}
    for name, path in modules().items():
        targets = {_resolve(n) for n in _imported_names(name, path) if n.split(".")[0] == "videolmm"}
        out[name] = frozenset(t for t in targets if t and t != name)
    return out


def third_party(name: str) -> set[str]:
    return {n.split(".")[0] for n in _imported_names(name, modules()[name]) if n.split(".")[0] != "videolmm"}


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph()[v]:
            if w not in index:
                visit(w)
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

    for v in graph():
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    assert _cycles() == []


def test_the_checker_sees_lazy_and_type_checking_imports() -> None:
    # engine -> spec is a top-level import; hookspecs -> engine sits under TYPE_CHECKING;
    # plugin.manager -> plugin.builtin is an import inside a function.
    assert "videolmm.models.spec" in graph()["videolmm.models.engine"]
    assert "videolmm.models.engine" in graph()["videolmm.plugin.hookspecs"]
    assert "videolmm.plugin.builtin" in graph()["videolmm.plugin.manager"]


def test_the_core_imports_no_host_integration_fixture_or_converter() -> None:
    bad = sorted(
        f"{m} imports {t}"
        for m, targets in graph().items()
        if _within(m, CORE)
        for t in targets
        if _within(t, OUTSIDE_CORE)
    )
    assert bad == []


def test_the_core_imports_no_host_library() -> None:
    bad = sorted(
        f"{m} imports {lib}" for m in modules() if _within(m, CORE) for lib in third_party(m) & set(HOST_LIBRARIES)
    )
    assert bad == []


@pytest.mark.parametrize(
    ("source", "forbidden"),
    [
        ("videolmm.media", ("videolmm.models",)),  # media sits below the models
        ("videolmm.errors", ("videolmm",)),  # leaves
        ("videolmm.types", ("videolmm.models", "videolmm.media", "videolmm.registry")),
        ("videolmm.registry", ("videolmm.models", "videolmm.media", "videolmm.types")),
        ("videolmm.convert", ("videolmm.toy", "videolmm.plugin", "videolmm.serve", "videolmm.eval")),
        ("videolmm.plugin", ("videolmm.convert", "videolmm.toy", "videolmm.serve", "videolmm.eval", "videolmm.load")),
        ("videolmm.eval", ("videolmm.serve",)),
        ("videolmm.serve", ("videolmm.eval", "videolmm.tasks", "videolmm.toy", "videolmm.convert")),
    ],
)
def test_import_direction(source: str, forbidden: tuple[str, ...]) -> None:
    allowed_self = ("videolmm.errors",) if source != "videolmm.errors" else ()
    bad = sorted(
        f"{m} imports {t}"
        for m, targets in graph().items()
        if _within(m, (source,))
        for t in targets
        if _within(t, forbidden) and not _within(t, (source, *allowed_self))
    )
    assert bad == []


def test_no_module_over_the_size_limit() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}
    models = sum(n for name, n in sizes.items() if _within(name, ("videolmm.models",)))
    assert models < MAX_MODELS_LINES, f"videolmm.models has {models} lines"


def test_importing_the_core_and_building_the_registry_stay_light() -> None:
    """Importing the core (families' transformers classes aside) and discovering every plugin's
    components imports neither torch, transformers, PyAV, decord, nor any host library."""
    heavy_rooms = (".modeling", ".processing", ".configuration")  # transformers classes live there, by design
    core = sorted(
        m for m in modules() if _within(m, ("videolmm.models", "videolmm.media")) and not m.endswith(heavy_rooms)
    )
    code = (
        "import sys\n" + "".join(f"import {m}\n" for m in core) + "from videolmm.plugin.manager import get_registry\n"
        "get_registry()\n"
        "heavy = {'torch', 'transformers', 'av', 'decord', 'lmms_eval', 'ray'} & set(sys.modules)\n"
        "print(','.join(sorted(heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
