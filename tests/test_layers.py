"""The code's flow: pipeline <- collectors <- warehouse <- the CLI, and inside the warehouse
catalog <- reports <- vouchers, catalog <- ops. No import runs back up, none goes in a circle
(imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("pipeline", "collectors", "warehouse", "gpuledger")
# a module may import only from its own layer and the layers before it
ORDER = {"pipeline": 0, "collectors": 1, "warehouse": 2, "gpuledger": 3}
# inside the warehouse: who may import whom (besides itself)
WAREHOUSE = {
    "catalog": set(),
    "reports": {"catalog"},
    "vouchers": {"catalog", "reports", "html"},
    "ops": {"catalog", "reports", "vouchers"},
    "html": {"reports", "vouchers"},
    "spark": {"catalog", "reports", "vouchers"},
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def _graph() -> dict[str, set[str]]:
    files = {_module(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}
    graph = {}
    for name, path in files.items():
        graph[name] = {m for m in _imports(path) if m in files and m != name}
    return graph


def _warehouse_area(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "warehouse" or len(parts) < 2:
        return None
    return parts[1]


def test_layers_run_one_way() -> None:
    wrong = []
    for name, deps in _graph().items():
        for dep in deps:
            if ORDER[dep.split(".")[0]] > ORDER[name.split(".")[0]]:
                wrong.append(f"{name} imports {dep}")
            here, there = _warehouse_area(name), _warehouse_area(dep)
            if here and there and here != there and there not in WAREHOUSE.get(here, set()):
                wrong.append(f"{name} imports {dep}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_circle() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                circles.append(path[path.index(dep) :] + [dep] if dep in path else [node, dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not circles, "\n".join(" -> ".join(c) for c in circles)


@pytest.mark.parametrize("pkg", PACKAGES)
def test_modules_stay_small(pkg: str) -> None:
    big = [
        f"{p.relative_to(REPO)}: {n} lines"
        for p in (REPO / pkg).rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400
    ]
    assert not big, "\n".join(big)
