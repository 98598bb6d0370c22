"""The PostgreSQL warehouse: one psycopg2 connection, an optional schema of its own."""

import contextlib
import io
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pandas as pd
import psycopg2
import pyarrow as pa
import pyarrow.csv as pa_csv
from psycopg2 import sql as pgsql

from aggassets.catalog import MeasureDefinition
from aggassets.errors import AggassetsError, WarehouseUnavailable
from aggassets.warehouse import intake, intake_fast, postgres_sql, redacted, without_password
from aggassets.warehouse.aggregates_sql import RAW_KEY_COLUMNS
from aggassets.warehouse.base import Warehouse
from aggassets.warehouse.postgres_values import copyable, pg_type, plain_params, result_column
from aggassets.warehouse.values import FileState, IntakeResult, file_state

_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_log = logging.getLogger("aggassets")
# Said once a write finds another one going on (the lock has no time limit: see README, "The writer lock")
LOCK_WAIT_MESSAGE = "waiting for another write to the warehouse ({schema}) to finish: PostgreSQL's writer lock"
_COPY_ROWS = 500_000  # rows per COPY of an intake: bounds the CSV buffer


_DDL = re.compile(
    r"\s*(?:CREATE TABLE IF NOT EXISTS (\w+)|CREATE INDEX IF NOT EXISTS (\w+)"
    r"|ALTER TABLE (\w+) ADD COLUMN IF NOT EXISTS (\w+))"
)


def _ddl_object(statement: str) -> tuple[str, ...] | None:
    """What a schema statement creates: ("table", name), ("index", name), ("column", table, column)."""
    match = _DDL.match(statement)
    if match is None:
        return None
    table, index, altered, column = match.groups()
    return ("table", table) if table else ("index", index) if index else ("column", altered, column)


_HOST = r"(\[[^\]]*\]|[^:,\[\]]*)(:[0-9]*)?"  # a name or [IPv6 address], an optional port
_HOSTS = re.compile(f"{_HOST}(,{_HOST})*")  # libpq's comma-separated hosts


def split_url(url: str) -> tuple[str, str | None]:
    """The libpq URL without our `schema` query parameter, and that schema (if any; a name that is not a
    plain identifier is an error, for every command alike). The rest of the URL is kept as written (a
    socket URL `postgresql:///db`, percent-encoded options)."""
    base, _, query = url.partition("?")
    query, hash_mark, fragment = query.partition("#")
    items = [item for item in query.split("&") if item]
    schemas = [unquote_plus(item.partition("=")[2]) for item in items if item.partition("=")[0] == "schema"]
    rest = "&".join(item for item in items if item.partition("=")[0] != "schema")
    scheme, sep, tail = base.partition("://")
    authority = tail.partition("/")[0]
    # libpq would read what follows the first '@' as the host; or, with a '/' in the password, the authority
    # would end inside it (at the first '/'), leaving no valid host[:port] list and an '@' after it
    slashed = not _HOSTS.fullmatch(authority.rpartition("@")[2]) and "@" in tail[len(authority) :]
    if authority.count("@") > 1 or slashed:
        raise AggassetsError(
            f"the user or password of the PostgreSQL URL {redacted(url)!r} holds '@' or '/': percent-encode it "
            "(@ is %40, : is %3A, / is %2F)"
        )
    base = ("postgresql" if scheme in ("postgres", "postgresql") else scheme) + sep + tail
    schema = schemas[-1] if schemas else None
    if schema is not None:
        _check_schema_name(schema)
    return base + (f"?{rest}" if rest else "") + hash_mark + fragment, schema


def _check_schema_name(schema: str) -> None:
    """Refuse a schema name that is not a plain identifier (letters, digits, _; case-sensitive)."""
    if not _SCHEMA_NAME.fullmatch(schema):
        raise AggassetsError(f"invalid PostgreSQL schema name {schema!r}")


# The columns of aggassets' inbox: a table `inbox` without them is another application's.
# From the catalog, which every role sees (information_schema shows only what the role may use: a role
# without SELECT would be told there is no warehouse, rather than that it may not read it).
_INBOX_COLUMNS = """SELECT count(*) FILTER (WHERE a.attname IN ('seq', 'batch_id', 'received_at', 'payload')), count(*)
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = coalesce(%(s)s, current_schema()) AND c.relname = 'inbox' AND a.attnum > 0 AND NOT a.attisdropped"""


def _inbox_state(cur: Any, schema: str | None) -> str:
    """'absent', 'ours' or 'foreign': the schema's table `inbox`."""
    cur.execute(_INBOX_COLUMNS, {"s": schema})
    ours, columns = cur.fetchone()
    return "absent" if columns == 0 else "ours" if ours == 4 else "foreign"


def _foreign_schema(schema: str | None) -> AggassetsError:
    """The error for a schema whose `inbox` table is another application's."""
    where = f"PostgreSQL schema {schema}" if schema else "the connection's current PostgreSQL schema"
    return AggassetsError(f"{where} holds a table inbox that is not aggassets': use a schema of its own (?schema=NAME)")


# libpq's words for a server that may answer later (down, starting, full); a wrong role, password or
# database fails at once.
_TRANSIENT = (
    "Connection refused",
    "timeout expired",
    "timed out",
    "the database system is",
    "too many clients",
    "server closed the connection",
    "No route to host",
    "Network is unreachable",
)


def _connect(dsn: str) -> psycopg2.extensions.connection:
    """A connection; a server that does not accept it now (down, starting, full) is WarehouseUnavailable,
    which runs retry. The URL's password never appears in the message."""
    try:
        return psycopg2.connect(dsn)
    except psycopg2.Error as exc:
        sentences = "; ".join(" ".join(line.split()) for line in str(exc).splitlines() if line.strip())
        message = f"cannot connect to PostgreSQL: {without_password(sentences, dsn)}"
        transient = isinstance(exc, psycopg2.OperationalError) and any(m in message for m in _TRANSIENT)
        error = (WarehouseUnavailable if transient else AggassetsError)(message)
    raise error  # outside the except: psycopg2's own message (a password piece in it) is not chained


def holds_warehouse(url: str) -> bool:
    """Whether the URL's schema (else the connection's current schema) holds the warehouse tables;
    creates nothing. A schema with another application's `inbox` is an error."""
    dsn, schema = split_url(url)
    con = _connect(dsn)
    try:
        with con.cursor() as cur:
            state = _inbox_state(cur, schema)
    finally:
        con.close()
    if state == "foreign":
        raise _foreign_schema(schema)
    return state == "ours"


class PostgresWarehouse(Warehouse):
    """Warehouse on a PostgreSQL database; one connection for the object's life."""

    sql = postgres_sql

    def __init__(self, url: str, schema: str | None = None) -> None:
        dsn, url_schema = split_url(url)
        self.schema = schema or url_schema
        if self.schema is not None:
            _check_schema_name(self.schema)
        self.con = _connect(dsn)
        self.con.autocommit = True
        self._in_transaction = False
        self._staged: list[str] = []
        with self.con.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
            cur.execute("SET extra_float_digits = 1")  # the shortest exact text of a float (aggregates_sql)
            if self.schema is not None:
                ident = pgsql.Identifier(self.schema)
                cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %(s)s", {"s": self.schema})
                if cur.fetchone() is None:  # CREATE SCHEMA IF NOT EXISTS needs CREATE even when it exists
                    try:
                        cur.execute(pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
                    except psycopg2.errors.UniqueViolation:  # another connection created it at the same moment
                        pass
                    except psycopg2.errors.InsufficientPrivilege as exc:
                        raise AggassetsError(
                            f"PostgreSQL schema {self.schema} does not exist, and this role may not create it "
                            f"({' '.join(str(exc).split())}): check the URL's ?schema= (names are case-sensitive)"
                        ) from exc
                cur.execute(pgsql.SQL("SET search_path TO {}").format(ident))
        self.setup()

    def ingest_file(
        self,
        path: Path,
        definitions: Sequence[MeasureDefinition],
        first_day: date,
        sha256: str | None = None,
        once: bool = False,
        unchanged_since: FileState | None = None,
    ) -> IntakeResult:
        """Validate the file in an in-memory DuckDB, then COPY its items straight into inbox, raw_measures
        and rejected_measures, in one transaction (no staged copy in PostgreSQL)."""
        read = unchanged_since or file_state(path)
        with intake.validation_connection(Path(path)) as con:  # bounded in memory: it spills beyond
            intake_fast.stage_items(con, Path(path), definitions, first_day)
            received = int(con.execute("SELECT count(*) FROM staged").fetchall()[0][0])
            with self.transaction():
                # inside: after any writer lock, so received_at orders with commits and `once` sees every batch
                ids = self.batch_ids(sha256 if once else None)
                self.stage("batch_keys", con.sql(intake_fast.STAGED_KEYS).to_arrow_table())
                self.execute(self.sql.NEW_BATCH_KEYS)
                con.register("batch_keys", self.fetch(self.sql.READ_BATCH_KEYS))
                for table, rows in intake_fast.STORED_ROWS.items():
                    named = {k: v for k, v in ids.items() if f"${k}" in rows}  # DuckDB refuses extra parameters
                    for batch in con.sql(rows, params=named).to_arrow_reader(_COPY_ROWS):
                        self.copy_into(table, pa.Table.from_batches([batch]))
                return self.record_batch(ids, Path(path), sha256, received, read)

    def setup(self) -> None:
        """Create every table and index that does not exist yet (nothing to do, and no writer lock taken,
        when all are there: a role that may only read can query)."""
        if self._schema_complete() and int(self.fetch(RAW_KEY_COLUMNS).iloc[0, 0]) != 1:
            return
        with self.con.cursor() as cur:  # before creating anything beside another application's tables
            if _inbox_state(cur, self.schema) == "foreign":
                raise _foreign_schema(self.schema)
        super().setup()
        with self.transaction():
            for statement in [*self.sql.INDEXES, *self.sql.EXPERIMENT_INDEXES, *self.sql.LEGACY_INDEXES.values()]:
                self.execute(statement)

    def _schema_complete(self) -> bool:
        """Whether every table, added column and index of the schema statements exists already, and no
        index that setup drops (LEGACY_INDEXES)."""
        statements = [*self.sql.SCHEMA, *self.sql.EXPERIMENT_SCHEMA, *self.sql.INDEXES, *self.sql.EXPERIMENT_INDEXES]
        wanted = [_ddl_object(statement) for statement in statements]
        found = {
            (k, a) if pd.isna(b) else (k, a, b)
            for k, a, b in self.fetch(self.sql.SCHEMA_OBJECTS).itertuples(index=False)
        }
        legacy = any(("index", name) in found for name in self.sql.LEGACY_INDEXES)
        return not legacy and all(item is not None and item in found for item in wanted)

    def execute(self, statement: str, params: Mapping[str, Any] | None = None) -> None:
        """Run one statement with named parameters."""
        with self.con.cursor() as cur:
            cur.execute(statement, plain_params(params))

    def fetch(self, statement: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run one query and return its rows as a DataFrame (dtypes as DuckDB gives them)."""
        with self.con.cursor() as cur:
            cur.execute(statement, plain_params(params))
            names = [d.name for d in cur.description]
            oids = [d.type_code for d in cur.description]
            rows = cur.fetchall()
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
        pairs = zip(columns, oids, strict=True)
        frame = pd.DataFrame({i: result_column(col, oid) for i, (col, oid) in enumerate(pairs)})
        frame.columns = names
        return frame

    def stage(self, name: str, table: pa.Table) -> None:
        """Copy the Arrow table into a temp table `name` (replaced if present) with COPY ... CSV."""
        table = copyable(table)
        ident = pgsql.Identifier(name)
        columns = pgsql.SQL(", ").join(
            pgsql.SQL("{} {}").format(pgsql.Identifier(f.name), pgsql.SQL(pg_type(f.type))) for f in table.schema
        )
        on_commit = pgsql.SQL(" ON COMMIT DROP" if self._in_transaction else "")
        with self.con.cursor() as cur:
            cur.execute(pgsql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(ident))
            cur.execute(pgsql.SQL("CREATE TEMP TABLE {} ({}){}").format(ident, columns, on_commit))
        self._copy_csv(name, table)
        with self.con.cursor() as cur:
            cur.execute(pgsql.SQL("ANALYZE {}").format(ident))  # no autovacuum statistics on temp tables
        self._staged.append(name)

    def copy_into(self, name: str, table: pa.Table) -> None:
        """COPY the Arrow table's rows into the existing table `name` (columns by name), as CSV."""
        self._copy_csv(name, copyable(table))

    def _copy_csv(self, name: str, table: pa.Table) -> None:
        """COPY rows already made copyable (copyable) into the table `name`."""
        buffer = io.BytesIO()
        pa_csv.write_csv(table, buffer, pa_csv.WriteOptions(include_header=False))
        buffer.seek(0)
        columns = pgsql.SQL(", ").join(pgsql.Identifier(c) for c in table.column_names)
        # psycopg2 prints a COPY's server error to stderr when the server goes away in the middle (with a
        # stored row as context): the raised error says what happened, on one line
        with self.con.cursor() as cur, contextlib.redirect_stderr(io.StringIO()):
            cur.copy_expert(
                pgsql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(pgsql.Identifier(name), columns), buffer
            )

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN ... COMMIT under the schema's writer lock, ROLLBACK on any error. Not nested: PostgreSQL
        would only warn of a second BEGIN, and the inner COMMIT would end the outer transaction."""
        if self._in_transaction:
            raise RuntimeError("a warehouse transaction is open already (transactions do not nest)")
        self.execute("BEGIN")
        self._in_transaction = True
        try:
            if not bool(self.fetch(self.sql.TRY_WRITER_LOCK)["taken"].iloc[0]):
                _log.warning(LOCK_WAIT_MESSAGE.format(schema=self.schema or "the connection's current schema"))
                self.execute(self.sql.WRITER_LOCK)
            yield
        except BaseException as exc:
            if not self.con.closed:
                self._end("ROLLBACK")
                raise
            self._in_transaction, self._staged = False, []  # the server went away: it rolled back
            if isinstance(exc, psycopg2.Error):
                raise WarehouseUnavailable(
                    f"the connection to PostgreSQL was lost in the middle of a write ({' '.join(str(exc).split())}): "
                    "the server rolled it back, nothing of it is stored; try again"
                ) from exc
            raise
        else:
            self._end("COMMIT")

    def _end(self, command: str) -> None:
        """Finish the transaction and forget its staged (ON COMMIT DROP) tables."""
        self._in_transaction = False
        try:
            self.execute(command)
        finally:
            with self.con.cursor() as cur:
                for name in self._staged:
                    cur.execute(pgsql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(pgsql.Identifier(name)))
            self._staged.clear()

    def close(self) -> None:
        """Close the connection."""
        if not self.con.closed:
            self.con.close()
