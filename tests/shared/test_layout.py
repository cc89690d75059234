"""The layout's one rule: services talk only through topics, so none imports another's code.

Each service package may import `beepgpt` (the shared contracts and runtime) and itself; the
offline package (training, evaluation, cross-service commands) sits above the services and
imports them, never the other way round. Lazy imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("ingest", "sessionizer", "scorer", "notifier")
PROJECT = (*SERVICES, "offline", "devstack", "bench")


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_project_package(service: str) -> None:
    package = REPO / "services" / service / service
    modules = sorted(package.rglob("*.py"))
    assert modules, f"{package} holds no modules"
    wrong = {
        f"{path.relative_to(REPO)} imports {name}"
        for path in modules
        for name in imported_packages(path)
        if name in PROJECT and name != service
    }
    assert sorted(wrong) == []


def test_the_rule_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from scorer.interest import activity\n    import offline.tables\n")
    assert imported_packages(module) == {"scorer", "offline"}
