"""The DuckDB warehouse's statements (named parameters: $name). Shared with PostgreSQL: the aggregates
refresh and checks (aggregates_sql.py), the goals query (goals_sql.py), the measure validation
(intake.py, intake_files.py) and the events validation (events_intake.py)."""

from collections.abc import Sequence

from aggassets.warehouse import aggregates_sql, checks_sql, goals_sql, intake, intake_fast, intake_files
from aggassets.warehouse.values import AGGREGATE_TABLES, MAX_AGE_DAYS, quote

_AGGREGATE_COLUMNS = """
  measure_name VARCHAR NOT NULL, period_start DATE NOT NULL, created_by VARCHAR NOT NULL,
  group1 VARCHAR NOT NULL, group2 VARCHAR NOT NULL, group3 VARCHAR NOT NULL,
  count BIGINT NOT NULL, count_not_zero BIGINT NOT NULL, sum DOUBLE NOT NULL,
  min DOUBLE NOT NULL, max DOUBLE NOT NULL, avg DOUBLE NOT NULL, std DOUBLE NOT NULL, m2 DOUBLE NOT NULL,
  median DOUBLE, first_quartile DOUBLE, third_quartile DOUBLE,
  last_raw_measures_purged TIMESTAMP, computed_at TIMESTAMP NOT NULL"""

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS measure_definitions (
  name VARCHAR PRIMARY KEY, org VARCHAR, created_by VARCHAR, group1_key VARCHAR, group2_key VARCHAR,
  group3_key VARCHAR, description VARCHAR, aggregation_period VARCHAR NOT NULL,
  execution_frequency VARCHAR, aggregation_threshold INTEGER NOT NULL, access_app BOOLEAN NOT NULL,
  access_public BOOLEAN NOT NULL, with_quartiles BOOLEAN NOT NULL,
  max_days_to_update_quartile INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS intake_batches (
  batch_id BIGINT PRIMARY KEY, source VARCHAR, sha256 VARCHAR, received_at TIMESTAMP NOT NULL,
  received BIGINT NOT NULL, accepted BIGINT NOT NULL, rejected BIGINT NOT NULL)""",
    # zstd: payloads are written once and rarely read; smaller and faster to write than the default compression
    """CREATE TABLE IF NOT EXISTS inbox (
  seq BIGINT NOT NULL, batch_id BIGINT NOT NULL, received_at TIMESTAMP NOT NULL,
  payload VARCHAR USING COMPRESSION zstd)""",
    """CREATE TABLE IF NOT EXISTS raw_measures (
  seq BIGINT NOT NULL, measure_name VARCHAR NOT NULL, start_date DATE NOT NULL, created_by VARCHAR NOT NULL,
  group1 VARCHAR NOT NULL, group2 VARCHAR NOT NULL, group3 VARCHAR NOT NULL, value DOUBLE NOT NULL,
  received_at TIMESTAMP NOT NULL, key_id BIGINT NOT NULL)""",
    # the refresh's integer key of each raw row; added after 0.1 (Warehouse.setup fills it, then NOT NULL)
    "ALTER TABLE raw_measures ADD COLUMN IF NOT EXISTS key_id BIGINT",
    # no index on the texts (a PostgreSQL B-tree refuses entries over 2704 bytes; payloads reach 16 KiB):
    # one intake at a time numbers keys (the writer lock), after looking for each among the others
    """CREATE TABLE IF NOT EXISTS measure_keys (
  key_id BIGINT PRIMARY KEY, measure_name VARCHAR NOT NULL, created_by VARCHAR NOT NULL,
  group1 VARCHAR NOT NULL, group2 VARCHAR NOT NULL, group3 VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS rejected_measures (
  seq BIGINT NOT NULL, received_at TIMESTAMP NOT NULL, reason VARCHAR NOT NULL, measure_name VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS sealed_moments (
  measure_name VARCHAR NOT NULL, start_date DATE NOT NULL, created_by VARCHAR NOT NULL,
  group1 VARCHAR NOT NULL, group2 VARCHAR NOT NULL, group3 VARCHAR NOT NULL, count BIGINT NOT NULL,
  count_not_zero BIGINT NOT NULL, sum DOUBLE NOT NULL, m2 DOUBLE NOT NULL, min DOUBLE NOT NULL,
  max DOUBLE NOT NULL, sealed_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS frozen_quartiles (
  measure_name VARCHAR NOT NULL, grain VARCHAR NOT NULL, period_start DATE NOT NULL,
  created_by VARCHAR NOT NULL, group1 VARCHAR NOT NULL, group2 VARCHAR NOT NULL, group3 VARCHAR NOT NULL,
  first_quartile DOUBLE, median DOUBLE, third_quartile DOUBLE, frozen_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS partition_materializations (
  grain VARCHAR NOT NULL, period_start DATE NOT NULL, materialized_at TIMESTAMP NOT NULL,
  PRIMARY KEY (grain, period_start))""",
    # the digest of the measures a partition was refreshed for (refresh_aggregates); added after 0.1
    "ALTER TABLE partition_materializations ADD COLUMN IF NOT EXISTS measures_digest VARCHAR",
    *[f"CREATE TABLE IF NOT EXISTS {t} ({_AGGREGATE_COLUMNS})" for t in AGGREGATE_TABLES.values()],
]

DEFINITIONS_ROWS = "SELECT * FROM measure_definitions"
DELETE_DEFINITIONS = "DELETE FROM measure_definitions"
INSERT_DEFINITIONS = "INSERT INTO measure_definitions SELECT * FROM staged_definitions"

# seq never reuses a number, even after purged rows left the inbox: every batch received `received` items.
NEXT_IDS = """SELECT greatest((SELECT coalesce(max(seq), 0) FROM inbox),
                              (SELECT coalesce(sum(received), 0) FROM intake_batches))::BIGINT AS seq,
                     (SELECT coalesce(max(batch_id), 0) FROM intake_batches) AS batch_id"""
FILE_SEEN = "SELECT count(*) FROM intake_batches WHERE sha256 = $sha256"
EVENT_FILE_SEEN = "SELECT count(*) FROM event_batches WHERE sha256 = $sha256"
# The latest receive or refresh time stored (Warehouse.stamp stores times after it)
LATEST_STAMP = """SELECT greatest((SELECT max(received_at) FROM intake_batches),
                (SELECT max(materialized_at) FROM partition_materializations)) AS latest"""

ANY_FROZEN = "SELECT EXISTS (SELECT 1 FROM frozen_quartiles)"

# --- intake: intake_files.read_items filled the temp table `lines`, intake_files.ITEMS numbers its items.
# seq = $seq0 + item number, so every row of the batch has seq > $seq0 (NEXT_IDS). The items are stored in
# the inbox first, as they came; validation then reads them back from there (`lines` is dropped: memory).
INSERT_INBOX = f"""INSERT INTO inbox SELECT $seq0 + item_no, $batch_id, $now, payload FROM ({intake_files.ITEMS})"""
_ITEMS = "SELECT seq - $seq0 AS item_no, payload FROM inbox WHERE seq > $seq0"


# A raw row's key_id is first a 63-bit hash of its key texts: no lookup while inserting, and no UPDATE of the
# batch after it (10M rows: 0.3 s, and 1 s more to commit). BATCH_KEY_IDS then checks the batch's keys
# against measure_keys: the rare key whose hash is another key's id, or whose texts hold another id already
# (a DuckDB whose hash changed), gets the right id.
KEY_HASH = f"(hash({aggregates_sql.KEY_TEXTS}) >> 1)::BIGINT"


def _insert_raw(accepted: str) -> str:
    """Insert the accepted items of a query (item_no and the stored fields) into raw_measures."""
    return f"""INSERT INTO raw_measures
SELECT $seq0 + item_no, measure_name, start_date, created_by, group1, group2, group3, value, $now, {KEY_HASH}
FROM ({accepted})"""


# The items the fast path proves valid go straight to raw_measures (intake_fast.fast_params); the others are
# checked carefully in `staged` (needs intake.definitions_registered), then stored as raw or rejected.
INSERT_RAW_FAST = _insert_raw(intake_fast.fast_accepted_sql(_ITEMS))
# The items the fast path left: the batch's item numbers missing from raw_measures, then their payloads.
# Only blocks of 2048 numbers not all present are enumerated; a NOT EXISTS per item instead read every
# payload of the batch back (10M items, 140 left: 0.1 s against 7.5 s).
_UNCHECKED = """WITH present AS (SELECT seq - $seq0 AS item_no FROM raw_measures WHERE seq > $seq0),
gaps AS (SELECT b FROM range(0, ($received + 2047) // 2048) t(b)
         ANTI JOIN (SELECT (item_no - 1) // 2048 AS b FROM present GROUP BY ALL HAVING count(*) = 2048) f USING (b)),
missing AS (
  SELECT item_no FROM (SELECT b * 2048 + k + 1 AS item_no FROM gaps, range(0, 2048) r(k)
                       WHERE b * 2048 + k + 1 <= $received) c
  ANTI JOIN present USING (item_no))
SELECT seq - $seq0 AS item_no, payload FROM inbox WHERE seq > $seq0 AND seq IN (SELECT $seq0 + item_no FROM missing)"""
STAGE_CAREFUL = f"CREATE OR REPLACE TEMP TABLE staged AS {intake.careful_sql(_UNCHECKED)}"
INSERT_RAW_CAREFUL = _insert_raw("SELECT * FROM staged WHERE reason IS NULL")
INSERT_REJECTED_CAREFUL = """INSERT INTO rejected_measures
SELECT $seq0 + item_no, $now, reason, measure_name FROM staged WHERE reason IS NOT NULL"""
# Accepted items of a sealed quartile key (DESIGN 4.5) move from raw_measures to rejected_measures. A measure
# without quartiles now (the catalog changed) seals nothing: its new values void its keys' frozen quartiles,
# which no longer hold every value (were quartiles turned on again, those keys show none: _quartile).
_SEALED = """seq > $seq0 AND EXISTS (
  SELECT 1 FROM frozen_quartiles f JOIN measure_definitions m ON m.name = f.measure_name AND m.with_quartiles
  WHERE f.measure_name = raw_measures.measure_name AND f.created_by = raw_measures.created_by
    AND f.group1 = raw_measures.group1 AND f.group2 = raw_measures.group2 AND f.group3 = raw_measures.group3
    AND f.period_start = CAST(date_trunc(f.grain, raw_measures.start_date) AS DATE))"""
REJECT_SEALED_KEYS = [
    f"""INSERT INTO rejected_measures
SELECT seq, $now, 'quartile_key_sealed', measure_name FROM raw_measures WHERE {_SEALED}""",
    f"DELETE FROM raw_measures WHERE {_SEALED}",
    """DELETE FROM frozen_quartiles WHERE EXISTS (
  SELECT 1 FROM raw_measures r JOIN measure_definitions m ON m.name = r.measure_name AND NOT m.with_quartiles
  WHERE r.seq > $seq0 AND r.measure_name = frozen_quartiles.measure_name AND r.created_by = frozen_quartiles.created_by
    AND r.group1 = frozen_quartiles.group1 AND r.group2 = frozen_quartiles.group2
    AND r.group3 = frozen_quartiles.group3
    AND frozen_quartiles.period_start = CAST(date_trunc(frozen_quartiles.grain, r.start_date) AS DATE))""",
]
_KEYS = aggregates_sql.KEY_TEXTS
_SAME_TEXTS = " AND ".join(f"k.{c} = b.{c}" for c in _KEYS.split(", "))
BATCH_KEY_IDS = [
    f"CREATE OR REPLACE TEMP TABLE batch_keys AS SELECT DISTINCT key_id, {_KEYS} FROM raw_measures WHERE seq > $seq0",
    # new texts whose hash is free, and no other new texts' hash: the hash is their id
    f"""INSERT INTO measure_keys SELECT b.key_id, {", ".join("b." + c for c in _KEYS.split(", "))} FROM batch_keys b
WHERE NOT EXISTS (SELECT 1 FROM measure_keys k WHERE k.key_id = b.key_id OR ({_SAME_TEXTS}))
  AND (SELECT count(*) FROM batch_keys o WHERE o.key_id = b.key_id) = 1""",
    # other new texts (a hash taken): ids below 0, which no hash is
    aggregates_sql.insert_new_keys("SELECT * FROM batch_keys", aggregates_sql.DUCKDB, aggregates_sql.BELOW_IDS),
    # rows whose texts have another id than their hash (a semi-join on an empty set when none has)
    f"""UPDATE raw_measures SET key_id = k.key_id FROM measure_keys k
WHERE raw_measures.seq > $seq0 AND raw_measures.key_id <> k.key_id
  AND {" AND ".join(f"k.{c} = raw_measures.{c}" for c in _KEYS.split(", "))}
  AND raw_measures.key_id IN (SELECT b.key_id FROM batch_keys b JOIN measure_keys k ON {_SAME_TEXTS}
                              WHERE b.key_id <> k.key_id)""",
    "DROP TABLE temp.batch_keys",
]
# A warehouse from before key ids: every row gets its hash, then the check above
FILL_KEY_IDS = [f"UPDATE raw_measures SET key_id = {KEY_HASH} WHERE key_id IS NULL", *BATCH_KEY_IDS]
# The batch's items by reason ('' for accepted).
BATCH_COUNTS = """(SELECT '' AS reason, count(*) AS n FROM raw_measures WHERE seq > $seq0)
UNION ALL (SELECT reason, count(*) FROM rejected_measures WHERE seq > $seq0 GROUP BY reason)"""
INSERT_BATCH = """INSERT INTO intake_batches VALUES ($batch_id, $source, $sha256, $now,
  $received, $accepted, $rejected)"""


def refresh_aggregates(grain: str, exact: bool = False) -> list[str]:
    """Replace the window [$start, $end) of one grain's table (aggregates_sql.py)."""
    return aggregates_sql.refresh_aggregates(grain, aggregates_sql.DUCKDB, exact)


def narrow_rows(grain: str) -> str:
    """Rows of the window whose m2 needs the exact second pass (aggregates_sql.py)."""
    return aggregates_sql.narrow_rows(grain, aggregates_sql.DUCKDB)


def window_summary(grain: str) -> str:
    """Rows, released and suppressed rows of one grain's window."""
    return f"""
SELECT count(*) AS rows, count(*) FILTER (WHERE a.count >= d.aggregation_threshold) AS released,
       count(*) FILTER (WHERE a.count < d.aggregation_threshold) AS suppressed
FROM {AGGREGATE_TABLES[grain]} a JOIN measure_definitions d ON d.name = a.measure_name
WHERE a.period_start >= $start AND a.period_start < $end"""


def window_preview(grain: str) -> str:
    """A few released rows of the window, for the UI preview."""
    return f"""
SELECT a.measure_name, a.period_start, a.created_by, a.group1, a.group2, a.group3, a.count, a.avg, a.std, a.median,
  d.group1_key, d.group2_key, d.group3_key
FROM {AGGREGATE_TABLES[grain]} a JOIN measure_definitions d ON d.name = a.measure_name
WHERE a.period_start >= $start AND a.period_start < $end AND a.count >= d.aggregation_threshold
ORDER BY a.count DESC, a.measure_name, a.period_start, a.created_by, a.group1, a.group2, a.group3 LIMIT 10"""


def released_rows(grain: str) -> str:
    """DACC's restitution: released rows of one measure, [start, end), optional createdBy."""
    return f"""
SELECT a.*, d.with_quartiles, d.group1_key, d.group2_key, d.group3_key
FROM {AGGREGATE_TABLES[grain]} a JOIN measure_definitions d ON d.name = a.measure_name
WHERE a.measure_name = $measure AND a.period_start >= $start AND a.period_start < $end
  AND a.count >= d.aggregation_threshold AND ($created_by IS NULL OR a.created_by = $created_by)
ORDER BY a.period_start, a.created_by, a.group1, a.group2, a.group3"""


# Accepted measures per name: raw rows stored, and those a purge moved into sealed moments.
RAW_WINDOW_COUNTS = """
SELECT measure_name, sum(stored)::BIGINT AS stored, sum(purged)::BIGINT AS purged FROM (
  SELECT measure_name, count(*) AS stored, 0 AS purged FROM raw_measures
  WHERE start_date >= $start AND start_date < $end GROUP BY ALL
  UNION ALL SELECT measure_name, 0, sum(count) FROM sealed_moments
  WHERE start_date >= $start AND start_date < $end GROUP BY ALL)
GROUP BY ALL ORDER BY measure_name"""
REJECTED_WINDOW_COUNTS = """
SELECT reason, count(*) AS n FROM rejected_measures
WHERE received_at >= $start AND received_at < $end GROUP BY ALL ORDER BY n DESC, reason"""
LOSS_COUNTS = """SELECT (SELECT count(*) FROM inbox), (SELECT count(*) FROM raw_measures),
  (SELECT count(*) FROM rejected_measures)"""

# --- late measures: accepted after their partition (or a roll-up above it) was materialized
_FEEDS = """WITH feeds AS (
  SELECT d.name, g.grain FROM measure_definitions d
  JOIN (VALUES ('day'), ('week'), ('month')) g(grain)
    ON g.grain = d.aggregation_period OR (d.aggregation_period = 'day' AND g.grain IN ('week', 'month'))
)"""
# Raw rows grouped per measure and day first, then per partition: joining raw rows to the partitions of their
# measure (and filtering on the period after the join) paired each row with every partition materialized
# before it arrived, billions of pairs for a year of partitions (minutes, holding the warehouse).
_FED = f"""{_FEEDS}, days AS (  -- 12x faster than per raw row and grain (0.2 s for 20M rows)
  SELECT measure_name, start_date, max(received_at) AS last_received FROM raw_measures GROUP BY ALL
), fed AS (
  SELECT f.grain, CAST(date_trunc(f.grain, r.start_date) AS DATE) AS period_start,
    max(r.last_received) AS last_received
  FROM days r JOIN feeds f ON f.name = r.measure_name GROUP BY ALL
)"""
LATE_PARTITIONS = f"""
{_FED}
SELECT fed.grain, fed.period_start, fed.last_received
FROM fed JOIN partition_materializations pm ON pm.grain = fed.grain AND pm.period_start = fed.period_start
WHERE fed.last_received >= pm.materialized_at
ORDER BY 1, 2"""
# --- unaggregated measures: in a partition never materialized whose period ended by $ended_by
UNAGGREGATED_PARTITIONS = f"""
{_FED}
SELECT grain, period_start, last_received FROM fed
WHERE period_start + CASE grain WHEN 'day' THEN INTERVAL 1 DAY WHEN 'week' THEN INTERVAL 7 DAY
                                ELSE INTERVAL 1 MONTH END <= $ended_by
  AND NOT EXISTS (SELECT 1 FROM partition_materializations pm
                  WHERE pm.grain = fed.grain AND pm.period_start = fed.period_start)
ORDER BY 1, 2"""

# --- purge (DESIGN §4.5): all statements run in one transaction
PURGE = [
    "DROP TABLE IF EXISTS temp.purge_candidates",
    f"""CREATE TEMP TABLE purge_candidates AS
SELECT r.*, m.with_quartiles, m.aggregation_period FROM raw_measures r
JOIN measure_definitions m ON m.name = r.measure_name
JOIN partition_materializations pm ON pm.grain = m.aggregation_period AND pm.period_start = r.start_date
WHERE r.received_at < $now - to_days(CAST($days AS INTEGER)) AND pm.materialized_at > r.received_at
  AND (NOT m.with_quartiles OR r.received_at < $now - to_days(least(m.max_days_to_update_quartile, {MAX_AGE_DAYS})))
  AND ($measure IS NULL OR r.measure_name = $measure)
  AND {aggregates_sql.rolled_up_since_received(aggregates_sql.DUCKDB)}""",
    """INSERT INTO frozen_quartiles
WITH targets AS (
  SELECT DISTINCT c.measure_name, g.grain, CAST(date_trunc(g.grain, c.start_date) AS DATE) AS period_start,
         c.created_by, c.group1, c.group2, c.group3
  FROM purge_candidates c JOIN (VALUES ('day'), ('week'), ('month')) g(grain)
    ON g.grain = c.aggregation_period OR (c.aggregation_period = 'day' AND g.grain IN ('week', 'month'))
  WHERE c.with_quartiles
), partial AS (  -- values of the target purged before, while the measure had no quartiles: quartiles unknown
  SELECT t.*, EXISTS (SELECT 1 FROM sealed_moments s WHERE s.measure_name = t.measure_name
    AND s.created_by = t.created_by AND s.group1 = t.group1 AND s.group2 = t.group2 AND s.group3 = t.group3
    AND CAST(date_trunc(t.grain, s.start_date) AS DATE) = t.period_start) AS gone
  FROM targets t
)
SELECT t.measure_name, t.grain, t.period_start, t.created_by, t.group1, t.group2, t.group3,
       quantile_cont(r.value, 0.25) FILTER (WHERE NOT t.gone), quantile_cont(r.value, 0.5) FILTER (WHERE NOT t.gone),
       quantile_cont(r.value, 0.75) FILTER (WHERE NOT t.gone), $now
FROM partial t JOIN raw_measures r ON r.measure_name = t.measure_name AND r.created_by = t.created_by
  AND r.group1 = t.group1 AND r.group2 = t.group2 AND r.group3 = t.group3
  AND CAST(date_trunc(t.grain, r.start_date) AS DATE) = t.period_start
WHERE NOT EXISTS (SELECT 1 FROM frozen_quartiles f WHERE f.measure_name = t.measure_name
  AND f.grain = t.grain AND f.period_start = t.period_start AND f.created_by = t.created_by
  AND f.group1 = t.group1 AND f.group2 = t.group2 AND f.group3 = t.group3)
GROUP BY ALL""",
    f"""INSERT INTO sealed_moments
{aggregates_sql.purged_moments(aggregates_sql.DUCKDB, "$now")}""",
    "DELETE FROM raw_measures WHERE seq IN (SELECT seq FROM purge_candidates)",
    "DELETE FROM inbox WHERE seq IN (SELECT seq FROM purge_candidates)",
    *[
        f"""UPDATE {table} SET last_raw_measures_purged = $now
FROM (SELECT DISTINCT measure_name, CAST(date_trunc('{grain}', start_date) AS DATE) AS period_start,
             created_by, group1, group2, group3 FROM purge_candidates
      WHERE aggregation_period IN ({aggregates_sql.periods(grain)})) c
WHERE {table}.measure_name = c.measure_name AND {table}.period_start = c.period_start
  AND {table}.created_by = c.created_by AND {table}.group1 = c.group1 AND {table}.group2 = c.group2
  AND {table}.group3 = c.group3"""
        for grain, table in AGGREGATE_TABLES.items()
    ],
]
PURGE_SUMMARY = """SELECT measure_name, count(*) AS purged FROM purge_candidates GROUP BY ALL ORDER BY 1"""


# --- asset checks over the window [$start, $end): each returns the number of violating rows
def check_violations(grain: str) -> dict[str, str]:
    """Violation counts for one grain's window (aggregates_sql.py)."""
    return checks_sql.check_violations(grain, aggregates_sql.DUCKDB)


def current_partitions(grain: str) -> str:
    """Partitions up to date for today's catalog (aggregates_sql.py)."""
    return checks_sql.current_partitions(grain, aggregates_sql.DUCKDB)


# -- experiments: events and evaluation history ------------------------------------------------
GOALS_DIALECT = goals_sql.DUCKDB  # the goals query (goals_sql.py) in this engine
# events carries one VARCHAR column per dimension, named dim_<lower-case name>, added on first sight.
EXPERIMENT_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS event_batches (
  batch_id BIGINT PRIMARY KEY, source VARCHAR, sha256 VARCHAR, received_at TIMESTAMP NOT NULL,
  received BIGINT NOT NULL, accepted BIGINT NOT NULL, rejected BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS events (
  batch_id BIGINT NOT NULL, date DATE NOT NULL, exp_id VARCHAR NOT NULL, exp_variant_id VARCHAR NOT NULL,
  unit_type VARCHAR NOT NULL, unit_id VARCHAR NOT NULL, goal VARCHAR NOT NULL, count BIGINT NOT NULL,
  value DOUBLE NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS rejected_events (
  batch_id BIGINT NOT NULL, row_number BIGINT NOT NULL, reason VARCHAR NOT NULL, row_json VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS experiment_goals (
  exp_id VARCHAR NOT NULL, evaluation_date DATE NOT NULL, evaluated_at TIMESTAMP NOT NULL,
  exp_variant_id VARCHAR NOT NULL, unit_type VARCHAR NOT NULL, agg_type VARCHAR NOT NULL, goal VARCHAR NOT NULL,
  goal_key VARCHAR NOT NULL, dimensions VARCHAR NOT NULL, count DOUBLE NOT NULL, sum_sqr_count DOUBLE NOT NULL,
  sum_value DOUBLE NOT NULL, sum_sqr_value DOUBLE NOT NULL, count_unique DOUBLE NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS experiment_goal_products (
  exp_id VARCHAR NOT NULL, evaluation_date DATE NOT NULL, exp_variant_id VARCHAR NOT NULL,
  left_key VARCHAR NOT NULL, right_key VARCHAR NOT NULL, sum_product DOUBLE NOT NULL, units BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS experiment_metrics (
  exp_id VARCHAR NOT NULL, evaluation_date DATE NOT NULL, evaluated_at TIMESTAMP NOT NULL,
  metric_id BIGINT NOT NULL, metric_name VARCHAR NOT NULL, exp_variant_id VARCHAR NOT NULL, count DOUBLE,
  mean DOUBLE, std DOUBLE, sum_value DOUBLE, confidence_level DOUBLE, diff DOUBLE, test_stat DOUBLE,
  p_value DOUBLE, confidence_interval DOUBLE, standard_error DOUBLE, degrees_of_freedom DOUBLE,
  minimum_effect DOUBLE, sample_size DOUBLE, required_sample_size DOUBLE, power DOUBLE,
  false_positive_risk DOUBLE, abs_diff DOUBLE, abs_confidence_interval DOUBLE, abs_p_value DOUBLE,
  reason VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS experiment_checks (
  exp_id VARCHAR NOT NULL, evaluation_date DATE NOT NULL, evaluated_at TIMESTAMP NOT NULL,
  check_id BIGINT NOT NULL, check_name VARCHAR NOT NULL, variable_id VARCHAR NOT NULL, value DOUBLE)""",
    """CREATE TABLE IF NOT EXISTS experiment_exposures (
  exp_id VARCHAR NOT NULL, evaluation_date DATE NOT NULL, evaluated_at TIMESTAMP NOT NULL,
  exp_variant_id VARCHAR NOT NULL, exposures BIGINT NOT NULL)""",
]

# -- events intake (staged_events: the rows validated by events_intake.py) ----------------------
EVENT_FIELDS = ("date", "exp_id", "exp_variant_id", "unit_type", "unit_id", "goal", "count", "value")
EVENT_DIMENSIONS = """SELECT column_name FROM information_schema.columns
WHERE table_catalog = current_database() AND table_schema = current_schema() AND table_name = 'events'
  AND left(column_name, 4) = 'dim_' ORDER BY column_name"""
NEXT_EVENT_BATCH = "SELECT coalesce(max(batch_id), 0) + 1 AS batch_id FROM event_batches"
INSERT_REJECTED_EVENTS = """INSERT INTO rejected_events
SELECT $batch_id, row_number, reason, row_json FROM staged_events WHERE reason IS NOT NULL"""
STAGED_EVENT_COUNTS = "SELECT coalesce(reason, '') AS reason, count(*) AS n FROM staged_events GROUP BY 1"
INSERT_EVENT_BATCH = """INSERT INTO event_batches VALUES ($batch_id, $source, $sha256, $now,
  $received, $accepted, $rejected)"""
EVENT_LOSS_COUNTS = """SELECT (SELECT coalesce(sum(received), 0) FROM event_batches)::BIGINT AS received,
  (SELECT count(*) FROM events) AS accepted, (SELECT count(*) FROM rejected_events) AS rejected"""


def add_event_dimension(name: str) -> str:
    """Add the text column dim_<name> to events (`name`: a validated lower-case identifier)."""
    return f"ALTER TABLE events ADD COLUMN IF NOT EXISTS {quote('dim_' + name)} VARCHAR"


def insert_events(dimensions: Sequence[str]) -> str:
    """Insert the accepted staged rows with their dimensions (others stay NULL)."""
    columns = ", ".join(quote(c) for c in (*EVENT_FIELDS, *(f"dim_{d}" for d in dimensions)))
    return f"""INSERT INTO events (batch_id, {columns})
SELECT $batch_id, {columns} FROM staged_events WHERE reason IS NULL"""
