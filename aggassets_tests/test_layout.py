"""Conventions that keep the project easy to change (DESIGN §1-§2)."""

import ast
import os
import subprocess
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
    """DESIGN §2: SQL lives only in warehouse/ (and sources/<name>/queries.py), the demo's generator too."""
    package = PROJECT_ROOT / "aggassets"
    checked = 0
    for path in package.rglob("*.py"):
        inside = path.relative_to(package).parts
        if inside[0] == "warehouse" or (inside[0] == "sources" and path.name == "queries.py"):
            continue
        text = path.read_text().upper()
        assert not [s for s in ("SELECT ", "INSERT INTO", "DELETE FROM", "COPY (", "CREATE TABLE") if s in text], path
        checked += 1
    assert checked > 30


def test_the_production_environment_file_survives_the_shell_with_any_url_or_password(tmp_path: Path) -> None:
    """README: `set -a; . FILE; set +a` loads the template's values; quoted, a URL with `&` between query
    parameters and a password with `$`, spaces and `;` arrive whole (unquoted, `&` sent the line to the
    background and left AGGASSETS_WAREHOUSE unset)."""
    url = "postgresql://aggassets:p%40ss@db.internal:5432/aggassets?schema=prod&sslmode=require"
    password = "Dg$x y;z&w"
    text = (PROJECT_ROOT / "deploy" / "production.env.template").read_text()
    text = text.replace("postgresql://aggassets:CHANGE_ME@db.internal:5432/aggassets", url)
    text = text.replace("DAGSTER_PG_PASSWORD='CHANGE_ME'", f"DAGSTER_PG_PASSWORD='{password}'")
    (tmp_path / "env").write_text(text)
    script = 'set -a; . ./env; set +a; printf "%s\\n%s\\n" "$AGGASSETS_WAREHOUSE" "$DAGSTER_PG_PASSWORD"'
    env = {"PATH": os.environ["PATH"]}
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == [url, password]
