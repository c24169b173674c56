"""The house's layout rules (ARCHITECTURE.md), read from the source: which package may import which, and no
import circle between modules, so a folder says what it holds and new code lands in the right room."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "carspot"
PARTS = ("ingest", "detector", "classifier", "store")
"""The design card's parts: none imports another; `analysis`, `pipeline` and `cli` wire them."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[str]:
    """Every carspot module `path` imports, at module level or inside a function (``from package import
    module`` names the module)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.startswith("carspot"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("carspot"):
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                is_module = (PACKAGE.parent / submodule.replace(".", "/")).with_suffix(".py").exists()
                yield submodule if is_module else node.module


def package_of(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else ""


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
EDGES = {name: set(imports(path)) for name, path in MODULES.items()}


@pytest.mark.parametrize("part", PARTS)
def test_the_design_cards_parts_never_import_one_another(part: str) -> None:
    crossing = {
        (name, target)
        for name, targets in EDGES.items()
        if package_of(name) == part
        for target in targets
        if package_of(target) in PARTS and package_of(target) != part
    }
    assert not crossing


def test_analysis_composes_the_parts_without_the_transport_or_the_command_line() -> None:
    reaching_out = {
        (name, target)
        for name, targets in EDGES.items()
        if package_of(name) == "analysis"
        for target in targets
        if package_of(target) in ("pipeline", "cli", "dashboards")
    }
    assert not reaching_out


def test_nothing_imports_the_command_line() -> None:
    assert not {
        name
        for name, targets in EDGES.items()
        if package_of(name) != "cli" and any(package_of(t) == "cli" for t in targets)
    }


def test_no_module_takes_part_in_an_import_circle() -> None:
    """Module-level and deferred imports both count: a circle through a function-level import is still a
    circle a reader has to untangle."""
    graph = {name: {t for t in targets if t in MODULES and t != name} for name, targets in EDGES.items()}
    # a package's __init__ is imported by its modules implicitly; only explicit edges count
    circles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert circles == []


def test_the_pipeline_package_holds_the_transport_the_worker_and_the_wiring_only() -> None:
    analysis_modules = {"analysis", "evaluation", "parallel", "scenes", "car_free", "coverage", "outcomes", "cli"}
    left_behind = {p.stem for p in (PACKAGE / "pipeline").glob("*.py")} & analysis_modules
    assert not left_behind
