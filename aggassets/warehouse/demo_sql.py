"""SQL of `make demo`: its synthetic measures and events (written by an in-memory DuckDB, not the
warehouse) and the partition counts of its summary. Values are bound parameters."""

_STEPS = {"day": "INTERVAL 1 DAY", "week": "INTERVAL 7 DAY", "month": "INTERVAL 1 MONTH"}

SETUP = "SET enable_progress_bar = false; SELECT setseed(0.42); CREATE TEMP TABLE payloads (payload VARCHAR)"

# The payloads as NDJSON: one column, no quoting, a delimiter no payload holds.
WRITE_PAYLOADS = "COPY payloads TO $path (FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x1e')"

CLEAR_PAYLOADS = "DELETE FROM payloads"

LATE_PAYLOADS = "SELECT payload FROM payloads USING SAMPLE 300 ROWS (reservoir, 7)"

WRITE_EVENTS = "COPY (SELECT * FROM events) TO $path (FORMAT json)"

PARTITIONS = {
    table: f"SELECT count(DISTINCT period_start) FROM {table}"
    for table in ("daily_aggregates", "weekly_aggregates", "monthly_aggregates")
}


def insert_measures(value_sql: str, period: str, created_by: bool, groups: int) -> str:
    """INSERT INTO payloads one measure's JSON payloads, `$count` per period from `$first` to `$last`
    (a week measure from the week holding `$first`); `value_sql` is the generator's own expression over
    the random r1, r2. Parameters: $name, $first, $last, $count, $created_by (when `created_by`),
    $key1.., $rare1.., $options1.. (a list) for each of the `groups` group keys."""
    parts = [
        "'measureName', $name",
        f"'value', {value_sql}",
        "'startDate', strftime(p + INTERVAL (floor(r2 * 20)) HOUR, '%Y-%m-%dT%H:%M:%SZ')",
    ]
    if created_by:
        parts.append("'createdBy', CASE WHEN r3 < 0.9 THEN $created_by ELSE 'cozy-home' END")
    for i in range(1, groups + 1):
        pick = f"$options{i}[1 + floor(power(r{3 + i % 2}, 1.5) * len($options{i}))::INT]"
        parts.append(f"'group{i}', json_object($key{i}, CASE WHEN r3 > 0.9985 THEN $rare{i} ELSE {pick} END)")
    since = "" if period == "week" else "WHERE p >= $first::DATE"
    return f"""
INSERT INTO payloads
SELECT json_object({", ".join(parts)})::VARCHAR FROM (
  SELECT p, random() AS r1, random() AS r2, random() AS r3, random() AS r4
  FROM generate_series(date_trunc('{period}', $first::DATE), $last::DATE, {_STEPS[period]}) g(p),
       range($count)
  {since}
)"""
