"""Storage behind one contract: DuckDB (default) or PostgreSQL, chosen by URL."""

from aggassets.errors import AggassetsError
from aggassets.warehouse.base import Warehouse


def open_warehouse(url: str) -> Warehouse:
    """`duckdb:///path`, `duckdb:///:memory:` or `postgresql://...`; tables are created if missing."""
    if url.startswith("duckdb://"):
        from aggassets.warehouse.duckdb_engine import DuckDBWarehouse

        path = (
            url.removeprefix("duckdb://").removeprefix("/")
            if url.startswith("duckdb:///:")
            else url.removeprefix("duckdb://")
        )
        return DuckDBWarehouse(path or ":memory:")
    if url.startswith(("postgresql://", "postgres://")):
        from aggassets.warehouse.postgres_engine import PostgresWarehouse

        return PostgresWarehouse(url)
    raise AggassetsError(f"unsupported warehouse URL {url!r}: use duckdb:///PATH or postgresql://...")
