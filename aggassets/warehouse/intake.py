"""Measure validation in DuckDB (DESIGN §4.2), in bulk: the careful statement, which gives every item
its reason, and what the fast path (intake_fast.py) shares with it.

The items come from intake_files (numbered, in file order). On a DuckDB warehouse validation runs in
the warehouse's own connection (duckdb_sql's INSERT statements); for PostgreSQL in an in-memory DuckDB
(intake_fast.stage_items) whose rows are then copied over.
"""

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa

from aggassets.catalog import MeasureDefinition
from aggassets.errors import AggassetsError

MAX_PAYLOAD_BYTES = 16_384
# The in-memory DuckDB that validates a file for another store (PostgreSQL's measures, every events file)
# spills to a temporary folder beyond this (unbounded, 10M measures took the process to 4.3 GiB, 10M
# events to 3.4 GiB).
VALIDATION_MEMORY_LIMIT = "1GB"
# The most it may spill; None: DuckDB's default, 90% of the free space of the temporary folder's drive.
VALIDATION_SPILL_LIMIT: str | None = None
MAX_CREATED_BY = 255
# Values whose squares stay normal floats (no overflow to inf, no underflow: PostgreSQL raises on it): a
# measure's magnitude is 0 or within [1e-100, 1e100].
IN_RANGE = "(num = 0 OR abs(num) BETWEEN 1e-100 AND 1e100)"
FIELDS = ("measureName", "value", "startDate", "createdBy", "group1", "group2", "group3")
# RFC 3339 allows a lower-case t and z; hours are 00-23 (no 24:00), minutes and seconds 00-59, an offset
# at most 23:59.
_HOUR, _SIXTY = r"([01]\d|2[0-3])", r"[0-5]\d"
_TIME_RE = rf"{_HOUR}:{_SIXTY}(:{_SIXTY}(\.\d+)?)?([Zz]|[+-]{_HOUR}(:?{_SIXTY})?)?"
_DATE_RE = rf"^\d{{4}}-\d{{2}}-\d{{2}}([Tt ]{_TIME_RE})?$"
TIMESTAMP_RE = rf"\d{{4}}-\d{{2}}-\d{{2}}[Tt ]{_TIME_RE}"  # a date-time, as the events intake takes it
_NUMBER_RE = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"
_SCALAR_TYPES = "('VARCHAR', 'BIGINT', 'UBIGINT', 'DOUBLE', 'BOOLEAN')"
# DuckDB's JSON parser also takes NaN / Infinity (any case) and trailing commas, which JSON does not: with
# the strings blanked out, such a payload shows one of these patterns (`lenient`). NaN or Infinity as the
# value keeps its own reason, value_not_finite.
_STRING_RE = r'"([^"\\]|\\.)*"'
_NOT_JSON_RE = r"(?i)nan|inf|,[ \t\r\n]*[]}]"


@contextlib.contextmanager
def validation_connection(source: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB bounded to VALIDATION_MEMORY_LIMIT, spilling to a temporary folder removed after,
    to validate the file `source`. A spill that finds no room left raises AggassetsError naming the folder."""
    config = {"memory_limit": VALIDATION_MEMORY_LIMIT}
    if VALIDATION_SPILL_LIMIT is not None:
        config["max_temp_directory_size"] = VALIDATION_SPILL_LIMIT
    with (
        tempfile.TemporaryDirectory(prefix="aggassets-validation-") as spill,
        duckdb.connect(config={**config, "temp_directory": spill}) as con,
    ):
        try:
            yield con
        except (duckdb.Error, AggassetsError) as exc:
            if not _spill_full(exc):
                raise
            raise AggassetsError(
                f"{source}: out of room to validate it: beyond {VALIDATION_MEMORY_LIMIT} in memory, validation spills "
                f"to a temporary folder in {Path(spill).parent}, which is full (free space there, or set TMPDIR to "
                "a folder with room)"
            ) from exc


def _spill_full(exc: BaseException | None) -> bool:
    """Whether the error (or one it was raised from) is DuckDB's for a temporary folder without room."""
    while exc is not None:
        if isinstance(exc, duckdb.OutOfMemoryException) and "max_temp_directory_size" in str(exc):
            return True
        exc = exc.__cause__
    return False


def lenient_json(text: str) -> str:
    """SQL: whether the JSON text (an SQL expression) holds a form DuckDB's parser allows and JSON does not."""
    return f"regexp_matches(regexp_replace({text}, '{_STRING_RE}', '\"\"', 'g'), '{_NOT_JSON_RE}')"


_NUMBER_TYPES = "('BIGINT', 'UBIGINT', 'DOUBLE')"


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


# A number's text: sign, whole digits, fraction digits, exponent.
_NUMBER_PARTS = r"^(-?)([0-9]+)(?:\.([0-9]*))?(?:[eE]\+?(-?[0-9]+))?$"
MAX_GROUP_DIGITS = 1000  # an integral group number is written out up to this many digits (1e400: 401)


def _integer_text(s: str) -> str:
    """SQL: the digits of the integer that the number text `s` denotes (`1e22`, `1.0E+22`, `10e21`:
    10000000000000000000000); NULL when it is not an integer or has more than MAX_GROUP_DIGITS digits."""

    def part(i: int) -> str:
        return f"regexp_extract({s}, '{_NUMBER_PARTS}', {i})"

    digits = f"ltrim({part(2)} || {part(3)}, '0')"
    # the exponent, held within +-10^6: beyond, the digits (at most 16 KiB) decide alone, and no sum overflows
    exponent = f"""(CASE WHEN {part(4)} = '' THEN 0
      ELSE greatest(-1000000, least(1000000, coalesce(TRY_CAST({part(4)} AS BIGINT),
                                                       CASE WHEN starts_with({part(4)}, '-') THEN -1000000
                                                            ELSE 1000000 END))) END)"""
    shift = f"({exponent} - length({part(3)}))"  # value = digits * 10^shift
    whole = f"""CASE WHEN {digits} = '' THEN '0'
      WHEN {shift} >= 0 THEN CASE WHEN length({digits}) + {shift} <= {MAX_GROUP_DIGITS}
                                  THEN {digits} || repeat('0', CAST({shift} AS BIGINT)) END
      WHEN ltrim(right({digits}, CAST(-{shift} AS BIGINT)), '0') = '' AND length({digits}) + {shift} > 0
        THEN CASE WHEN length({digits}) + {shift} <= {MAX_GROUP_DIGITS}
                  THEN left({digits}, CAST(length({digits}) + {shift} AS BIGINT)) END
      WHEN ltrim({digits}, '0') = '' THEN '0' END"""
    return f"CASE WHEN ({whole}) = '0' THEN '0' ELSE {part(1)} || ({whole}) END"


def canonical_group_value(t: str) -> str:
    """SQL: the stored text of a group value given as JSON scalar text `t` (as DuckDB's JSON functions
    write it). Numbers are stored by value, as PostgreSQL's jsonb (DACC's storage) compares them: an
    integer as its digits, however written (1, 1.0, 1E0; 1e22 and 10000000000000000000000; -0 is 0, as
    DuckDB writes it); other numbers their shortest float text; strings and booleans as written. NULL for
    an integer of more than MAX_GROUP_DIGITS digits (its one text would be too long to write)."""
    d = f"TRY_CAST({t} AS DOUBLE)"
    return f"""CASE WHEN NOT (ascii({t}) = 45 OR ascii({t}) BETWEEN 48 AND 57) THEN {t}
      WHEN NOT (contains({t}, '.') OR contains({t}, 'e') OR contains({t}, 'E'))
        THEN CASE WHEN length(ltrim({t}, '-0')) <= {MAX_GROUP_DIGITS} THEN {t} END
      WHEN NOT isfinite({d}) THEN {_integer_text(t)}
      WHEN {d} = trunc({d}) THEN coalesce({_integer_text(f"CAST({d} AS VARCHAR)")}, {t})
      ELSE CAST({d} AS VARCHAR) END"""


def _group_checks(i: int) -> tuple[str, str]:
    """SQL for group i: (reason CASE branches, stored value expression); needs the columns of _group_values."""
    g, t, k, stored = f"j_g{i}", f"t_g{i}", f"k{i}", f"s_g{i}"
    reasons = f"""
      WHEN {k} IS NOT NULL AND ({g} IS NULL OR {t} = 'NULL') THEN 'missing_group{i}'
      WHEN {k} IS NOT NULL AND ({t} <> 'OBJECT' OR json_keys({g}) <> [{k}]
           OR coalesce(json_type({g}, '$."' || {k} || '"'), 'NULL') NOT IN {_SCALAR_TYPES}
           OR contains(coalesce(json_extract_string({g}, '$."' || {k} || '"'), ''), chr(0)) OR {stored} IS NULL)
           THEN 'invalid_group{i}'
      WHEN {k} IS NULL AND {g} IS NOT NULL AND {t} <> 'NULL' THEN 'unexpected_group{i}'"""
    value = f"CASE WHEN {k} IS NOT NULL THEN {stored} ELSE '' END"
    return reasons, value


def _group_values() -> tuple[str, str]:
    """SQL select items: each group's value text under its key (x_g1..3), then its stored text (s_g1..3),
    computed once in their own CTEs (written out in every place they are used, the statement took 0.35 s
    to plan)."""
    texts = ", ".join(f"json_extract(j_g{i}, '$.\"' || k{i} || '\"')::VARCHAR AS x_g{i}" for i in (1, 2, 3))
    stored = ", ".join(f"{canonical_group_value(f'x_g{i}')} AS s_g{i}" for i in (1, 2, 3))
    return texts, stored


def careful_sql(items: str) -> str:
    """The careful validation of `items` (a query of item_no, payload): every column of `staged`; needs
    `defs` (see definitions_registered) and the parameter $first_day."""
    paths = ", ".join(f"'$.{f}'" for f in FIELDS)
    group_sql = [_group_checks(i) for i in (1, 2, 3)]
    group_texts, group_stored = _group_values()
    return f"""
WITH items AS ({items}), src AS (
  SELECT item_no, payload, octet_length(encode(payload)) > {MAX_PAYLOAD_BYTES} AS oversized,
         CASE WHEN octet_length(encode(payload)) <= {MAX_PAYLOAD_BYTES} THEN try_cast(payload AS JSON) END AS j,
         {lenient_json("payload")} AS lenient
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
         WHEN t_value = 'VARCHAR' AND regexp_full_match(trim(j_value ->> '$', ' '), '{_NUMBER_RE}')
              THEN try_cast(trim(j_value ->> '$', ' ') AS DOUBLE) END AS num,
    CASE WHEN t_date = 'VARCHAR' AND regexp_full_match(j_date ->> '$', '{_DATE_RE}')
         THEN try_cast(upper(j_date ->> '$') AS TIMESTAMPTZ) END AS ts
  FROM typed t LEFT JOIN defs d ON t.t_name = 'VARCHAR' AND d.name = (t.j_name ->> '$')
), group_texts AS (
  SELECT *, {group_texts} FROM parsed
), group_values AS (
  SELECT *, {group_stored} FROM group_texts
), checked AS (
  SELECT *, CASE
      WHEN oversized THEN 'oversized'
      WHEN j IS NULL THEN 'invalid_json'
      WHEN lenient AND coalesce(isfinite(num), true) THEN 'invalid_json'  -- NaN / Infinity as the value: below
      WHEN kind <> 'OBJECT' THEN 'not_an_object'
      WHEN len(keys) <> len(list_distinct(keys)) THEN 'duplicate_field'
      WHEN len(list_filter(keys, lambda k: NOT list_contains({list(FIELDS)}, k))) > 0 THEN 'unknown_field'
      WHEN j_name IS NULL OR t_name = 'NULL' THEN 'missing_measure_name'
      WHEN t_name <> 'VARCHAR' THEN 'invalid_measure_name'
      WHEN def_name IS NULL THEN 'unknown_measure'
      WHEN j_value IS NULL OR t_value = 'NULL' THEN 'missing_value'
      WHEN num IS NULL THEN 'invalid_value'
      WHEN NOT isfinite(num) THEN 'value_not_finite'
      WHEN NOT {IN_RANGE} THEN 'value_out_of_range'
      WHEN j_date IS NULL OR t_date = 'NULL' THEN 'missing_start_date'
      WHEN ts IS NULL THEN 'invalid_start_date'
      WHEN timezone('UTC', ts)::DATE NOT BETWEEN date_trunc(period, $first_day::DATE)::DATE AND DATE '2999-12-31'
           THEN 'start_date_out_of_range'
      WHEN j_by IS NOT NULL AND t_by <> 'NULL' AND (t_by <> 'VARCHAR' OR length(j_by ->> '$') = 0
           OR length(j_by ->> '$') > {MAX_CREATED_BY} OR contains(j_by ->> '$', chr(0))) THEN 'invalid_created_by'
      {group_sql[0][0]}
      {group_sql[1][0]}
      {group_sql[2][0]}
    END AS reason
  FROM group_values
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
  CASE WHEN reason IS NULL THEN num + 0.0 END AS value  -- -0 + 0 is 0: one zero for min/max on both engines
FROM checked
ORDER BY item_no
"""


@contextlib.contextmanager
def definitions_registered(
    con: duckdb.DuckDBPyConnection,
    definitions: Sequence[MeasureDefinition],
) -> Iterator[None]:
    """The view `defs` of the definitions in `con` (the careful validation joins it) for the block."""
    con.register("defs", _definitions_table(definitions))
    try:
        yield
    finally:
        with contextlib.suppress(duckdb.Error):  # fails in an aborted transaction, which is rolled back anyway
            con.unregister("defs")
