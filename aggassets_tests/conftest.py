"""Shared fixtures."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from aggassets.warehouse import open_warehouse
from aggassets.warehouse.base import Warehouse
from aggassets_tests.warehouse.engines import WarehouseFactory, fresh_pg_schema

# --- warehouse engines (the contract suite runs on every engine) ---------------------------------
# DuckDB always (a temp file); PostgreSQL from AGGASSETS_TEST_PG_DSN, else the local default when
# it answers. Each test gets a fresh schema, dropped afterwards. Without a server the PostgreSQL
# cases skip, unless AGGASSETS_REQUIRE_PG=1, where they fail.


@pytest.fixture(params=[pytest.param("duckdb"), pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty warehouse of each engine: a temp DuckDB file, or a fresh PostgreSQL schema."""
    if request.param == "duckdb":
        yield f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
        return
    with fresh_pg_schema() as url:
        yield url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses postgres_url is a PostgreSQL test (`-m "not postgres"` leaves it out)."""
    for item in items:
        if "postgres_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


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
