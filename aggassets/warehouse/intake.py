"""Measure intake in DuckDB: read a file into items, validate them in bulk (one SQL statement).

Validation always runs in an in-memory DuckDB (whatever the warehouse engine): it reads the JSON,
applies DESIGN §4.2 and returns one row per received item with either the accepted fields or a reason.
"""

import json
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa

from aggassets.catalog import MeasureDefinition
from aggassets.errors import AggassetsError

MAX_PAYLOAD_BYTES = 16_384
MAX_CREATED_BY = 255
FIELDS = ("measureName", "value", "startDate", "createdBy", "group1", "group2", "group3")
_DATE_RE = (
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|z|[+-]\d{2}(:?\d{2})?)?)?$"
)
_NUMBER_RE = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"
_SCALAR_TYPES = "('VARCHAR', 'BIGINT', 'UBIGINT', 'DOUBLE', 'BOOLEAN')"
_NUMBER_TYPES = "('BIGINT', 'UBIGINT', 'DOUBLE')"

# One row per received item: the item's number and its payload text, as it came.
_READ_LINES = """
SELECT row_number() OVER () AS item_no, payload FROM (
  SELECT payload FROM read_csv(?, columns = {'payload': 'VARCHAR'}, header = false,
      delim = chr(30), quote = '', escape = '', auto_detect = false, strict_mode = false)
  WHERE payload IS NOT NULL AND trim(payload) <> ''
)
"""

_READ_DOCUMENT = """
WITH doc AS (SELECT try_cast(content AS JSON) AS j FROM read_text(?)),
elements AS (
  SELECT CASE WHEN json_type(j) = 'ARRAY' THEN j
              WHEN json_type(j) = 'OBJECT' AND json_type(j -> '$.measures') = 'ARRAY' THEN j -> '$.measures'
         END AS arr, j
  FROM doc
)
SELECT json_valid(j::VARCHAR) AS valid, json_type(j) AS kind, arr IS NOT NULL AS has_list,
       CASE WHEN arr IS NOT NULL THEN json_array_length(arr) END AS n
FROM elements
"""

_UNNEST_DOCUMENT = """
WITH doc AS (SELECT try_cast(content AS JSON) AS j FROM read_text(?)),
arr AS (SELECT CASE WHEN json_type(j) = 'ARRAY' THEN j ELSE j -> '$.measures' END AS a FROM doc)
SELECT generate_subscripts(items, 1) AS item_no, unnest(items)::VARCHAR AS payload
FROM (SELECT json_extract(a, '$[*]') AS items FROM arr)
"""


def _file_format(path: Path) -> str:
    """'array' or 'document' (one JSON value for the whole file) or 'ndjson' (one item a line)."""
    with open(path, "rb") as fh:
        head = fh.read(65_536)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:
            raise AggassetsError(f"{path}: not UTF-8 text") from exc
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not text:
        return "ndjson"
    if text[:1] == b"[":
        return "array"
    first_line = text.split(b"\n", 1)[0].strip()
    try:
        value = json.loads(first_line)
    except ValueError:
        return "document" if text[:1] == b"{" else "ndjson"
    return "document" if isinstance(value, dict) and set(value) == {"measures"} else "ndjson"


def read_items(con: duckdb.DuckDBPyConnection, path: Path) -> pa.Table:
    """The file's items as (item_no, payload); an unreadable file raises AggassetsError."""
    path = Path(path)
    if not path.is_file():
        raise AggassetsError(f"{path}: no such file")
    fmt = _file_format(path)
    if fmt == "ndjson":
        try:
            return con.sql(_READ_LINES, params=[str(path)]).to_arrow_table()
        except duckdb.Error as exc:
            raise AggassetsError(f"{path}: cannot read lines: {exc}") from exc
    try:
        valid, kind, has_list, _n = con.execute(_READ_DOCUMENT, [str(path)]).fetchall()[0]
    except duckdb.Error as exc:
        raise AggassetsError(f"{path}: cannot read: {exc}") from exc
    if not valid:
        raise AggassetsError(f"{path}: not a valid JSON document")
    if not has_list:
        if kind == "OBJECT":  # one pretty-printed measure
            payload = json.dumps(json.loads(path.read_text(encoding="utf-8")))
            return pa.table({"item_no": pa.array([1], pa.int64()), "payload": [payload]})
        raise AggassetsError(f"{path}: expected a JSON array, {{\"measures\": [...]}} or NDJSON")
    return con.sql(_UNNEST_DOCUMENT, params=[str(path)]).to_arrow_table()


def _definitions_table(definitions: Sequence[MeasureDefinition]) -> pa.Table:
    """The few definition fields validation needs, as an Arrow table."""
    return pa.table(
        {
            "name": [d.name for d in definitions],
            "period": [d.aggregation_period for d in definitions],
            "k1": [d.group1_key for d in definitions],
            "k2": [d.group2_key for d in definitions],
            "k3": [d.group3_key for d in definitions],
        },
        schema=pa.schema([(c, pa.string()) for c in ("name", "period", "k1", "k2", "k3")]),
    )


def _group_checks(i: int) -> tuple[str, str]:
    """SQL for group i: (reason CASE branches, stored value expression)."""
    g, t, k = f"j_g{i}", f"t_g{i}", f"k{i}"
    reasons = f"""
      WHEN {k} IS NOT NULL AND ({g} IS NULL OR {t} = 'NULL') THEN 'missing_group{i}'
      WHEN {k} IS NOT NULL AND ({t} <> 'OBJECT' OR json_keys({g}) <> [{k}]
           OR coalesce(json_type({g}, '$."' || {k} || '"'), 'NULL') NOT IN {_SCALAR_TYPES})
           THEN 'invalid_group{i}'
      WHEN {k} IS NULL AND {g} IS NOT NULL AND {t} <> 'NULL' THEN 'unexpected_group{i}'"""
    value = f"CASE WHEN {k} IS NOT NULL THEN json_extract({g}, '$.\"' || {k} || '\"')::VARCHAR ELSE '' END"
    return reasons, value


def _validation_sql() -> str:
    """The validation statement over `items` and `defs` (parameters: partitions start)."""
    paths = ", ".join(f"'$.{f}'" for f in FIELDS)
    group_sql = [_group_checks(i) for i in (1, 2, 3)]
    return f"""
WITH src AS (
  SELECT item_no, payload, octet_length(encode(payload)) > {MAX_PAYLOAD_BYTES} AS oversized,
         CASE WHEN octet_length(encode(payload)) <= {MAX_PAYLOAD_BYTES} THEN try_cast(payload AS JSON) END AS j
  FROM items
), obj AS (
  SELECT *, json_type(j) AS kind,
         CASE WHEN json_type(j) = 'OBJECT' THEN json_keys(j) END AS keys,
         CASE WHEN json_type(j) = 'OBJECT' THEN json_extract(j, [{paths}]) END AS f
  FROM src
), typed AS (
  SELECT *, f[1] AS j_name, f[2] AS j_value, f[3] AS j_date, f[4] AS j_by,
         f[5] AS j_g1, f[6] AS j_g2, f[7] AS j_g3,
         json_type(f[1]) AS t_name, json_type(f[2]) AS t_value, json_type(f[3]) AS t_date,
         json_type(f[4]) AS t_by, json_type(f[5]) AS t_g1, json_type(f[6]) AS t_g2, json_type(f[7]) AS t_g3
  FROM obj
), parsed AS (
  SELECT t.*, d.name AS def_name, d.period, d.k1, d.k2, d.k3,
    CASE WHEN t_value IN {_NUMBER_TYPES} THEN j_value::DOUBLE
         WHEN t_value = 'VARCHAR' AND regexp_full_match(trim(j_value ->> '$'), '{_NUMBER_RE}')
              THEN try_cast(trim(j_value ->> '$') AS DOUBLE) END AS num,
    CASE WHEN t_date = 'VARCHAR' AND regexp_full_match(j_date ->> '$', '{_DATE_RE}')
         THEN try_cast(j_date ->> '$' AS TIMESTAMPTZ) END AS ts
  FROM typed t LEFT JOIN defs d ON t.t_name = 'VARCHAR' AND d.name = (t.j_name ->> '$')
), checked AS (
  SELECT *, CASE
      WHEN oversized THEN 'oversized'
      WHEN j IS NULL THEN 'invalid_json'
      WHEN kind <> 'OBJECT' THEN 'not_an_object'
      WHEN len(keys) <> len(list_distinct(keys)) THEN 'duplicate_field'
      WHEN len(list_filter(keys, lambda k: NOT list_contains({list(FIELDS)}, k))) > 0 THEN 'unknown_field'
      WHEN j_name IS NULL OR t_name = 'NULL' THEN 'missing_measure_name'
      WHEN t_name <> 'VARCHAR' THEN 'invalid_measure_name'
      WHEN def_name IS NULL THEN 'unknown_measure'
      WHEN j_value IS NULL OR t_value = 'NULL' THEN 'missing_value'
      WHEN num IS NULL THEN 'invalid_value'
      WHEN NOT isfinite(num) THEN 'value_not_finite'
      WHEN j_date IS NULL OR t_date = 'NULL' THEN 'missing_start_date'
      WHEN ts IS NULL THEN 'invalid_start_date'
      WHEN timezone('UTC', ts)::DATE < ?::DATE OR timezone('UTC', ts)::DATE > DATE '2999-12-31'
           THEN 'start_date_out_of_range'
      WHEN j_by IS NOT NULL AND t_by <> 'NULL' AND (t_by <> 'VARCHAR' OR length(j_by ->> '$') = 0
           OR length(j_by ->> '$') > {MAX_CREATED_BY}) THEN 'invalid_created_by'
      {group_sql[0][0]}
      {group_sql[1][0]}
      {group_sql[2][0]}
    END AS reason
  FROM parsed
)
SELECT item_no, payload, reason,
  CASE WHEN reason IS NULL THEN def_name WHEN t_name = 'VARCHAR' THEN left(j_name ->> '$', 128) END
      AS measure_name,
  CASE WHEN reason IS NULL THEN date_trunc(period, timezone('UTC', ts)::DATE)::DATE END AS start_date,
  CASE WHEN reason IS NULL THEN coalesce(CASE WHEN t_by = 'VARCHAR' THEN j_by ->> '$' END, '') END
      AS created_by,
  CASE WHEN reason IS NULL THEN {group_sql[0][1]} END AS group1,
  CASE WHEN reason IS NULL THEN {group_sql[1][1]} END AS group2,
  CASE WHEN reason IS NULL THEN {group_sql[2][1]} END AS group3,
  CASE WHEN reason IS NULL THEN num END AS value
FROM checked
ORDER BY item_no
"""


VALIDATION_SQL = _validation_sql()


def validate_items(
    con: duckdb.DuckDBPyConnection,
    items: pa.Table,
    definitions: Sequence[MeasureDefinition],
    first_day: date,
) -> pa.Table:
    """One row per item: accepted fields (reason NULL) or the rejection reason."""
    con.execute("SET TimeZone = 'UTC'")
    con.register("items", items)
    con.register("defs", _definitions_table(definitions))
    try:
        return con.sql(VALIDATION_SQL, params=[first_day]).to_arrow_table()
    finally:
        con.unregister("items")
        con.unregister("defs")
