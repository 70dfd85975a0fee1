"""The layering of DESIGN.md, kept true: `docformer` is a library usable with no Prefect, no
database and no bucket; `db` knows neither the flows nor the model; `embedded` starts and
checks the services and knows nothing of what runs on them (no flows, schema or model, no
Prefect or S3 client). Every import statement of every module counts, including the ones inside
functions (imported late for speed, still a dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "docformer": {"flows", "db", "prefect", "sqlalchemy", "minio"},
    "db": {"flows", "docformer", "prefect"},
    "embedded": {"flows", "docformer", "db", "prefect", "minio"},
}


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every package a module imports (relative imports stay inside)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_nothing_its_layer_forbids(package):
    modules = sorted((ROOT / package).rglob("*.py"))
    assert modules, f"no modules found under {package}/"
    crossings = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in modules
    }
    assert {path: names for path, names in crossings.items() if names} == {}


def test_the_check_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "late.py"
    module.write_text("def f():\n    from flows.tasks import x\n    import prefect.tasks\n")
    assert imported_packages(module) == {"flows", "prefect"}
