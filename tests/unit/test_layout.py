"""The package layout: the worker never imports the sandbox (a test double, not in the image)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCTION_PACKAGES = ("worker", "contracts")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_production_packages_never_import_the_sandbox() -> None:
    # Given every module of the packages the image ships
    modules = [p for package in PRODUCTION_PACKAGES for p in (REPO / package).rglob("*.py")]
    assert modules
    # When their imports are read
    offenders = {
        str(p.relative_to(REPO)): sorted(
            n for n in imported_modules(p) if n.split(".")[0] in {"sandbox", "tests", "bench"}
        )
        for p in modules
    }
    # Then none names the sandbox, the tests or the bench
    assert {k: v for k, v in offenders.items() if v} == {}
