"""Every SQL statement of the PostgreSQL warehouse (psycopg2 named parameters: %(name)s).

The statements have duckdb_sql.py's semantics (the intake's are not here: PostgreSQL COPYs rows the
DuckDB validation staged), plus indexes, the writer's advisory lock and the schema inventory:
`percentile_cont` for quartiles, exact NUMERIC sums, `date_trunc` on timestamps cast back to dates. Text ordering
uses the "C" collation so that rows come out in the same (byte) order as in DuckDB. The refresh of
the aggregates is one text for both engines (aggregates_sql.py), as is the goals query (goals_sql.py).
"""

from collections.abc import Sequence

from aggassets.warehouse import aggregates_sql, checks_sql, goals_sql
from aggassets.warehouse.values import AGGREGATE_TABLES, MAX_AGE_DAYS, quote

KEY = "measure_name, period_start, created_by, group1, group2, group3"
MEASURE_KEY = aggregates_sql.KEY_TEXTS
_C = ' COLLATE "C"'
_AGGREGATE_COLUMNS = """
  measure_name TEXT NOT NULL, period_start DATE NOT NULL, created_by TEXT NOT NULL,
  group1 TEXT NOT NULL, group2 TEXT NOT NULL, group3 TEXT NOT NULL,
  count BIGINT NOT NULL, count_not_zero BIGINT NOT NULL, sum DOUBLE PRECISION NOT NULL,
  min DOUBLE PRECISION NOT NULL, max DOUBLE PRECISION NOT NULL, avg DOUBLE PRECISION NOT NULL,
  std DOUBLE PRECISION NOT NULL, m2 DOUBLE PRECISION NOT NULL,
  median DOUBLE PRECISION, first_quartile DOUBLE PRECISION, third_quartile DOUBLE PRECISION,
  last_raw_measures_purged TIMESTAMP, computed_at TIMESTAMP NOT NULL"""

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS measure_definitions (
  name TEXT PRIMARY KEY, org TEXT, created_by TEXT, group1_key TEXT, group2_key TEXT,
  group3_key TEXT, description TEXT, aggregation_period TEXT NOT NULL,
  execution_frequency TEXT, aggregation_threshold INTEGER NOT NULL, access_app BOOLEAN NOT NULL,
  access_public BOOLEAN NOT NULL, with_quartiles BOOLEAN NOT NULL,
  max_days_to_update_quartile INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS intake_batches (
  batch_id BIGINT PRIMARY KEY, source TEXT, sha256 TEXT, received_at TIMESTAMP NOT NULL,
  received BIGINT NOT NULL, accepted BIGINT NOT NULL, rejected BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS inbox (
  seq BIGINT NOT NULL, batch_id BIGINT NOT NULL, received_at TIMESTAMP NOT NULL, payload TEXT)""",
    """CREATE TABLE IF NOT EXISTS raw_measures (
  seq BIGINT NOT NULL, measure_name TEXT NOT NULL, start_date DATE NOT NULL, created_by TEXT NOT NULL,
  group1 TEXT NOT NULL, group2 TEXT NOT NULL, group3 TEXT NOT NULL, value DOUBLE PRECISION NOT NULL,
  received_at TIMESTAMP NOT NULL, key_id BIGINT NOT NULL)""",
    # the refresh's integer key of each raw row; added after 0.1 (Warehouse.setup fills it, then NOT NULL)
    "ALTER TABLE raw_measures ADD COLUMN IF NOT EXISTS key_id BIGINT",
    # no index on the texts (a PostgreSQL B-tree refuses entries over 2704 bytes; payloads reach 16 KiB):
    # one intake at a time numbers keys (the writer lock), after looking for each among the others
    """CREATE TABLE IF NOT EXISTS measure_keys (
  key_id BIGINT PRIMARY KEY, measure_name TEXT NOT NULL, created_by TEXT NOT NULL,
  group1 TEXT NOT NULL, group2 TEXT NOT NULL, group3 TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS rejected_measures (
  seq BIGINT NOT NULL, received_at TIMESTAMP NOT NULL, reason TEXT NOT NULL, measure_name TEXT)""",
    """CREATE TABLE IF NOT EXISTS sealed_moments (
  measure_name TEXT NOT NULL, start_date DATE NOT NULL, created_by TEXT NOT NULL,
  group1 TEXT NOT NULL, group2 TEXT NOT NULL, group3 TEXT NOT NULL, count BIGINT NOT NULL,
  count_not_zero BIGINT NOT NULL, sum DOUBLE PRECISION NOT NULL, m2 DOUBLE PRECISION NOT NULL,
  min DOUBLE PRECISION NOT NULL, max DOUBLE PRECISION NOT NULL, sealed_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS frozen_quartiles (
  measure_name TEXT NOT NULL, grain TEXT NOT NULL, period_start DATE NOT NULL,
  created_by TEXT NOT NULL, group1 TEXT NOT NULL, group2 TEXT NOT NULL, group3 TEXT NOT NULL,
  first_quartile DOUBLE PRECISION, median DOUBLE PRECISION, third_quartile DOUBLE PRECISION,
  frozen_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS partition_materializations (
  grain TEXT NOT NULL, period_start DATE NOT NULL, materialized_at TIMESTAMP NOT NULL,
  PRIMARY KEY (grain, period_start))""",
    # the digest of the measures a partition was refreshed for (refresh_aggregates); added after 0.1
    "ALTER TABLE partition_materializations ADD COLUMN IF NOT EXISTS measures_digest TEXT",
    *[f"CREATE TABLE IF NOT EXISTS {t} ({_AGGREGATE_COLUMNS})" for t in AGGREGATE_TABLES.values()],
]

# Indexes for the window, purge and seal lookups (setup runs them after SCHEMA).
INDEXES = [
    "CREATE INDEX IF NOT EXISTS inbox_seq ON inbox (seq)",
    "CREATE INDEX IF NOT EXISTS raw_measures_start ON raw_measures (start_date)",
    "CREATE INDEX IF NOT EXISTS raw_measures_seq ON raw_measures (seq)",
    "CREATE INDEX IF NOT EXISTS rejected_measures_received ON rejected_measures (received_at)",
    "CREATE INDEX IF NOT EXISTS sealed_moments_start ON sealed_moments (start_date)",
    "CREATE INDEX IF NOT EXISTS frozen_quartiles_key ON frozen_quartiles (measure_name, period_start)",
    "CREATE INDEX IF NOT EXISTS intake_batches_sha256 ON intake_batches (sha256)",
    *[f"CREATE INDEX IF NOT EXISTS {t}_period ON {t} (period_start)" for t in AGGREGATE_TABLES.values()],
]

# Tables, indexes and columns of the current schema (PostgresWarehouse.setup skips its DDL when all exist).
# From the catalog, which every role sees (information_schema hides the tables a role may not read: a
# read-only role before its grants would try to create them).
SCHEMA_OBJECTS = """
WITH relations AS (
  SELECT c.oid, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v')
)
SELECT 'table' AS kind, relname::TEXT AS a, NULL::TEXT AS b FROM relations
UNION ALL SELECT 'index', indexname::TEXT, NULL FROM pg_indexes WHERE schemaname = current_schema()
UNION ALL SELECT 'column', r.relname::TEXT, a.attname::TEXT
FROM relations r JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid WHERE a.attnum > 0 AND NOT a.attisdropped"""

# Dropped by setup where present: the UNIQUE constraint on measure_keys' texts that development versions
# created (a B-tree refuses entries over 2704 bytes: one long group value failed the whole intake).
_LEGACY_KEY_TEXTS = "measure_keys_measure_name_created_by_group1_group2_group3_key"
LEGACY_INDEXES = {_LEGACY_KEY_TEXTS: f"ALTER TABLE measure_keys DROP CONSTRAINT IF EXISTS {_LEGACY_KEY_TEXTS}"}

# Serialises writers of one schema (intake, refresh, purge): taken first in every transaction.
WRITER_LOCK = "SELECT pg_advisory_xact_lock(hashtext('aggassets:' || current_schema()))"
TRY_WRITER_LOCK = "SELECT pg_try_advisory_xact_lock(hashtext('aggassets:' || current_schema())) AS taken"

_DEFINITION_COLUMNS = (
    "name, org, created_by, group1_key, group2_key, group3_key, description, aggregation_period, "
    "execution_frequency, aggregation_threshold, access_app, access_public, with_quartiles, "
    "max_days_to_update_quartile"
)
DEFINITIONS_ROWS = "SELECT * FROM measure_definitions"
DELETE_DEFINITIONS = "DELETE FROM measure_definitions"
INSERT_DEFINITIONS = f"""INSERT INTO measure_definitions ({_DEFINITION_COLUMNS})
SELECT {_DEFINITION_COLUMNS} FROM staged_definitions"""

NEXT_IDS = """SELECT greatest((SELECT coalesce(max(seq), 0) FROM inbox),
                             (SELECT coalesce(sum(received), 0) FROM intake_batches))::BIGINT AS seq,
                     (SELECT coalesce(max(batch_id), 0) FROM intake_batches) AS batch_id"""
FILE_SEEN = "SELECT count(*) FROM intake_batches WHERE sha256 = %(sha256)s"
EVENT_FILE_SEEN = "SELECT count(*) FROM event_batches WHERE sha256 = %(sha256)s"
# The latest receive or refresh time stored (Warehouse.stamp stores times after it)
LATEST_STAMP = """SELECT greatest((SELECT max(received_at) FROM intake_batches),
                (SELECT max(materialized_at) FROM partition_materializations)) AS latest"""

_TRUNC = "date_trunc('{grain}', {col}::timestamp)::date"

ANY_FROZEN = "SELECT EXISTS (SELECT 1 FROM frozen_quartiles)"

# --- intake: the batch's rows were copied in (intake_fast.STORED_ROWS); every one has seq > %(seq0)s.
# Accepted items of a sealed quartile key (DESIGN 4.5) move from raw_measures to rejected_measures; new values
# of a measure without quartiles void its keys' frozen quartiles (see duckdb_sql.py).
_SEALED = """r.seq > %(seq0)s AND EXISTS (
  SELECT 1 FROM frozen_quartiles f JOIN measure_definitions m ON m.name = f.measure_name AND m.with_quartiles
  WHERE f.measure_name = r.measure_name AND f.created_by = r.created_by
    AND f.group1 = r.group1 AND f.group2 = r.group2 AND f.group3 = r.group3
    AND f.period_start = date_trunc(f.grain, r.start_date::timestamp)::date)"""
REJECT_SEALED_KEYS = [
    f"""INSERT INTO rejected_measures (seq, received_at, reason, measure_name)
SELECT r.seq, %(now)s, 'quartile_key_sealed', r.measure_name FROM raw_measures r WHERE {_SEALED}""",
    f"DELETE FROM raw_measures r WHERE {_SEALED}",
    """DELETE FROM frozen_quartiles f USING raw_measures r, measure_definitions m
WHERE r.seq > %(seq0)s AND m.name = r.measure_name AND NOT m.with_quartiles AND f.measure_name = r.measure_name
  AND f.created_by = r.created_by AND f.group1 = r.group1 AND f.group2 = r.group2 AND f.group3 = r.group3
  AND f.period_start = date_trunc(f.grain, r.start_date::timestamp)::date""",
]
# The batch's items by reason ('' for accepted).
BATCH_COUNTS = """(SELECT '' AS reason, count(*) AS n FROM raw_measures WHERE seq > %(seq0)s)
UNION ALL (SELECT reason, count(*) FROM rejected_measures WHERE seq > %(seq0)s GROUP BY reason)"""
INSERT_BATCH = """INSERT INTO intake_batches
  (batch_id, source, sha256, received_at, received, accepted, rejected)
VALUES (%(batch_id)s, %(source)s, %(sha256)s, %(now)s, %(received)s, %(accepted)s, %(rejected)s)"""


def _key_match(left: str, right: str, columns: str = MEASURE_KEY) -> str:
    """`left.c = right.c AND ...` over the key columns."""
    return " AND ".join(f"{left}.{c} = {right}.{c}" for c in columns.split(", "))


# Key ids: the rows COPY stores carry theirs (PostgresWarehouse.ingest_file: an UPDATE of 1M rows took 4.8 s):
# the batch's keys (staged in batch_keys) new to measure_keys get ids, then all of them are read back.
NEW_BATCH_KEYS = aggregates_sql.insert_new_keys("SELECT * FROM batch_keys", aggregates_sql.POSTGRES)
READ_BATCH_KEYS = f"SELECT k.* FROM measure_keys k JOIN batch_keys b ON {_key_match('k', 'b')}"
BATCH_KEY_IDS: list[str] = []
FILL_KEY_IDS = aggregates_sql.fill_key_ids(aggregates_sql.POSTGRES)  # migrates old warehouses


def refresh_aggregates(grain: str, exact: bool = False) -> list[str]:
    """Replace the window [start, end) of one grain's table (aggregates_sql.py)."""
    return aggregates_sql.refresh_aggregates(grain, aggregates_sql.POSTGRES, exact)


def narrow_rows(grain: str) -> str:
    """Rows of the window whose m2 needs the exact second pass (aggregates_sql.py)."""
    return aggregates_sql.narrow_rows(grain, aggregates_sql.POSTGRES)


def window_summary(grain: str) -> str:
    """Rows, released and suppressed rows of one grain's window."""
    return f"""
SELECT count(*) AS rows, count(*) FILTER (WHERE a.count >= d.aggregation_threshold) AS released,
       count(*) FILTER (WHERE a.count < d.aggregation_threshold) AS suppressed
FROM {AGGREGATE_TABLES[grain]} a JOIN measure_definitions d ON d.name = a.measure_name
WHERE a.period_start >= %(start)s AND a.period_start < %(end)s"""


def window_preview(grain: str) -> str:
    """A few released rows of the window, for the UI preview."""
    return f"""
SELECT a.measure_name, a.period_start, a.created_by, a.group1, a.group2, a.group3, a.count, a.avg, a.std, a.median,
  d.group1_key, d.group2_key, d.group3_key
FROM {AGGREGATE_TABLES[grain]} a JOIN measure_definitions d ON d.name = a.measure_name
WHERE a.period_start >= %(start)s AND a.period_start < %(end)s AND a.count >= d.aggregation_threshold
ORDER BY a.count DESC, a.measure_name{_C}, a.period_start, a.created_by{_C}, a.group1{_C},
         a.group2{_C}, a.group3{_C} LIMIT 10"""


def released_rows(grain: str) -> str:
    """DACC's restitution: released rows of one measure, [start, end), optional createdBy."""
    return f"""
SELECT a.*, d.with_quartiles, d.group1_key, d.group2_key, d.group3_key
FROM {AGGREGATE_TABLES[grain]} a JOIN measure_definitions d ON d.name = a.measure_name
WHERE a.measure_name = %(measure)s AND a.period_start >= %(start)s AND a.period_start < %(end)s
  AND a.count >= d.aggregation_threshold
  AND (%(created_by)s::TEXT IS NULL OR a.created_by = %(created_by)s::TEXT)
ORDER BY a.period_start, a.created_by{_C}, a.group1{_C}, a.group2{_C}, a.group3{_C}"""


RAW_WINDOW_COUNTS = f"""
SELECT measure_name, sum(stored)::BIGINT AS stored, sum(purged)::BIGINT AS purged FROM (
  SELECT measure_name, count(*) AS stored, 0 AS purged FROM raw_measures
  WHERE start_date >= %(start)s AND start_date < %(end)s GROUP BY 1
  UNION ALL SELECT measure_name, 0, sum(count) FROM sealed_moments
  WHERE start_date >= %(start)s AND start_date < %(end)s GROUP BY 1) c
GROUP BY 1 ORDER BY measure_name{_C}"""
REJECTED_WINDOW_COUNTS = f"""
SELECT reason, count(*) AS n FROM rejected_measures
WHERE received_at >= %(start)s AND received_at < %(end)s GROUP BY 1 ORDER BY n DESC, reason{_C}"""
LOSS_COUNTS = """SELECT (SELECT count(*) FROM inbox) AS received, (SELECT count(*) FROM raw_measures) AS accepted,
  (SELECT count(*) FROM rejected_measures) AS rejected"""

# The grains each measure feeds: its own period, and week and month for day measures.
_FEEDS = """JOIN (VALUES ('day'), ('week'), ('month')) g(grain)
    ON g.grain = {p} OR ({p} = 'day' AND g.grain IN ('week', 'month'))"""

# --- late measures: accepted after their partition (or a roll-up above it) was materialized
_FED_DAYS = f"""WITH feeds AS (
  SELECT d.name, g.grain FROM measure_definitions d
  {_FEEDS.format(p="d.aggregation_period")}
), days AS (  -- first per measure and day, then per grain: one grouping of the raw rows (4x faster)
  SELECT measure_name, start_date, max(received_at) AS last_received FROM raw_measures GROUP BY 1, 2
), fed AS (
  SELECT f.grain, date_trunc(f.grain, r.start_date::timestamp)::date AS period_start, r.last_received
  FROM days r JOIN feeds f ON f.name = r.measure_name
)"""
LATE_PARTITIONS = f"""
{_FED_DAYS}
SELECT fed.grain, fed.period_start, max(fed.last_received) AS last_received
FROM fed JOIN partition_materializations pm ON pm.grain = fed.grain AND pm.period_start = fed.period_start
WHERE fed.last_received >= pm.materialized_at
GROUP BY 1, 2 ORDER BY fed.grain{_C}, fed.period_start"""

# --- unaggregated measures: in a partition never materialized whose period ended by %(ended_by)s
UNAGGREGATED_PARTITIONS = f"""
{_FED_DAYS}
SELECT grain, period_start, max(last_received) AS last_received FROM fed
WHERE period_start + CASE grain WHEN 'day' THEN INTERVAL '1 day' WHEN 'week' THEN INTERVAL '7 days'
                                ELSE INTERVAL '1 month' END <= %(ended_by)s
  AND NOT EXISTS (SELECT 1 FROM partition_materializations pm
                  WHERE pm.grain = fed.grain AND pm.period_start = fed.period_start)
GROUP BY 1, 2 ORDER BY grain{_C}, period_start"""


def _purged_stamp(grain: str) -> str:
    """Stamp last_raw_measures_purged on the rows of `grain` fed by the purged measures."""
    table = AGGREGATE_TABLES[grain]
    return f"""UPDATE {table} SET last_raw_measures_purged = %(now)s
FROM (SELECT DISTINCT measure_name, {_TRUNC.format(grain=grain, col="start_date")} AS period_start,
             created_by, group1, group2, group3 FROM purge_candidates
      WHERE aggregation_period IN ({aggregates_sql.periods(grain)})) c
WHERE {_key_match(table, "c", KEY)}"""


_TARGET_KEY = "t.measure_name, t.grain, t.period_start, t.created_by, t.group1, t.group2, t.group3"

# --- purge (DESIGN §4.5): all statements run in one transaction
PURGE = [
    "DROP TABLE IF EXISTS pg_temp.purge_candidates",
    f"""CREATE TEMP TABLE purge_candidates ON COMMIT DROP AS
SELECT r.*, m.with_quartiles, m.aggregation_period FROM raw_measures r
JOIN measure_definitions m ON m.name = r.measure_name
JOIN partition_materializations pm ON pm.grain = m.aggregation_period AND pm.period_start = r.start_date
WHERE r.received_at < %(now)s - make_interval(days => %(days)s) AND pm.materialized_at > r.received_at
  AND (NOT m.with_quartiles
       OR r.received_at < %(now)s - make_interval(days => least(m.max_days_to_update_quartile, {MAX_AGE_DAYS})))
  AND (%(measure)s::TEXT IS NULL OR r.measure_name = %(measure)s::TEXT)
  AND {aggregates_sql.rolled_up_since_received(aggregates_sql.POSTGRES)}""",
    "ANALYZE purge_candidates",  # temp tables get no automatic statistics: plans need them
    f"""INSERT INTO frozen_quartiles (measure_name, grain, period_start, created_by, group1, group2, group3,
  first_quartile, median, third_quartile, frozen_at)
WITH targets AS (
  SELECT DISTINCT c.measure_name, g.grain, date_trunc(g.grain, c.start_date::timestamp)::date AS period_start,
         c.created_by, c.group1, c.group2, c.group3
  FROM purge_candidates c {_FEEDS.format(p="c.aggregation_period")}
  WHERE c.with_quartiles
), partial AS (  -- values of the target purged before, while the measure had no quartiles: quartiles unknown
  SELECT t.*, EXISTS (SELECT 1 FROM sealed_moments s WHERE {_key_match("s", "t")}
    AND date_trunc(t.grain, s.start_date::timestamp)::date = t.period_start) AS gone
  FROM targets t
)
SELECT {_TARGET_KEY},
       percentile_cont(0.25) WITHIN GROUP (ORDER BY r.value) FILTER (WHERE NOT t.gone),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY r.value) FILTER (WHERE NOT t.gone),
       percentile_cont(0.75) WITHIN GROUP (ORDER BY r.value) FILTER (WHERE NOT t.gone), %(now)s
FROM partial t JOIN raw_measures r ON {_key_match("r", "t")}
  AND date_trunc(t.grain, r.start_date::timestamp)::date = t.period_start
WHERE NOT EXISTS (SELECT 1 FROM frozen_quartiles f WHERE f.grain = t.grain AND {_key_match("f", "t", KEY)})
GROUP BY {_TARGET_KEY}""",
    f"""INSERT INTO sealed_moments (measure_name, start_date, created_by, group1, group2, group3, count,
  count_not_zero, sum, m2, min, max, sealed_at)
{aggregates_sql.purged_moments(aggregates_sql.POSTGRES, "%(now)s")}""",
    "DELETE FROM raw_measures WHERE seq IN (SELECT seq FROM purge_candidates)",
    "DELETE FROM inbox WHERE seq IN (SELECT seq FROM purge_candidates)",
    *[_purged_stamp(grain) for grain in AGGREGATE_TABLES],
]
PURGE_SUMMARY = f"""SELECT measure_name, count(*) AS purged FROM purge_candidates
GROUP BY 1 ORDER BY measure_name{_C}"""


# --- asset checks over the window [start, end): each returns the number of violating rows
def check_violations(grain: str) -> dict[str, str]:
    """Violation counts for one grain's window (aggregates_sql.py)."""
    return checks_sql.check_violations(grain, aggregates_sql.POSTGRES)


def current_partitions(grain: str) -> str:
    """Partitions up to date for today's catalog (aggregates_sql.py)."""
    return checks_sql.current_partitions(grain, aggregates_sql.POSTGRES)


# -- experiments: events and evaluation history ------------------------------------------------
GOALS_DIALECT = goals_sql.POSTGRES  # the goals query (goals_sql.py) in this engine
# events carries one TEXT column per dimension, named dim_<lower-case name>, added on first sight.
_F = "DOUBLE PRECISION"
EXPERIMENT_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS event_batches (
  batch_id BIGINT PRIMARY KEY, source TEXT, sha256 TEXT, received_at TIMESTAMP NOT NULL,
  received BIGINT NOT NULL, accepted BIGINT NOT NULL, rejected BIGINT NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS events (
  batch_id BIGINT NOT NULL, date DATE NOT NULL, exp_id TEXT NOT NULL, exp_variant_id TEXT NOT NULL,
  unit_type TEXT NOT NULL, unit_id TEXT NOT NULL, goal TEXT NOT NULL, count BIGINT NOT NULL,
  value {_F} NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS rejected_events (
  batch_id BIGINT NOT NULL, row_number BIGINT NOT NULL, reason TEXT NOT NULL, row_json TEXT)""",
    f"""CREATE TABLE IF NOT EXISTS experiment_goals (
  exp_id TEXT NOT NULL, evaluation_date DATE NOT NULL, evaluated_at TIMESTAMP NOT NULL,
  exp_variant_id TEXT NOT NULL, unit_type TEXT NOT NULL, agg_type TEXT NOT NULL, goal TEXT NOT NULL,
  goal_key TEXT NOT NULL, dimensions TEXT NOT NULL, count {_F} NOT NULL, sum_sqr_count {_F} NOT NULL,
  sum_value {_F} NOT NULL, sum_sqr_value {_F} NOT NULL, count_unique {_F} NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS experiment_goal_products (
  exp_id TEXT NOT NULL, evaluation_date DATE NOT NULL, exp_variant_id TEXT NOT NULL,
  left_key TEXT NOT NULL, right_key TEXT NOT NULL, sum_product {_F} NOT NULL, units BIGINT NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS experiment_metrics (
  exp_id TEXT NOT NULL, evaluation_date DATE NOT NULL, evaluated_at TIMESTAMP NOT NULL,
  metric_id BIGINT NOT NULL, metric_name TEXT NOT NULL, exp_variant_id TEXT NOT NULL, count {_F},
  mean {_F}, std {_F}, sum_value {_F}, confidence_level {_F}, diff {_F}, test_stat {_F},
  p_value {_F}, confidence_interval {_F}, standard_error {_F}, degrees_of_freedom {_F},
  minimum_effect {_F}, sample_size {_F}, required_sample_size {_F}, power {_F},
  false_positive_risk {_F}, abs_diff {_F}, abs_confidence_interval {_F}, abs_p_value {_F},
  reason TEXT NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS experiment_checks (
  exp_id TEXT NOT NULL, evaluation_date DATE NOT NULL, evaluated_at TIMESTAMP NOT NULL,
  check_id BIGINT NOT NULL, check_name TEXT NOT NULL, variable_id TEXT NOT NULL, value {_F})""",
    """CREATE TABLE IF NOT EXISTS experiment_exposures (
  exp_id TEXT NOT NULL, evaluation_date DATE NOT NULL, evaluated_at TIMESTAMP NOT NULL,
  exp_variant_id TEXT NOT NULL, exposures BIGINT NOT NULL)""",
]
EXPERIMENT_INDEXES = [
    "CREATE INDEX IF NOT EXISTS events_exp_date ON events (exp_id, date)",
    "CREATE INDEX IF NOT EXISTS event_batches_sha256 ON event_batches (sha256)",
    "CREATE INDEX IF NOT EXISTS experiment_goals_eval ON experiment_goals (exp_id, evaluation_date)",
    "CREATE INDEX IF NOT EXISTS experiment_metrics_eval ON experiment_metrics (exp_id, evaluation_date)",
]

# -- events intake (staged_events: the rows validated by events_intake.py) ----------------------
EVENT_FIELDS = ("date", "exp_id", "exp_variant_id", "unit_type", "unit_id", "goal", "count", "value")
EVENT_DIMENSIONS = """SELECT column_name::TEXT FROM information_schema.columns
WHERE table_catalog = current_database() AND table_schema = current_schema() AND table_name = 'events'
  AND left(column_name, 4) = 'dim_' ORDER BY 1"""
NEXT_EVENT_BATCH = "SELECT coalesce(max(batch_id), 0) + 1 AS batch_id FROM event_batches"
INSERT_REJECTED_EVENTS = """INSERT INTO rejected_events
SELECT %(batch_id)s, row_number, reason, row_json FROM staged_events WHERE reason IS NOT NULL"""
STAGED_EVENT_COUNTS = "SELECT coalesce(reason, '') AS reason, count(*) AS n FROM staged_events GROUP BY 1"
INSERT_EVENT_BATCH = """INSERT INTO event_batches VALUES (%(batch_id)s, %(source)s, %(sha256)s, %(now)s,
  %(received)s, %(accepted)s, %(rejected)s)"""
EVENT_LOSS_COUNTS = """SELECT (SELECT coalesce(sum(received), 0) FROM event_batches)::BIGINT AS received,
  (SELECT count(*) FROM events) AS accepted, (SELECT count(*) FROM rejected_events) AS rejected"""


def add_event_dimension(name: str) -> str:
    """Add the text column dim_<name> to events (`name`: a validated lower-case identifier)."""
    return f"ALTER TABLE events ADD COLUMN IF NOT EXISTS {quote('dim_' + name)} TEXT"


def insert_events(dimensions: Sequence[str]) -> str:
    """Insert the accepted staged rows with their dimensions (others stay NULL)."""
    columns = ", ".join(quote(c) for c in (*EVENT_FIELDS, *(f"dim_{d}" for d in dimensions)))
    return f"""INSERT INTO events (batch_id, {columns})
SELECT %(batch_id)s, {columns} FROM staged_events WHERE reason IS NULL"""
