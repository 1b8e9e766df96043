"""A service's own tests import no other service: what crosses services is tested here, in
the top-level ``tests/`` (import-linter keeps the services' code apart; this keeps their
test suites apart too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICES = sorted(path.name for path in (ROOT / "services").iterdir() if (path / "tests").is_dir())


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_s_tests_import_no_other_service(service: str) -> None:
    others = set(SERVICES) - {service}
    found = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in (ROOT / "services" / service / "tests").rglob("*.py")
        for name in imported_roots(path) & others
    }
    assert not found, sorted(found)
