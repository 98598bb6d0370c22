"""Shared fixtures."""

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg2
import pytest
from psycopg2 import sql as pgsql

from aggassets.warehouse import open_warehouse
from aggassets.warehouse.base import Warehouse

# --- warehouse engines (the contract suite runs on every engine) ---------------------------------
# DuckDB always (a temp file); PostgreSQL from AGGASSETS_TEST_PG_DSN, else the local default when
# it answers. Each test gets a fresh schema, dropped afterwards. Without a server the PostgreSQL
# cases skip, unless AGGASSETS_REQUIRE_PG=1, where they fail.

PG_DSN_ENV = "AGGASSETS_TEST_PG_DSN"
PG_REQUIRE_ENV = "AGGASSETS_REQUIRE_PG"
DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
ENGINES = ("duckdb", "postgres")

WarehouseFactory = Callable[[], Warehouse]


@cache
def pg_server() -> tuple[str | None, str]:
    """(DSN, '') when a PostgreSQL server answers, else (None, why not)."""
    dsn = os.environ.get(PG_DSN_ENV) or DEFAULT_PG_DSN
    try:
        psycopg2.connect(dsn, connect_timeout=3).close()
    except psycopg2.Error as exc:
        source = PG_DSN_ENV if os.environ.get(PG_DSN_ENV) else f"the default {DEFAULT_PG_DSN} ({PG_DSN_ENV} unset)"
        return None, f"no PostgreSQL server at {source}: {str(exc).strip().splitlines()[0]}"
    return dsn, ""


def require_pg() -> str:
    """The test DSN; skips (or fails under AGGASSETS_REQUIRE_PG=1) when no server answers."""
    dsn, why = pg_server()
    if dsn is None:
        if os.environ.get(PG_REQUIRE_ENV) == "1":
            pytest.fail(f"{PG_REQUIRE_ENV}=1 but {why}")
        pytest.skip(why)
    return dsn


def with_schema(dsn: str, schema: str) -> str:
    """The DSN with our `schema` query parameter (understood by PostgresWarehouse)."""
    parts = urlsplit(dsn)
    query = [*parse_qsl(parts.query), ("schema", schema)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def drop_schema(dsn: str, schema: str) -> None:
    """DROP SCHEMA ... CASCADE on a connection of its own."""
    con = psycopg2.connect(dsn)
    try:
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pgsql.Identifier(schema)))
    finally:
        con.close()


@contextmanager
def fresh_pg_schema() -> Iterator[str]:
    """A URL of a fresh PostgreSQL schema, dropped on exit (skips when no server answers)."""
    dsn = require_pg()
    schema = f"aggassets_test_{uuid.uuid4().hex[:12]}"
    try:
        yield with_schema(dsn, schema)
    finally:
        drop_schema(dsn, schema)


@pytest.fixture(params=[pytest.param("duckdb"), pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty warehouse of each engine: a temp DuckDB file, or a fresh PostgreSQL schema."""
    if request.param == "duckdb":
        yield f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
        return
    with fresh_pg_schema() as url:
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL of a fresh PostgreSQL schema (for tests that compare the engines side by side)."""
    with fresh_pg_schema() as url:
        yield url


@pytest.fixture
def open_wh(warehouse_url: str) -> Iterator[WarehouseFactory]:
    """Opens connections to the test warehouse; closes them all at the end."""
    opened: list[Warehouse] = []

    def factory() -> Warehouse:
        opened.append(open_warehouse(warehouse_url))
        return opened[-1]

    yield factory
    for wh in reversed(opened):
        wh.close()


@pytest.fixture
def warehouse(open_wh: WarehouseFactory) -> Warehouse:
    """An empty warehouse (tables created), on each engine."""
    return open_wh()


# --- end of warehouse engines ------------------------------------------------------------------
