"""Event intake: read an events file as text into an in-memory DuckDB, validate every row in one statement.

Formats by extension: `.csv` (comma, `"` quotes, a header row), `.parquet`, `.ndjson` / `.jsonl` (one JSON
object per line, blank lines skipped) and `.json` (a JSON array of objects, or NDJSON when the file does not
start with `[`). Every cell is read as text, so nothing is lost to type inference (Parquet cells are cast to
text). Columns: date, exp_id, exp_variant_id, unit_type, unit_id, goal (required), count, value (optional),
in lower case; every other column is a dimension, stored as `dim_<lower-case name>`.

Cells are trimmed of spaces, tabs, CR and LF; an empty cell is missing. Rules, checked in this order, the
first failing one gives the row's reason:
  invalid_json / not_an_object / duplicate_field   (JSON rows only) the row is not one strict JSON object with
                           unique keys (NaN, Infinity and trailing commas, which DuckDB's parser allows, are invalid)
  nul_character            a NUL character in exp_id, exp_variant_id, unit_id or a dimension (PostgreSQL text cannot
                           hold it: as U+FFFD it could merge two units or values); in the other columns a NUL fails
                           the column's own rule below
  id_too_long              exp_id, exp_variant_id, unit_type, unit_id or goal longer than 1,024 bytes (UTF-8)
  bad_date                 not YYYY-MM-DD, or an ISO date-time (hours 00-23, an offset up to 23:59; its UTC
                           date is kept), within 1900-01-01..2999-12-31
  missing_exp_id, missing_exp_variant_id           empty
  bad_unit_type            not an identifier [A-Za-z_][A-Za-z0-9_]*
  missing_unit_id          empty
  bad_goal                 not [A-Za-z0-9_]+ (the goal names of metric expressions)
  bad_count                not a whole number from 0 to 2^31 - 1: digits, an optional leading +, an optional
                           fraction of zeros (1, +1, 1., 1.00; a JSON number such as 1e3 is read as its value);
                           missing -> 1. The bound keeps every sum of squares of the goals query exact
  bad_value                not a finite decimal number; missing -> 0
  value_out_of_range       |value| not 0 and outside [1e-100, 1e100] (as for measures: squares and products of
                           per-unit sums stay normal floats; PostgreSQL raises on underflow)
Dimension cells are kept as (trimmed) text, empty -> NULL. A rejected row's text keeps NUL characters as
U+FFFD.

File-level problems raise AggassetsError and store nothing: unknown extension, unreadable or malformed file,
a missing required column (for JSON: a key that no object row has), a fixed column's name not in lower case
(`Count`), a dimension name that is not an identifier of at most 59 characters, or two columns whose names are
equal ignoring case.
"""

import csv
import re
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from aggassets.errors import AggassetsError, require_file
from aggassets.warehouse.intake import IN_RANGE, TIMESTAMP_RE, lenient_json, validation_connection
from aggassets.warehouse.values import last_line_length, quote

REQUIRED = ("date", "exp_id", "exp_variant_id", "unit_type", "unit_id", "goal")
OPTIONAL = ("count", "value")
EXTENSIONS = {".csv": "csv", ".parquet": "parquet", ".ndjson": "json", ".jsonl": "json", ".json": "json"}
_DIMENSION = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,58}$")  # dim_ + 59 characters fit PostgreSQL's 63
# Event dimensions the warehouse keeps, in all (each is a column: PostgreSQL allows 1,600 to a table, dropped
# ones included; a file of thousands of keys would exhaust DuckDB's memory before that).
MAX_DIMENSIONS = 500
# Bytes of an exp_id, variant, unit type, unit id or goal: PostgreSQL's index entries hold about 2,700.
MAX_ID_BYTES = 1024
_DATE_RE = r"\d{4}-\d{2}-\d{2}"
_NUMBER_RE = r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?"
# The largest count of one event row: squares of 2^62 at most keep the goals query's integer sums of squares
# far from DuckDB's HUGEINT limit (2^127), where a count of 2^63 - 1 overflowed it.
MAX_COUNT = 2**31 - 1


# JSON rows: one per non-blank line (or array element), with its shape reason when it is not an object. DuckDB's
# parser also takes NaN / Infinity and trailing commas (lenient_json): invalid JSON too.
def _json_rows_sql(source: str) -> str:
    """The statement creating `json_rows` (rn, original, j, shape) from a query of (rn, original)."""
    return f"""
CREATE TABLE json_rows AS
SELECT rn, original, j, CASE WHEN j IS NULL OR {lenient_json("original")} THEN 'invalid_json'
  WHEN json_type(j) <> 'OBJECT' THEN 'not_an_object'
  WHEN len(json_keys(j)) <> len(list_distinct(json_keys(j))) THEN 'duplicate_field' END AS shape
FROM (SELECT rn, original, try_cast(original AS JSON) AS j FROM ({source}))
"""


_LINES = """SELECT row_number() OVER () AS rn, original FROM (
  SELECT original FROM read_csv(?, columns = {'original': 'VARCHAR'}, header = false, delim = chr(30),
      quote = '', escape = '', auto_detect = false, strict_mode = false)
  WHERE original IS NOT NULL AND trim(original, ' \t\r\n') <> '')"""
# A JSON array file's text without the byte order mark a file may start with (RFC 8259 lets a parser ignore it)
_ARRAY_TEXT = """(SELECT CASE WHEN starts_with(content, chr(65279)) THEN substr(content, 2) ELSE content END AS content
FROM read_text(?))"""
_ARRAY = f"""SELECT generate_subscripts(items, 1) AS rn, unnest(items)::VARCHAR AS original
FROM (SELECT json_extract(try_cast(content AS JSON), '$[*]') AS items FROM {_ARRAY_TEXT})"""
_STRICT_ARRAY = f"SELECT json_valid(content) AND NOT {lenient_json('content')} FROM {_ARRAY_TEXT}"
_JSON_KEYS = """SELECT k FROM (SELECT rn, unnest(json_keys(j)) AS k FROM json_rows WHERE shape IS NULL)
GROUP BY k ORDER BY min(rn), k"""


_ERROR_LINE = re.compile(r"CSV Error on Line: (\d+)")
_LINE_SIZE = re.compile(r"Maximum line size of (\d+) bytes exceeded")


def _fail(path: Path, what: str, exc: Exception) -> AggassetsError:
    """A one-line file-level error: the reader's reason and line number, not the line itself (a line over the
    reader's limit of 2,000,000 bytes is named as such)."""
    message = re.split(r"Possible (?:fix|Solution)", str(exc))[0]  # DuckDB's advice is about its options
    line, size = _ERROR_LINE.search(message), _LINE_SIZE.search(message)
    if size or "does not support a full read" in message:  # DuckDB's parallel reader on a line of 32 MiB+
        where = f"line {line.group(1)}" if line else "a line"
        limit = int(size.group(1)) if size else LINE_LIMIT
        return AggassetsError(f"{path}: {what}: {where} is longer than {limit:,} bytes, the reader's limit")
    kept = [text for text in message.splitlines() if not text.startswith("Original Line:")]
    detail = " ".join(" ".join(kept).split()).removeprefix("Invalid Input Error: ")
    if line:
        detail = f"line {line.group(1)}: " + detail.replace(line.group(0), "").strip()
    return AggassetsError(f"{path}: {what}: {detail[:300]}")


# DuckDB's line reader's limit: a longer line is a file-level error (a last line far longer was dropped).
LINE_LIMIT = 2_000_000


def _last_line_fits(path: Path, what: str) -> None:
    """Refuse a file read without an error whose last line is over the reader's limit: DuckDB dropped it."""
    if last_line_length(path) > LINE_LIMIT:
        raise AggassetsError(f"{path}: {what}: its last line is longer than {LINE_LIMIT:,} bytes, the reader's limit")


def _read_csv(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    """Table `raw` from a CSV file; returns its column names (the header, trimmed)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh), None)
    except UnicodeDecodeError as exc:
        raise _fail(path, "not UTF-8 text", exc) from exc
    except csv.Error as exc:
        raise _fail(path, "cannot read the CSV header", exc) from exc
    if not header:
        raise AggassetsError(f"{path}: no header row")
    names = [h.strip(" \t\r\n") for h in header]
    check_columns(path, names)
    try:
        con.execute(
            """CREATE TABLE raw AS SELECT NULL::VARCHAR AS shape, NULL::VARCHAR AS original, *
            FROM read_csv(?, columns = ?, header = true, delim = ',', quote = '"', escape = '"',
                auto_detect = false)""",
            [str(path), {f"c{i}": "VARCHAR" for i in range(1, len(names) + 1)}],
        )
    except duckdb.Error as exc:
        raise _fail(path, "cannot read CSV", exc) from exc
    _last_line_fits(path, "cannot read CSV")
    return names


def _read_parquet(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    """Table `raw` from a Parquet file, every column cast to text; returns the column names."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise _fail(path, "cannot read Parquet", exc) from exc
    names = table.column_names
    check_columns(path, names)
    casts = ", ".join(f"CAST({quote(n)} AS VARCHAR) AS c{i}" for i, n in enumerate(names, start=1))
    try:
        con.register("parquet_in", _readable(table))  # refuses a type DuckDB does not read (list<float16>, ...)
        con.execute(
            f"CREATE TABLE raw AS SELECT NULL::VARCHAR AS shape, NULL::VARCHAR AS original, {casts} FROM parquet_in"
        )
    except duckdb.Error as exc:
        types = ", ".join(f"{f.name} {f.type}" for f in table.schema)
        raise _fail(path, f"cannot read Parquet cells as text (columns: {types})", exc) from exc
    finally:
        con.unregister("parquet_in")
    return names


def _readable(table: pa.Table) -> pa.Table:
    """Columns DuckDB does not take from Arrow (float16, decimal256) as their exact decimal text."""
    for i, column in enumerate(table.schema):
        if pa.types.is_float16(column.type) or pa.types.is_decimal256(column.type):
            table = table.set_column(i, column.name, pc.cast(table.column(i), pa.string()))
    return table


def _read_json(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    """Table `raw` from NDJSON (or a `.json` JSON array): one text column per key found in an object row."""
    with open(path, "rb") as fh:
        starts_array = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"["
    is_array = starts_array and path.suffix.lower() == ".json"  # .ndjson / .jsonl: one value per line
    try:
        if is_array and not con.execute(_STRICT_ARRAY, [str(path)]).fetchone()[0]:
            raise AggassetsError(f"{path}: not a valid JSON array")
        con.execute(_json_rows_sql(_ARRAY if is_array else _LINES), [str(path)])
        names = [r[0] for r in con.execute(_JSON_KEYS).fetchall()]
    except duckdb.Error as exc:
        raise _fail(path, "cannot read JSON", exc) from exc
    if not is_array:
        _last_line_fits(path, "cannot read JSON")
    objects = con.execute("SELECT count(*) FROM json_rows WHERE shape IS NULL").fetchone()
    check_columns(path, names, required=bool(objects and objects[0]))
    cells = "".join(f", j ->> '$.\"{n}\"' AS c{i}" for i, n in enumerate(names, start=1))
    con.execute(f"CREATE TABLE raw AS SELECT shape, original{cells} FROM json_rows ORDER BY rn")
    return names


READERS = {"csv": _read_csv, "parquet": _read_parquet, "json": _read_json}


def check_columns(path: Path, names: Sequence[str], required: bool = True) -> None:
    """Raise on a missing required column, a bad dimension name or names equal ignoring case."""
    missing = [c for c in REQUIRED if c not in names]
    if required and missing:
        raise AggassetsError(
            f"{path}: missing required column(s) {', '.join(missing)} (found: {', '.join(names) or 'none'})"
        )
    for name in names:
        if name.lower() in REQUIRED + OPTIONAL and name not in REQUIRED + OPTIONAL:
            raise AggassetsError(  # it would be read as a dimension, its count or value ignored
                f"{path}: column {name!r} is written {name.lower()!r} (the fixed columns are in lower case)"
            )
        if name not in REQUIRED + OPTIONAL and not _DIMENSION.fullmatch(name):
            raise AggassetsError(
                f"{path}: column {name!r} is not a valid dimension name "
                "(letters, digits and _, not starting with a digit, at most 59 characters)"
            )
    dimensions = [n for n in names if n not in REQUIRED + OPTIONAL]
    if len(dimensions) > MAX_DIMENSIONS:
        raise AggassetsError(
            f"{path}: {len(dimensions):,} dimension columns, over the {MAX_DIMENSIONS} the warehouse keeps"
        )
    seen: dict[str, str] = {}
    for name in names:
        if name.lower() in seen:
            raise AggassetsError(
                f"{path}: columns {seen[name.lower()]!r} and {name!r} collide (column names are compared ignoring case)"
            )
        seen[name.lower()] = name


def _cell(column: str | None) -> str:
    """SQL of one trimmed cell, NULL when empty (or when the column is absent)."""
    if column is None:
        return "NULL::VARCHAR"
    return f"nullif(trim({column}, ' \t\r\n'), '')"


def _accepted(expression: str) -> str:
    """The expression for accepted rows, NULL for rejected ones."""
    return f"CASE WHEN reason IS NULL THEN {expression} END"


def validation_sql(names: Sequence[str]) -> str:
    """The one validation statement over table `raw` (shape, original, then c1..cN: the file's `names`)."""
    pos = {n: f"c{i}" for i, n in enumerate(names, start=1)}
    std = {c: _cell(pos.get(c)) for c in REQUIRED + OPTIONAL}
    dims = [n for n in names if n not in REQUIRED + OPTIONAL]
    dim_out = "".join(f", {_accepted(_cell(pos[n]))} AS {quote('dim_' + n.lower())}" for n in dims)
    as_json = ", ".join(f"'{n}', {pos[n]}" for n in names)
    key_cells = [std[c] for c in ("exp_id", "exp_variant_id", "unit_id")] + [_cell(pos[n]) for n in dims]
    nul = " OR ".join(f"contains(coalesce({cell}, ''), chr(0))" for cell in key_cells)
    ids = ("exp_id", "exp_variant_id", "unit_type", "unit_id", "goal")
    long_id = " OR ".join(f"strlen(coalesce({std[c]}, '')) > {MAX_ID_BYTES}" for c in ids)
    fields = ", ".join(
        f"{_accepted(f'{p}_{c}')} AS {c}"
        for c in REQUIRED + OPTIONAL
        for p in ["v" if c in ("date", "count", "value") else "f"]
    )
    return f"""
WITH cells AS (
  SELECT rowid + 1 AS row_number, *,
    {std["date"]} AS f_date, {std["exp_id"]} AS f_exp_id, {std["exp_variant_id"]} AS f_exp_variant_id,
    {std["unit_type"]} AS f_unit_type, {std["unit_id"]} AS f_unit_id, {std["goal"]} AS f_goal,
    {std["count"]} AS f_count, {std["value"]} AS f_value
  FROM raw
), parsed AS (
  SELECT *,
    CASE WHEN regexp_full_match(f_date, '{_DATE_RE}') THEN try_cast(f_date AS DATE)
         WHEN regexp_full_match(f_date, '{TIMESTAMP_RE}')
              THEN timezone('UTC', try_cast(upper(f_date) AS TIMESTAMPTZ))::DATE END AS v_date,
    CASE WHEN f_count IS NULL THEN 1::BIGINT
         WHEN regexp_full_match(f_count, '[+]?[0-9]+([.]0*)?')
              THEN try_cast(regexp_replace(f_count, '[.]0*$', '') AS BIGINT) END AS v_count,
    CASE WHEN f_value IS NULL THEN 0::DOUBLE
         WHEN regexp_full_match(f_value, '{_NUMBER_RE}') THEN try_cast(f_value AS DOUBLE) END AS num
  FROM cells
), checked AS (
  SELECT *, CASE
      WHEN shape IS NOT NULL THEN shape
      WHEN {nul} THEN 'nul_character'
      WHEN {long_id} THEN 'id_too_long'
      WHEN v_date IS NULL OR v_date < DATE '1900-01-01' OR v_date > DATE '2999-12-31' THEN 'bad_date'
      WHEN f_exp_id IS NULL THEN 'missing_exp_id'
      WHEN f_exp_variant_id IS NULL THEN 'missing_exp_variant_id'
      WHEN f_unit_type IS NULL OR NOT regexp_full_match(f_unit_type, '[A-Za-z_][A-Za-z0-9_]*') THEN 'bad_unit_type'
      WHEN f_unit_id IS NULL THEN 'missing_unit_id'
      WHEN f_goal IS NULL OR NOT regexp_full_match(f_goal, '[A-Za-z0-9_]+') THEN 'bad_goal'
      WHEN v_count IS NULL OR v_count > {MAX_COUNT} THEN 'bad_count'
      WHEN num IS NULL OR NOT isfinite(num) THEN 'bad_value'
      WHEN NOT {IN_RANGE} THEN 'value_out_of_range'
    END AS reason, num AS v_value
  FROM parsed
)
SELECT row_number, reason,
  CASE WHEN reason IS NOT NULL THEN replace(coalesce(original, json_object({as_json})::VARCHAR), chr(0), chr(65533))
       END AS row_json,
  {fields}{dim_out}
FROM checked ORDER BY row_number
"""


def validate_file(path: Path) -> tuple[pa.Table, list[str]]:
    """(one validated row per received row, the file's dimension names in lower case)."""
    path = Path(path)
    require_file(path)
    kind = EXTENSIONS.get(path.suffix.lower())
    if kind is None:
        raise AggassetsError(
            f"{path}: unknown events file extension {path.suffix!r} (expected {', '.join(EXTENSIONS)})"
        )
    with validation_connection(path) as con:
        con.execute("SET TimeZone = 'UTC'; SET enable_progress_bar = false")
        names = READERS[kind](con, path)
        validated = con.sql(validation_sql(names)).to_arrow_table()
    return validated, [n.lower() for n in names if n not in REQUIRED + OPTIONAL]
