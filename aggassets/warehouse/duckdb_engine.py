"""The DuckDB warehouse: one embedded database file (or :memory:)."""

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from aggassets.catalog import MeasureDefinition
from aggassets.errors import AggassetsError, WarehouseUnavailable
from aggassets.warehouse import duckdb_sql, intake, intake_fast, intake_files
from aggassets.warehouse.base import Warehouse
from aggassets.warehouse.values import FileState, IntakeResult, file_state

_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def _bind(statement: str, params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The parameters the statement names (DuckDB refuses extra ones)."""
    names = set(_PARAM.findall(statement))
    return {k: v for k, v in params.items() if k in names} if params and names else None


# DuckDB lets one process open a file at a time: a sensor's short read (tens of ms) or a command finishing
# would make a run starting then fail, so a held lock is retried for this long before it is an error.
LOCK_WAIT_SECONDS = 5.0


def _pause() -> None:
    """The wait between two attempts to open a held file."""
    time.sleep(0.2)


_OWN_FILE = "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"


def _connect(path: str) -> duckdb.DuckDBPyConnection:
    """duckdb.connect, retried while another process holds the file's lock (up to LOCK_WAIT_SECONDS)."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            return duckdb.connect(path)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                raise
            _pause()


class DuckDBWarehouse(Warehouse):
    """Warehouse on a DuckDB file; one connection for the object's life."""

    sql = duckdb_sql
    # DuckDB's memory bound while ingesting a file: beyond it the items spill to <database>.tmp. 1.5 GB holds
    # the 1.4 GiB of a 10M-item file's lines (5% faster than 1 GB, which spilled them; peak RSS 1.6 GiB).
    intake_memory_limit = "1.5GB"

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # a file where a folder should be, no permission, ...
                reason = exc.strerror or exc
                raise AggassetsError(
                    f"cannot open the DuckDB warehouse {path}: cannot create its folder {exc.filename}: {reason}"
                ) from exc
        self.path = path
        try:
            self.con = _connect(path)
        except duckdb.Error as exc:  # held by another process (a run, another command), not a DuckDB file, ...
            held = isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()
            error = WarehouseUnavailable if held else AggassetsError
            raise error(f"cannot open the DuckDB warehouse {path}: {str(exc).splitlines()[0]}") from exc
        if path != ":memory:" and self.con.execute(_OWN_FILE).fetchone() == (None,):
            self.con.close()  # DuckDB opens a .json, .csv or .parquet file as a database in memory over it
            raise AggassetsError(f"cannot open the DuckDB warehouse {path}: not a DuckDB database file")
        self.con.execute("SET TimeZone = 'UTC'; SET enable_progress_bar = false")  # no bar on stderr
        self._staged: list[str] = []
        self.setup()

    def execute(self, statement: str, params: Mapping[str, Any] | None = None) -> None:
        """Run one statement with named parameters."""
        self.con.execute(statement, _bind(statement, params))

    def fetch(self, statement: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run one query and return its rows as a DataFrame."""
        return self.con.execute(statement, _bind(statement, params)).df()

    def stage(self, name: str, table: pa.Table) -> None:
        """Copy the Arrow table into a temp table `name` (replaced if present)."""
        self.con.register("_arrow_in", table)
        try:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM _arrow_in")
        finally:
            self.con.unregister("_arrow_in")
        self._staged.append(name)

    def ingest_file(
        self,
        path: Path,
        definitions: Sequence[MeasureDefinition],
        first_day: date,
        sha256: str | None = None,
        once: bool = False,
        unchanged_since: FileState | None = None,
    ) -> IntakeResult:
        """Read, validate and store the file in one transaction of the warehouse connection.

        The items are read once into `lines`; the inbox and raw_measures are filled from it directly
        (the fast path, intake_fast.py); only the items it leaves are checked carefully (intake.py).
        """
        read = unchanged_since or file_state(path)
        self.con.execute("SET memory_limit = $limit", {"limit": self.intake_memory_limit})
        try:
            row0, received = intake_files.read_items(self.con, Path(path))  # before: it may read twice
            with self.transaction():
                self._staged.append("staged")
                # after any writer lock: received_at orders with commits, and `once` sees every stored batch
                ids = {**self.batch_ids(sha256 if once else None), "row0": row0}
                self.execute(self.sql.INSERT_INBOX, ids)
                self.execute("DROP TABLE temp.lines")  # memory: the items are in the inbox now
                # raw rows carry their seq: their order inside the batch's new row groups does not matter
                self.con.execute("SET preserve_insertion_order = false")
                fast = int(
                    self.fetch(
                        self.sql.INSERT_RAW_FAST, {**ids, **intake_fast.fast_params(self.con, definitions, first_day)}
                    ).iloc[0, 0]
                )
                if fast < received:
                    with intake.definitions_registered(self.con, definitions):
                        self.execute(self.sql.STAGE_CAREFUL, {**ids, "first_day": first_day, "received": received})
                    for statement in (self.sql.INSERT_RAW_CAREFUL, self.sql.INSERT_REJECTED_CAREFUL):
                        self.execute(statement, ids)
                return self.record_batch(ids, Path(path), sha256, received, read)
        finally:
            self.con.execute("DROP TABLE IF EXISTS temp.lines")
            self.con.execute("RESET memory_limit; RESET preserve_insertion_order")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN ... COMMIT, ROLLBACK on any error; temp tables dropped after."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        else:
            self.con.execute("COMMIT")
        finally:
            for name in self._staged:
                self.con.execute(f"DROP TABLE IF EXISTS temp.{name}")  # never a table of the warehouse
            self._staged.clear()

    def close(self) -> None:
        """Close the connection (releases the file lock)."""
        self.con.close()
