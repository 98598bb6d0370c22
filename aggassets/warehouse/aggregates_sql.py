"""The refresh of one grain's window (DESIGN 4.3, 4.5): the same statements on both engines.

A window's rows merge parts per key: moments of raw rows, sealed moments of purged rows, and, for
weeks and months, the daily rows of fresh days (the roll-up); quartiles come from the raw values
of the whole window, or from frozen quartiles once a key is sealed. Parts merge with the
parallel-variance formula, summing in value order so that a re-run gives the same bits whatever the
rows' physical order. A Dialect supplies the few differences between the engines.
"""

from dataclasses import dataclass

from aggassets.warehouse.values import AGGREGATE_TABLES, PERIODS_FEEDING

KEY = "measure_name, period_start, created_by, group1, group2, group3"
COLUMNS = (
    f"{KEY}, count, count_not_zero, sum, min, max, avg, std, m2, median, first_quartile, third_quartile, "
    "last_raw_measures_purged, computed_at"
)


@dataclass(frozen=True)
class Dialect:
    """What differs between the engines in the refresh."""

    param_format: str  # "${name}" or "%({name})s"
    trunc: str  # a DATE column `{col}` truncated to `{grain}`, as a DATE
    quartiles: str  # the three quartiles of r.value, as an array
    text_collate: str  # byte order for text (PostgreSQL's default collation is not)
    sum_fn: str  # an exact sum of `{x}`, rounded once (DuckDB's compensated fsum, PostgreSQL's NUMERIC)
    raw_m2: str  # one pass: the sum of squared deviations of the raw values r.value of one key

    def sum(self, x: str) -> str:
        """The dialect's exact sum of the expression x."""
        return self.sum_fn.format(x=x)

    def param(self, name: str) -> str:
        """The placeholder of a named parameter."""
        return self.param_format.format(name=name)


# DuckDB adds a key's rows up on several threads and combines their partial states in no fixed order:
# sums are compensated (fsum: the correctly rounded sum whatever the order, but for an exact sum within a
# tiny fraction of an ulp of a rounding boundary), and one-pass M2 comes from those sums, so a re-run gives
# the same bits. PostgreSQL adds the values up exactly as NUMERIC (through their shortest text, which
# round-trips: extra_float_digits >= 1, set by the engine; a cast to NUMERIC keeps only 15 digits) and
# rounds once; its var_pop takes a key's values in value order (in the order they reach it, the one-pass M2
# of a day moved in the last bit with the range refreshed: its sort of the window's rows by key is not
# stable). Merged parts (days into a week, sealed moments and new rows) are added up the same way: a
# plain float sum of 1e16, 1, 1 and -1e16 would give 0.
# Keys whose values spread too little for a one-pass M2 get an exact second pass (see _raw_part).
DUCKDB = Dialect(
    "${name}",
    "CAST(date_trunc('{grain}', {col}) AS DATE)",
    "quantile_cont(r.value, [0.25, 0.5, 0.75])",
    "",
    "fsum({x})",
    "fsum(r.value * r.value) - fsum(r.value) * fsum(r.value) / count(*)",
)
POSTGRES = Dialect(
    "%({name})s",
    "date_trunc('{grain}', {col}::timestamp)::date",
    "percentile_cont(ARRAY[0.25, 0.5, 0.75]::FLOAT8[]) WITHIN GROUP (ORDER BY r.value)",
    ' COLLATE "C"',
    "CAST(sum(CAST(CAST({x} AS TEXT) AS NUMERIC)) AS FLOAT8)",
    "coalesce(var_pop(r.value ORDER BY r.value), 0) * count(*)",  # value order: its sort by key is not stable
)
# A one-pass m2 below 1% of sum(x^2) (a spread under ~10% of the mean) is recomputed in two passes: one-pass
# formulas lose about (mean / std)^2 ulps there. Columns of one aggregate row or part (n, s, m2, mn, mx).
NARROW = "mn <> mx AND m2 < 0.01 * (m2 + s * s / n)"


def periods(grain: str) -> str:
    """The measure periods feeding `grain`, as an SQL list of constants."""
    return ", ".join(f"'{p}'" for p in PERIODS_FEEDING[grain])


def eligible(grain: str) -> str:
    """The measures that feed `grain`: quartile flag, and whether their daily rows roll up into it."""
    return f"""SELECT name, with_quartiles, aggregation_period = 'day' AND '{grain}' <> 'day' AS rolled
FROM measure_definitions WHERE aggregation_period IN ({periods(grain)})"""


def measures_digest(grain: str, d: Dialect) -> str:
    """Digest of the measure names feeding `grain`: a partition's rows are complete for exactly these."""
    return f"""(SELECT md5(coalesce(string_agg(name, ',' ORDER BY name{d.text_collate}), ''))
 FROM measure_definitions WHERE aggregation_period IN ({periods(grain)}))"""


# --- measure keys: the refresh groups raw rows by an integer key_id (one per measure name, createdBy and
# group values: measure_keys), not by the five texts, and joins the texts back onto its few rows (a third
# less CPU for the day's GROUP BY). The intake gives every accepted row its key_id in the same transaction
# (each engine its own way: duckdb_sql.KEY_HASH, postgres_sql.NEW_BATCH_KEYS).
KEY_TEXTS = "measure_name, created_by, group1, group2, group3"


def _key_match(a: str, b: str) -> str:
    """SQL: rows a and b have the same five key texts."""
    return " AND ".join(f"{a}.{c} = {b}.{c}" for c in KEY_TEXTS.split(", "))


ABOVE_IDS = "(SELECT coalesce(max(key_id), 0) FROM measure_keys) + "  # new ids after the others
BELOW_IDS = "(SELECT least(0, coalesce(min(key_id), 0)) FROM measure_keys) - "  # new ids below 0 and the others


def insert_new_keys(source: str, d: Dialect, first_id: str = ABOVE_IDS) -> str:
    """Give the keys of `source` (rows with the five key texts) not in measure_keys new ids, first_id plus
    (or minus) their rank in byte order of their texts: the same ids for the same batches."""
    order = ", ".join(f"n.{c}{d.text_collate}" for c in KEY_TEXTS.split(", "))
    return f"""INSERT INTO measure_keys (key_id, {KEY_TEXTS})
SELECT {first_id}row_number() OVER (ORDER BY {order}), n.measure_name, n.created_by, n.group1, n.group2, n.group3
FROM (SELECT DISTINCT {KEY_TEXTS} FROM ({source}) s) n
WHERE NOT EXISTS (SELECT 1 FROM measure_keys k WHERE {_key_match("k", "n")})"""


# Once every row has its key id (Warehouse.setup, for a warehouse from before them; in a transaction of its
# own: DuckDB refuses it after an UPDATE in the same one), a writer that stores none (an older release)
# fails instead of leaving rows the refresh cannot group.
KEY_IDS_REQUIRED = "ALTER TABLE raw_measures ALTER COLUMN key_id SET NOT NULL"


def fill_key_ids(d: Dialect) -> list[str]:
    """The raw rows without a key_id get theirs (new keys first)."""
    unkeyed = "raw_measures.key_id IS NULL"
    return [
        insert_new_keys(f"SELECT * FROM raw_measures WHERE {unkeyed}", d),
        f"""UPDATE raw_measures SET key_id = k.key_id FROM measure_keys k
WHERE {unkeyed} AND {_key_match("k", "raw_measures")}""",
    ]


# 1 when raw_measures exists with no key_id, or one that may be NULL (a warehouse from before key ids, or
# whose migration stopped half way): Warehouse.setup fills them in, then requires them.
RAW_KEY_COLUMNS = """SELECT count(*) FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = 'raw_measures'
  AND (column_name = 'seq' OR column_name = 'key_id' AND is_nullable = 'NO')"""


def _keyed(source: str, period: str, moments: str, q: str) -> str:
    """One part's columns (see _part) from the rows `r` of `source` grouped by key_id and period: the key's
    texts are joined onto the grouped rows."""
    return f"""SELECT k.measure_name, g.period_start, k.created_by, k.group1, k.group2, k.group3,
         g.n, g.nz, g.s, g.m2, g.mn, g.mx, NULL::TIMESTAMP AS sealed_at, g.q
  FROM (SELECT r.key_id, {period} AS period_start, {moments}, {q} AS q FROM {source} GROUP BY 1, 2) g
  JOIN measure_keys k ON k.key_id = g.key_id"""


def _part(source: str, moments: str, sealed_at: str, q: str) -> str:
    """One part's columns, in the order every part shares: key, n, nz, s, m2, mn, mx, sealed_at, q."""
    return (
        f"{source}.measure_name, {{period}} AS period_start, {source}.created_by, {source}.group1, "
        f"{source}.group2, {source}.group3, {moments}, {sealed_at} AS sealed_at, {q} AS q"
    )


def _raw_moments(d: Dialect) -> str:
    """The one-pass moments of the raw rows `r` of one key: n, nz, s, m2, mn, mx."""
    return f"""count(*) AS n, count(*) FILTER (WHERE r.value <> 0) AS nz, {d.sum("r.value")} AS s, {d.raw_m2} AS m2,
         min(r.value) AS mn, max(r.value) AS mx"""


def _second_pass_m2(d: Dialect, value: str, mean: str) -> str:
    """M2 from a second pass around the mean: the refresh and the purge write it alike (the same bits)."""
    return d.sum(f"({value} - {mean}) * ({value} - {mean})")


def purged_moments(d: Dialect, now: str) -> str:
    """The moments of each key of purge_candidates (rows of sealed_moments), computed as the refresh computes
    them from the same raw rows (one pass, a second one for a narrow spread: _raw_part), so that a key whose
    period's raw rows are all purged recomputes to the same bits."""
    key = "measure_name, start_date, created_by, group1, group2, group3"
    on_key = " AND ".join(f"c.{col} = k.{col}" for col in key.split(", "))
    k_key = ", ".join(f"k.{col}" for col in key.split(", "))
    return f"""WITH k AS (
  SELECT {key}, {_raw_moments(d)} FROM purge_candidates r GROUP BY {key}
), narrow AS (
  SELECT {k_key}, {_second_pass_m2(d, "c.value", "(k.s / k.n)")} AS m2
  FROM k JOIN purge_candidates c ON {on_key} WHERE {NARROW}
  GROUP BY {k_key}
)
SELECT k.measure_name, k.start_date, k.created_by, k.group1, k.group2, k.group3, k.n, k.nz, k.s,
       CASE WHEN k.mn = k.mx THEN 0 ELSE coalesce(w.m2, k.m2) END, k.mn, k.mx, {now}
FROM k LEFT JOIN narrow w ON {on_key.replace("c.", "w.")}"""


_NO_MOMENTS = "0 AS n, 0 AS nz, NULL::FLOAT8 AS s, NULL::FLOAT8 AS m2, NULL::FLOAT8 AS mn, NULL::FLOAT8 AS mx"


def _roll_up_ctes(grain: str, d: Dialect) -> str:
    """Weeks and months: which days are fresh, the raw rows still needed for moments, the daily rows.

    A day is fresh when its partition was refreshed for today's day measures and no raw measure of a
    day measure arrived after that: its daily rows stand in for its raw measures and sealed moments.
    """
    start, end = d.param("start"), d.param("end")
    trunc = d.trunc.replace("{grain}", grain)
    quartile_rows = f"""raw_measures r JOIN eligible e ON e.name = r.measure_name AND e.rolled AND e.with_quartiles
  WHERE r.start_date >= {start} AND r.start_date < {end} AND (SELECT yes FROM any_fresh)"""
    return f"""
fresh_days AS (
  SELECT pm.period_start AS day FROM partition_materializations pm
  WHERE pm.grain = 'day' AND pm.period_start >= {start} AND pm.period_start < {end}
    AND pm.measures_digest = {measures_digest("day", d)}
    AND NOT EXISTS (SELECT 1 FROM raw_measures r JOIN eligible e ON e.name = r.measure_name AND e.rolled
                    WHERE r.start_date = pm.period_start AND r.received_at >= pm.materialized_at)
),
stale_days AS (
  SELECT CAST(g.d AS DATE) AS day
  FROM generate_series(CAST({start} AS TIMESTAMP), CAST({end} AS TIMESTAMP) - INTERVAL '1 day',
                       INTERVAL '1 day') AS g(d)
  WHERE CAST(g.d AS DATE) NOT IN (SELECT day FROM fresh_days)
),
moment_rows AS (  -- two joins the engine can push into the scan: own-period measures, stale days
  SELECT r.*, e.with_quartiles, e.rolled FROM raw_measures r JOIN eligible e ON e.name = r.measure_name AND NOT e.rolled
  WHERE r.start_date >= {start} AND r.start_date < {end}
  UNION ALL
  SELECT r.*, e.with_quartiles, e.rolled FROM raw_measures r JOIN eligible e ON e.name = r.measure_name AND e.rolled
  JOIN stale_days sd ON sd.day = r.start_date
),
any_fresh AS (SELECT count(*) > 0 AS yes FROM fresh_days),
daily_part AS (
  SELECT {
        _part(
            "a",
            "a.count AS n, a.count_not_zero AS nz, a.sum AS s, a.m2, a.min AS mn, a.max AS mx",
            "a.last_raw_measures_purged",
            "NULL::FLOAT8[]",
        ).format(period=trunc.format(col="a.period_start"))
    }
  FROM daily_aggregates a JOIN eligible e ON e.name = a.measure_name AND e.rolled
  WHERE a.period_start IN (SELECT day FROM fresh_days)
),
window_quartiles AS (  -- day measures when some day is fresh (else raw_part has all their values)
  {_keyed(quartile_rows, trunc.format(col="r.start_date"), _NO_MOMENTS, d.quartiles)}
),"""


def _raw_part(raw_rows: str, raw_period: str, quartiles: str, d: Dialect, exact: bool) -> str:
    """The CTEs ending in raw_part: each key's moments (and quartiles) from its raw rows in one pass, equal
    values giving m2 = 0; when `exact`, keys whose values spread too little for a one-pass m2 get it from a
    second pass around their mean (refresh_aggregates runs this only when the window has such keys)."""
    first = f"""
  {_keyed(raw_rows, raw_period, _raw_moments(d), quartiles)}"""
    equal_zero = f"SELECT {KEY}, n, nz, s, CASE WHEN mn = mx THEN 0 ELSE m2 END AS m2, mn, mx, sealed_at, q"
    if not exact:
        return f"""raw_first AS ({first}
),
raw_part AS ({equal_zero} FROM raw_first),"""
    narrow_key = " AND ".join(f"{raw_period if c == 'period_start' else 'r.' + c} = k.{c}" for c in KEY.split(", "))
    fixed_key = " AND ".join(f"w.{c} = p.{c}" for c in KEY.split(", "))
    return f"""raw_first AS MATERIALIZED ({first}
),
narrow AS (SELECT {KEY}, s / n AS mean FROM raw_first WHERE {NARROW}),
raw_part AS (
  {equal_zero} FROM raw_first WHERE NOT ({NARROW})
  UNION ALL
  SELECT p.measure_name, p.period_start, p.created_by, p.group1, p.group2, p.group3, p.n, p.nz, p.s, w.m2,
         p.mn, p.mx, p.sealed_at, p.q
  FROM raw_first p JOIN (
    SELECT k.measure_name, k.period_start, k.created_by, k.group1, k.group2, k.group3,
           {_second_pass_m2(d, "r.value", "k.mean")} AS m2
    FROM {raw_rows} JOIN narrow k ON {narrow_key}
    GROUP BY 1, 2, 3, 4, 5, 6
  ) w ON {fixed_key}
),"""


def _quartile(column: str, i: int) -> str:
    """A quartile of a window's row: frozen once its key is sealed; else from the raw values, unless some
    were purged unfrozen (the measure had no quartiles then): NULL, the values are gone. None without
    quartiles, whatever was frozen before the catalog changed."""
    return f"""CASE WHEN NOT e.with_quartiles THEN NULL WHEN f.grain IS NOT NULL THEN f.{column}
         WHEN t.purged IS NULL THEN t.q[{i}] END"""


def _insert(grain: str, d: Dialect, exact: bool) -> str:
    """The INSERT of one grain's window (`exact`: see _raw_part)."""
    rolls = grain != "day"
    start, end = d.param("start"), d.param("end")
    period = d.trunc.replace("{grain}", grain) if rolls else "{col}"  # a day's raw rows start on the day
    if rolls:
        raw_rows = "moment_rows r"  # quartiles over the whole window: own-period measures, or no fresh day
        quartiles = f"{d.quartiles} FILTER (WHERE r.with_quartiles AND NOT (r.rolled AND (SELECT yes FROM any_fresh)))"
        sealed_filter = "AND NOT (e.rolled AND s.start_date IN (SELECT day FROM fresh_days))"
        rolled = "UNION ALL SELECT * FROM daily_part UNION ALL SELECT * FROM window_quartiles"
    else:
        raw_rows = f"""(SELECT r.*, e.with_quartiles FROM raw_measures r JOIN eligible e ON e.name = r.measure_name
  WHERE r.start_date >= {start} AND r.start_date < {end}) r"""
        quartiles, sealed_filter, rolled = f"{d.quartiles} FILTER (WHERE r.with_quartiles)", "", ""
    sealed = "s.count AS n, s.count_not_zero AS nz, s.sum AS s, s.m2, s.min AS mn, s.max AS mx"
    on_key = " AND ".join(f"f.{c} = t.{c}" for c in KEY.split(", "))
    return f"""
INSERT INTO {AGGREGATE_TABLES[grain]} ({COLUMNS})
WITH eligible AS ({eligible(grain)}),{_roll_up_ctes(grain, d) if rolls else ""}
{_raw_part(raw_rows, period.format(col="r.start_date"), quartiles, d, exact)}
sealed_part AS (
  SELECT {_part("s", sealed, "s.sealed_at", "NULL::FLOAT8[]").format(period=period.format(col="s.start_date"))}
  FROM sealed_moments s JOIN eligible e ON e.name = s.measure_name
  WHERE s.start_date >= {start} AND s.start_date < {end} {sealed_filter}
),
parts AS (  -- each part with its key's overall mean, for the pooled m2; sums in value order
  SELECT u.*, sum(u.s) OVER w / CAST(sum(u.n) OVER w AS FLOAT8) AS mean
  FROM (SELECT * FROM raw_part UNION ALL SELECT * FROM sealed_part {rolled}) u
  WINDOW w AS (PARTITION BY {KEY} ORDER BY u.s, u.n ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
),
totals AS (
  SELECT {KEY}, CAST(sum(n) AS BIGINT) AS n, CAST(sum(nz) AS BIGINT) AS nz, {d.sum("s")} AS s,
         min(mn) AS mn, max(mx) AS mx, max(sealed_at) AS purged, max(q) AS q,
         sum(m2 + n * power(s / n - mean, 2) ORDER BY s, n, m2) FILTER (WHERE n > 0) AS m2
  FROM parts GROUP BY 1, 2, 3, 4, 5, 6
)
SELECT t.measure_name, t.period_start, t.created_by, t.group1, t.group2, t.group3,
       t.n, t.nz, t.s, t.mn, t.mx, least(greatest(t.s / t.n, t.mn), t.mx),  -- the rounded sum's mean may pass them
       CASE WHEN t.mn < t.mx THEN sqrt(greatest(t.m2, 0) / (t.n - 1)) ELSE 0 END,  -- equal values: 0 after merges too
       CASE WHEN t.mn < t.mx THEN t.m2 ELSE 0 END,
       {_quartile("median", 2)}, {_quartile("first_quartile", 1)}, {_quartile("third_quartile", 3)},
       t.purged, {d.param("now")}
FROM totals t JOIN eligible e ON e.name = t.measure_name
LEFT JOIN frozen_quartiles f ON f.grain = '{grain}' AND {on_key}"""


def narrow_rows(grain: str, d: Dialect) -> str:
    """How many rows of the window [start, end) have values spread too little for a one-pass m2."""
    return f"""SELECT count(*) FROM (
  SELECT count AS n, sum AS s, m2, min AS mn, max AS mx FROM {AGGREGATE_TABLES[grain]}
  WHERE period_start >= {d.param("start")} AND period_start < {d.param("end")}) a
WHERE {NARROW}"""


# Rows of a measure no longer in the catalog are kept as they are (DACC keeps a definition removed from its
# file): neither replaced by a refresh nor counted by the checks. A refresh with the wrong catalog loses nothing.
IN_CATALOG = "measure_name IN (SELECT name FROM measure_definitions)"


def refresh_aggregates(grain: str, d: Dialect, exact: bool = False) -> list[str]:
    """Replace the window [start, end) of one grain's table for the catalog's measures: delete, insert,
    record partitions. `exact` adds the second pass for narrow spreads: the refresh runs again with it
    when narrow_rows finds some."""
    table, start, end = AGGREGATE_TABLES[grain], d.param("start"), d.param("end")
    return [
        f"DELETE FROM {table} WHERE period_start >= {start} AND period_start < {end} AND {IN_CATALOG}",
        _insert(grain, d, exact),
        f"DELETE FROM partition_materializations WHERE grain = '{grain}' "
        f"AND period_start >= {start} AND period_start < {end}",
        f"""INSERT INTO partition_materializations (grain, period_start, materialized_at, measures_digest)
SELECT '{grain}', CAST(g.p AS DATE), {d.param("now")}, {measures_digest(grain, d)}
FROM generate_series(CAST({start} AS TIMESTAMP), CAST({end} AS TIMESTAMP) - INTERVAL '1 day',
                     INTERVAL '1 {grain}') AS g(p)""",
    ]


def rolled_up_since_received(d: Dialect) -> str:
    """Purge condition on a raw row r of a measure m: a day measure's week and month partitions were
    materialized after it arrived too (once purged, the late-measure sensor no longer sees the row)."""
    exists = [
        f"EXISTS (SELECT 1 FROM partition_materializations p WHERE p.grain = '{g}' "
        f"AND p.period_start = {d.trunc.replace('{grain}', g).format(col='r.start_date')} "
        "AND p.materialized_at > r.received_at)"
        for g in ("week", "month")
    ]
    return f"(m.aggregation_period <> 'day' OR ({' AND '.join(exists)}))"
