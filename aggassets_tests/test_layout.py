"""Conventions that keep the project easy to change (DESIGN §1-§2)."""

import ast
from pathlib import Path

from aggassets.settings import PROJECT_ROOT

FORBIDDEN_IN_STATS = ("dagster", "duckdb", "psycopg", "psycopg2", "sqlalchemy")


def imports(path: Path) -> set[str]:
    """Top-level module names a file imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_stats_import_neither_dagster_nor_a_database_driver() -> None:
    files = list((PROJECT_ROOT / "aggassets" / "stats").rglob("*.py"))
    assert files
    for path in files:
        assert not imports(path) & set(FORBIDDEN_IN_STATS), path


def test_no_future_annotations_anywhere() -> None:
    for folder in ("aggassets", "aggassets_tests"):
        for path in (PROJECT_ROOT / folder).rglob("*.py"):
            assert "__future__" not in imports(path), path


def test_sql_only_in_warehouse_and_sources() -> None:
    for path in (PROJECT_ROOT / "aggassets" / "assets").rglob("*.py"):
        text = path.read_text().upper()
        assert "SELECT " not in text and "INSERT INTO" not in text, path
