"""The package layers: no package imports one above it, and no two packages import each other.

Modules of one layer (the foundation's, the entry points') may import each other, but not in a cycle.

Every import is read from the source (function-level imports too; ``if TYPE_CHECKING:`` blocks
are annotations, not imports). Layers, bottom to top:
foundation (base, errors, registry) < backends < executors < suites < store < harness < serving < metrics
< reports < orchestration < the entry points (cli, doctor, pytest plugin, progress, runlog, package root).
"""

from __future__ import annotations

import ast
from pathlib import Path

import t2ibench

PACKAGE = Path(t2ibench.__file__).parent

LAYERS = [
    {"t2ibench.base", "t2ibench.errors", "t2ibench.registry"},
    {"t2ibench.backends"},
    {"t2ibench.executors"},
    {"t2ibench.suites"},
    {"t2ibench.store"},
    {"t2ibench.harness"},
    {"t2ibench.serving"},
    {"t2ibench.metrics"},
    {"t2ibench.reports"},
    {"t2ibench.orchestration"},
    {"t2ibench.cli", "t2ibench.doctor", "t2ibench.pytest_plugin", "t2ibench.progress", "t2ibench.runlog", "t2ibench",
     "t2ibench.__main__"},
]
# Suites validate a suite's ``metrics:`` through the metric declarations (ARCHITECTURE.md, Layers).
ALLOWED_UPWARD = {("t2ibench.suites", "t2ibench.metrics.registry")}
# The package root (``__version__``; its API attributes load lazily) is imported before any submodule anyway.
ROOT = "t2ibench"


def unit(module: str) -> str:
    """The layer unit of a module: its package below t2ibench, or the top-level module itself."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def rank(module: str) -> int:
    u = unit(module)
    for i, layer in enumerate(LAYERS):
        if u in layer:
            return i
    raise AssertionError(f"{module} belongs to no layer; add its package to LAYERS")


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(source: str, module: str, is_package: bool) -> set[str]:
    """The t2ibench modules a source imports at run time (relative imports resolved)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = module.split(".")
                    anchor = anchor[: len(anchor) - child.level + (1 if is_package else 0)]
                    base = ".".join(anchor + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{a.name}" for a in child.names)
            visit(child)

    visit(ast.parse(source))
    return {m for m in found if m == "t2ibench" or m.startswith("t2ibench.")}


def edges() -> set[tuple[str, str]]:
    out = set()
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        for target in imports_of(path.read_text(encoding="utf-8"), name, path.name == "__init__.py"):
            if _exists(target):
                out.add((name, target))
    return out


def _exists(module: str) -> bool:
    rel = Path(*module.split("."))
    return (PACKAGE.parent / rel).with_suffix(".py").is_file() or (PACKAGE.parent / rel / "__init__.py").is_file()


def violations(found: set[tuple[str, str]]) -> list[str]:
    bad = []
    units = {(unit(a), unit(b)) for a, b in found if unit(a) != unit(b)}
    for a, b in sorted(found):
        if unit(a) == unit(b) or (unit(a), b) in ALLOWED_UPWARD or b == ROOT:
            continue
        if rank(b) > rank(a):
            bad.append(f"{a} imports {b}, a layer above it")
    for a, b in sorted(units):
        if (b, a) in units and a < b and ROOT not in (a, b):
            bad.append(f"{a} and {b} import each other")
    return bad


def test_every_module_belongs_to_a_layer():
    for path in PACKAGE.rglob("*.py"):
        rank(_module_name(path))


def test_no_package_imports_one_above_it_or_its_neighbour():
    assert violations(edges()) == []


def test_the_check_catches_an_upward_import_and_a_cycle():
    assert violations({("t2ibench.harness.worker", "t2ibench.reports.tables")}) == \
        ["t2ibench.harness.worker imports t2ibench.reports.tables, a layer above it"]
    cycle = violations({("t2ibench.metrics.fid", "t2ibench.harness.plan"), ("t2ibench.harness.plan", "t2ibench.metrics.fid")})
    assert "t2ibench.harness and t2ibench.metrics import each other" in cycle
    # a function-level import counts; an annotation-only import does not
    src = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import t2ibench.reports\n" \
          "def f():\n    from t2ibench.harness import plan\n"
    assert imports_of(src, "t2ibench.metrics.x", False) == {"t2ibench.harness", "t2ibench.harness.plan"}


def test_metrics_score_folders_without_harness_or_reports():
    metric_imports = {b for a, b in edges() if unit(a) == "t2ibench.metrics"}
    assert not {unit(b) for b in metric_imports} & {"t2ibench.harness", "t2ibench.reports", "t2ibench.suites"}
