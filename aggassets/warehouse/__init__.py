"""Storage behind one contract: DuckDB (default) or PostgreSQL, chosen by URL."""

import os
import re
from pathlib import Path

from aggassets.errors import AggassetsError
from aggassets.settings import warehouse_url
from aggassets.warehouse.base import Warehouse


def redacted(url: str) -> str:
    """The URL with the password of its user part (`user:password@`) replaced by `***`, for messages
    (a run's error is stored in Dagster's event log); the user part ends at the URL's last '@'."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    user, at, host = rest.rpartition("@")  # the last '@': a password with an unencoded '/' or '@' too
    if not at or ":" not in user:
        return url
    return f"{scheme}://{user.split(':', 1)[0]}:***@{host}"


def without_password(message: str, url: str) -> str:
    """The message with the URL's password, and its pieces around '@', '%', '/', ':', '?' or '#' of 3
    characters or more (what libpq quotes from a password it parsed another way), replaced by `***`."""
    user = url.partition("://")[2].rpartition("@")[0]
    password = user.partition(":")[2]
    for piece in sorted({password, *re.split("[@%/:?#]", password)}, key=len, reverse=True):
        if len(piece) >= 3:
            message = message.replace(piece, "***")
    return message


def duckdb_path(url: str) -> str | None:
    """The file (or ':memory:') of a DuckDB URL: what follows `duckdb://`, so `duckdb:///abs/path` (or
    `duckdb:////abs/path`) is absolute and `duckdb://rel/path` relative; None for another URL."""
    if not url.startswith("duckdb://"):
        return None
    path = url.removeprefix("duckdb://")
    if "?" in path:  # a query string copied from a PostgreSQL URL would name a new file
        raise AggassetsError(f"DuckDB warehouse URLs take no options (?...): {redacted(url)!r}")
    if path.startswith("/:"):
        path = path[1:]
    return "/" + path.lstrip("/") if path.startswith("//") else path or ":memory:"


def require_existing(url: str) -> None:
    """Refuse a DuckDB URL whose file does not exist, or a PostgreSQL schema without the warehouse tables
    (commands that only read or refresh what is there: a mistyped URL must not answer `[]`)."""
    require_lasting(url)
    path = duckdb_path(url)
    if path is not None and not Path(path).is_file():
        raise AggassetsError(
            f"no DuckDB warehouse at {path}: ingest measures first, or check --warehouse / AGGASSETS_WAREHOUSE"
        )
    if url.startswith(("postgresql://", "postgres://")):
        from aggassets.warehouse.postgres_engine import holds_warehouse, split_url

        if not holds_warehouse(url):
            schema = split_url(url)[1]
            where = f"PostgreSQL schema {schema}" if schema else "the connection's current PostgreSQL schema"
            raise AggassetsError(
                f"no aggassets warehouse in {where}: ingest measures first, or check --warehouse / AGGASSETS_WAREHOUSE"
            )


def require_lasting(url: str) -> None:
    """Refuse an in-memory DuckDB URL (`duckdb://`, `duckdb:///:memory:`) where what is stored must last."""
    refuse_default_in_production(url)
    if duckdb_path(url) == ":memory:":
        raise AggassetsError(f"{url!r} is an in-memory DuckDB warehouse: nothing would be kept; use duckdb:///PATH")


def refuse_default_in_production(url: str) -> None:
    """Refuse the project's DuckDB file taken by default (AGGASSETS_WAREHOUSE unset) in an environment that
    sets DAGSTER_PG_HOST: a production environment file that did not load whole (an unquoted `&` in the
    URL, say) must not send production writes to a local file."""
    if url == warehouse_url() and not os.environ.get("AGGASSETS_WAREHOUSE") and os.environ.get("DAGSTER_PG_HOST"):
        raise AggassetsError(
            "AGGASSETS_WAREHOUSE is not set, though DAGSTER_PG_HOST is (a production environment): set it, "
            f"to {url} if the project's DuckDB file is meant (in an environment file, in single quotes)"
        )


def open_warehouse(url: str) -> Warehouse:
    """`duckdb:///path`, `duckdb:///:memory:` or `postgresql://...`; tables are created if missing."""
    refuse_default_in_production(url)
    path = duckdb_path(url)
    if path is not None:
        from aggassets.warehouse.duckdb_engine import DuckDBWarehouse

        return DuckDBWarehouse(path)
    if url.startswith(("postgresql://", "postgres://")):
        from aggassets.warehouse.postgres_engine import PostgresWarehouse

        return PostgresWarehouse(url)
    raise AggassetsError(f"unsupported warehouse URL {redacted(url)!r}: use duckdb:///PATH or postgresql://...")
