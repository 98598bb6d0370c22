"""The intake's fast path (DESIGN §4.2): items it can prove valid are stored with one parse each; the
others are left to the careful validation (intake.careful_sql), which gives every item its reason.
stage_items runs both for an engine that copies the staged rows in (PostgreSQL).
"""

import json
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import duckdb

from aggassets.catalog import MeasureDefinition
from aggassets.warehouse.intake import (
    FIELDS,
    IN_RANGE,
    MAX_CREATED_BY,
    MAX_PAYLOAD_BYTES,
    canonical_group_value,
    careful_sql,
    definitions_registered,
)
from aggassets.warehouse.intake_files import ITEMS, read_items
from aggassets.warehouse.values import period_start

# measureName and startDate as text (a JSON string's content; yyjson writes no JSON text for them), the
# other fields as JSON text. A non-string read as text (5, true, {"a":1}) is never a fast name (names
# that read as a number or a JSON literal are left out of the fast names: fast_params) nor a date of
# _FAST_DATES (those have dashes where no number, literal or object text has them).
_FAST_STRUCT = json.dumps({f: "VARCHAR" if f in ("measureName", "startDate") else "JSON" for f in FIELDS})
# CASE, not AND/OR: a projection evaluates every operand of AND/OR, CASE only the branch a row takes.
# After the prefix `{"key":`, a string value is the only member when no string is followed by a comma: the
# payload has no backslash, so no string holds a quote.
_FAST_GROUP_SQL = """CASE WHEN p{i} IS NULL THEN x_g{i} IS NULL
      WHEN NOT starts_with(x_g{i}, p{i}) THEN false
      WHEN ascii(v{i}) = 34 THEN NOT contains(x_g{i}, '",')
      WHEN v{i} IN ('true', 'false') THEN true
      WHEN ascii(v{i}) = 45 OR ascii(v{i}) BETWEEN 48 AND 57 THEN isfinite(TRY_CAST(v{i} AS DOUBLE))
      ELSE false END"""
# Dates the fast path reads: a text of exactly these lengths and without a space (strptime ignores spaces
# around its input; no other whitespace is valid raw in a JSON string), so that strptime's fields are all
# at their full width (yyyy-mm-dd, hh:mm:ss, 3 or 6 fraction digits) and nothing is left unread: the
# careful pattern's plain UTC forms, nothing looser. The forms producers write: DACC's own (a date, a date-time
# without zone), ISO with Z, JavaScript's toISOString (milliseconds, Z), Python's isoformat (naive or UTC).
_FAST_DATES = {
    10: "%Y-%m-%d",
    19: "%Y-%m-%dT%H:%M:%S",
    20: "%Y-%m-%dT%H:%M:%SZ",
    23: "%Y-%m-%dT%H:%M:%S.%g",
    24: "%Y-%m-%dT%H:%M:%S.%gZ",
    25: "%Y-%m-%dT%H:%M:%S+00:00",
    26: "%Y-%m-%dT%H:%M:%S.%f",
    27: "%Y-%m-%dT%H:%M:%S.%fZ",
    32: "%Y-%m-%dT%H:%M:%S.%f+00:00",
}


# The start of the measure's period containing `day`; a CASE over the three periods, not date_trunc with
# the period as a column, which parses the part name on every row (0.6 CPU-s per 10M items).
_PERIOD_START = """CASE period WHEN 'day' THEN day WHEN 'week' THEN date_trunc('week', day)::DATE
    ELSE date_trunc('month', day)::DATE END"""


def _commas(text: str) -> str:
    """SQL: how many commas the text holds (string_split: 40% less CPU than comparing with a replace)."""
    return f"len(string_split({text}, ',')) - 1"


def _fast_checked(items: str) -> str:
    """CTEs ending in `checked`: the items (item_no, payload) parsed once, with `ok` when the fast path
    accepts one, and the values it stores (name, period, day, s_by, v1..v3, num).

    The fast path accepts only items it can prove valid, with the very values the careful path
    stores: payloads without a backslash and with no key but the fields (_commas), field texts as
    yyjson writes them (as json_extract gives them; name and date as text, see _FAST_STRUCT), plain UTC
    dates (yyyy-mm-dd, yyyy-mm-ddThh:mm:ssZ),
    groups `{"key":scalar}`. Everything else is left to the careful validation.
    Projections only (definitions are list parameters, no join): rows keep the source's order.
    """
    names = ("name", "value", "date", "by", "g1", "g2", "g3")
    fields = ", ".join(f"f.{f} AS x_{c}" for f, c in zip(FIELDS, names, strict=True))
    # The payload's commas are those between its members plus those inside the fields' texts (the value
    # is a number): one more means a member besides the fields, a duplicate or a trailing comma (which
    # DuckDB's parser allows). name, value and date must be there for `ok` anyway.
    present = " + ".join(["2", *(f"(x_{c} IS NOT NULL)::INT" for c in names[3:])])
    # a field's text rarely holds a comma: counted only when it does (replace copies the text)
    field_commas = " + ".join(
        f"CASE WHEN contains(x_{c}, ',') THEN {_commas(f'x_{c}')} ELSE 0 END" for c in names if c != "value"
    )
    groups = ", ".join(f"($p{i}::VARCHAR[])[di] AS p{i}" for i in (1, 2, 3))
    # substr with a length, not a negative slice: 25% cheaper
    values = ", ".join(
        f"substr(x_g{i}, length(p{i}) + 1, length(x_g{i}) - length(p{i}) - 1) AS v{i}" for i in (1, 2, 3)
    )
    dates = " ".join(f"WHEN {n} THEN TRY_STRPTIME(x_date, '{fmt}')" for n, fmt in _FAST_DATES.items())
    return f"""WITH parsed AS (
  SELECT item_no, payload, {fields},
         {_commas("payload")} AS commas
  FROM (SELECT item_no, payload, CASE WHEN fit THEN TRY(json_transform(payload, '{_FAST_STRUCT}')) END AS f
        FROM (SELECT item_no, payload,
                     $fast AND strlen(payload) <= {MAX_PAYLOAD_BYTES} AND NOT contains(payload, '\\') AS fit
              FROM ({items})))
), typed AS (
  SELECT item_no, payload, commas = {present} + {field_commas} AS only_fields, x_g1, x_g2, x_g3,
    list_position($fast_names, x_name) AS di, $names[di] AS name, $periods[di] AS period, {groups}, {values},
    CASE WHEN ascii(x_value) = 45 OR ascii(x_value) BETWEEN 48 AND 57 THEN TRY_CAST(x_value AS DOUBLE) END AS num,
    CASE WHEN NOT contains(x_date, ' ') THEN CASE strlen(x_date) {dates} END END::DATE AS day,
    CASE WHEN x_by IS NULL THEN ''
         WHEN ascii(x_by) = 34 AND length(x_by) BETWEEN 3 AND {MAX_CREATED_BY + 2}
         THEN substr(x_by, 2, length(x_by) - 2) END AS s_by
  FROM parsed
), checked AS (
  SELECT *, coalesce(CASE WHEN only_fields AND name IS NOT NULL AND {IN_RANGE} AND s_by IS NOT NULL
                                AND day BETWEEN ($firsts::DATE[])[di] AND DATE '2999-12-31'
                           THEN {_FAST_GROUP_SQL.format(i=1)} AND {_FAST_GROUP_SQL.format(i=2)}
                                AND {_FAST_GROUP_SQL.format(i=3)} END, false) AS ok
  FROM typed
)"""


def _fast_sql(items: str) -> str:
    """Every item with the fast path's verdict: a row it cannot accept gets reason 'unchecked'."""
    groups = ", ".join(
        f"CASE WHEN ok THEN coalesce({canonical_group_value(f'v{i}')}, '') END AS group{i}" for i in (1, 2, 3)
    )
    return f"""{_fast_checked(items)}
SELECT item_no, payload, CASE WHEN ok THEN NULL ELSE 'unchecked' END AS reason,
  CASE WHEN ok THEN name END AS measure_name,
  CASE WHEN ok THEN {_PERIOD_START} END AS start_date,
  CASE WHEN ok THEN s_by END AS created_by,
  {groups},
  CASE WHEN ok THEN num + 0.0 END AS value
FROM checked
"""


def _reads_as_literal(name: str) -> bool:
    """Whether a measure name could be the text of a JSON number or literal (5, 1e3, inf, true): such a
    name is checked by the careful path only, as `"measureName": 5` reads as the text 5 too."""
    try:
        float(name)
    except ValueError:
        return name.lower() in ("true", "false", "null")
    return True


def fast_params(
    con: duckdb.DuckDBPyConnection,
    definitions: Sequence[MeasureDefinition],
    first_day: date,
    fast: bool = True,
) -> dict[str, object]:
    """The fast path's parameters: the definitions as lists (names, the names it may accept, periods, the
    first day of each one's first partition, `{"key":` prefixes) and whether the fast path is on."""

    def as_json(values: list[str | None]) -> list[str | None]:
        texts = con.execute("SELECT list_transform($v::VARCHAR[], lambda x: to_json(x)::VARCHAR)", {"v": values})
        return texts.fetchall()[0][0]

    params: dict[str, object] = {
        "names": [d.name for d in definitions],
        "periods": [d.aggregation_period for d in definitions],
        "fast_names": [None if _reads_as_literal(d.name) else d.name for d in definitions],
        "firsts": [period_start(d.aggregation_period, first_day) for d in definitions],
        "fast": fast,
    }
    for i in (1, 2, 3):
        keys = as_json([d.group_keys()[i - 1] for d in definitions])
        params[f"p{i}"] = [None if k is None else "{" + k + ":" for k in keys]
    return params


def fast_accepted_sql(items: str) -> str:
    """Item number and stored fields of the items (item_no, payload) the fast path accepts (fast_params)."""
    groups = ", ".join(f"coalesce({canonical_group_value(f'v{i}')}, '') AS group{i}" for i in (1, 2, 3))
    return f"""{_fast_checked(items)}
SELECT item_no, name AS measure_name, {_PERIOD_START} AS start_date, s_by AS created_by,
  {groups}, num + 0.0 AS value  -- -0 + 0 is 0 (intake.careful_sql)
FROM checked WHERE ok"""


# The items the fast path left, checked carefully; their results replace the placeholders.
_CAREFUL_UPDATE = f"""
UPDATE staged SET reason = c.reason, measure_name = c.measure_name, start_date = c.start_date,
  created_by = c.created_by, group1 = c.group1, group2 = c.group2, group3 = c.group3, value = c.value
FROM ({careful_sql("SELECT item_no, payload FROM staged WHERE reason = 'unchecked'")}) c
WHERE staged.item_no = c.item_no"""
STAGED_ROWS = "SELECT * FROM staged ORDER BY item_no"
STAGED_KEYS = "SELECT DISTINCT measure_name, created_by, group1, group2, group3 FROM staged WHERE reason IS NULL"
# The staged items as rows of the warehouse tables, for an engine that copies them in ($seq0, $batch_id, $now).
STORED_ROWS = {
    "inbox": "SELECT $seq0 + item_no AS seq, $batch_id AS batch_id, $now AS received_at, payload FROM staged",
    # batch_keys: the key id of each key of the batch (the engine's measure_keys, see postgres_sql.NEW_BATCH_KEYS)
    "raw_measures": """SELECT $seq0 + item_no AS seq, s.measure_name, start_date, s.created_by, s.group1, s.group2,
  s.group3, value, $now AS received_at, k.key_id
FROM staged s JOIN batch_keys k USING (measure_name, created_by, group1, group2, group3) WHERE reason IS NULL""",
    "rejected_measures": """SELECT $seq0 + item_no AS seq, $now AS received_at, reason, measure_name
FROM staged WHERE reason IS NOT NULL""",
}


def stage_items(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    definitions: Sequence[MeasureDefinition],
    first_day: date,
    fast: bool = True,
) -> int:
    """Read and validate the file into the temp table `staged` of `con`, one row per item (STAGED_ROWS).

    Columns: item_no, payload, reason (NULL when accepted), measure_name, start_date, created_by,
    group1..3, value. Returns how many items went through the careful validation (all of them when
    `fast` is False). An unreadable file raises AggassetsError.
    """
    con.execute("SET TimeZone = 'UTC'")
    row0, _ = read_items(con, path)
    with definitions_registered(con, definitions):
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE staged AS {_fast_sql(ITEMS)}",
            {"row0": row0, **fast_params(con, definitions, first_day, fast)},
        )
        con.execute("DROP TABLE temp.lines")  # staged holds the payloads too
        careful = int(con.execute("SELECT count(*) FROM staged WHERE reason = 'unchecked'").fetchall()[0][0])
        if careful:
            con.execute(_CAREFUL_UPDATE, {"first_day": first_day})
    return careful
