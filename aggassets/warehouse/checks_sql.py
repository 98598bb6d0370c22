"""The asset checks' queries over one grain's window (checks.py), the same on both engines (a Dialect)."""

from aggassets.warehouse.aggregates_sql import IN_CATALOG, KEY, Dialect, eligible, measures_digest
from aggassets.warehouse.values import AGGREGATE_TABLES

_FINITE = "abs({x}) < CAST('Infinity' AS DOUBLE PRECISION)"  # false for NaN and infinities on both engines


def check_violations(grain: str, d: Dialect) -> dict[str, str]:
    """The asset checks of one grain's window [start, end): each query counts the violating rows (a NaN
    or infinite statistic violates its check: NaN compares greater than every number on both engines)."""
    t, start, end = AGGREGATE_TABLES[grain], d.param("start"), d.param("end")
    win = f"(SELECT * FROM {t} WHERE period_start >= {start} AND period_start < {end}) w"
    finite = " AND ".join(_FINITE.format(x=c) for c in ("min", "avg", "max"))
    quartiles = " AND ".join(_FINITE.format(x=c) for c in ("first_quartile", "median", "third_quartile"))
    return {
        "unique_keys": f"SELECT count(*) FROM (SELECT {KEY} FROM {win} GROUP BY {KEY} HAVING count(*) > 1) k",
        "min_le_avg_le_max": f"SELECT count(*) FROM {win} WHERE NOT (min <= avg + 1e-9 * abs(avg) "
        f"AND avg <= max + 1e-9 * abs(avg) AND {finite})",
        "quartiles_ordered": f"SELECT count(*) FROM {win} WHERE median IS NOT NULL AND NOT "
        f"(first_quartile <= median AND median <= third_quartile AND {quartiles})",
        "std_non_negative": f"SELECT count(*) FROM {win} WHERE NOT (std >= 0 AND {_FINITE.format(x='std')})",
        "count_equals_raw": f"""
WITH eligible AS ({eligible(grain)}),
agg AS (SELECT measure_name, sum(count) AS n FROM {win} WHERE {IN_CATALOG} GROUP BY measure_name),
src AS (
  SELECT measure_name, sum(n) AS n FROM (
    SELECT r.measure_name, count(*) AS n FROM raw_measures r JOIN eligible e ON e.name = r.measure_name
    WHERE r.start_date >= {start} AND r.start_date < {end} GROUP BY r.measure_name
    UNION ALL
    SELECT s.measure_name, sum(s.count) FROM sealed_moments s JOIN eligible e ON e.name = s.measure_name
    WHERE s.start_date >= {start} AND s.start_date < {end} GROUP BY s.measure_name
  ) u GROUP BY measure_name
)
SELECT count(*) FROM agg FULL JOIN src USING (measure_name) WHERE agg.n IS DISTINCT FROM src.n""",
    }


def current_partitions(grain: str, d: Dialect) -> str:
    """The partitions of `grain` refreshed for today's catalog with no measure arrived since: their rows
    must count exactly the raw (and sealed) measures of their window."""
    trunc = d.trunc.replace("{grain}", grain).format(col="r.start_date")
    return f"""WITH eligible AS ({eligible(grain)}),
late AS (
  SELECT DISTINCT pm.period_start FROM raw_measures r JOIN eligible e ON e.name = r.measure_name
  JOIN partition_materializations pm ON pm.grain = '{grain}' AND pm.period_start = {trunc}
  WHERE r.received_at >= pm.materialized_at
)
SELECT period_start FROM partition_materializations
WHERE grain = '{grain}' AND measures_digest = {measures_digest(grain, d)}
  AND period_start NOT IN (SELECT period_start FROM late)
ORDER BY period_start"""
