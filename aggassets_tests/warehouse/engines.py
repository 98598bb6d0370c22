"""Test engines: the PostgreSQL test server (or why there is none) and throwaway schemas."""

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg2
import pytest
from psycopg2 import sql as pgsql

from aggassets.warehouse.base import Warehouse

PG_DSN_ENV = "AGGASSETS_TEST_PG_DSN"
PG_REQUIRE_ENV = "AGGASSETS_REQUIRE_PG"
DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
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
