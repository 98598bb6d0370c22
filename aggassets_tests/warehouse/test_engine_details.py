"""Details of the warehouse the broader suites leave open: exactness of a narrow spread, URL parsing."""

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from fractions import Fraction
from pathlib import Path

import pandas as pd
import psycopg2
import pyarrow as pa
import pytest
from dagster import RetryRequested

from aggassets.errors import AggassetsError, WarehouseUnavailable
from aggassets.resources import WarehouseResource
from aggassets.warehouse import open_warehouse
from aggassets.warehouse.base import Warehouse
from aggassets.warehouse.postgres_engine import holds_warehouse, split_url
from aggassets.warehouse.values import utc_now
from aggassets_tests.warehouse.engines import drop_schema, with_schema
from aggassets_tests.warehouse.support import (
    DEFINITIONS,
    TABLES,
    aggregates,
    assert_matches,
    ingest,
    measure,
    refresh_all,
    server_gone_mid_copy,
)


def exact_std(values: list[float]) -> float:
    """The sample standard deviation of the values, computed in exact rational arithmetic, rounded once."""
    exact = [Fraction(v) for v in values]
    mean = sum(exact) / len(exact)
    return math.sqrt(float(sum((v - mean) ** 2 for v in exact) / (len(exact) - 1)))


def test_a_spread_of_a_few_percent_of_the_mean_is_exact(warehouse: Warehouse, tmp_path: Path) -> None:
    """DESIGN 4.3: exact to float64. Values within ~2% of their mean (m2 is 0.02% of the sum of squares): a
    one-pass m2 is off by ~1e-12 there, the exact second pass is within an ulp or two."""
    values = [11992.684, 12418.68, 12268.709]
    warehouse.sync_definitions(DEFINITIONS)
    ingest(warehouse, tmp_path, items=[measure("errors-daily", v, "2022-03-07") for v in values])
    warehouse.refresh("day", date(2022, 3, 7), date(2022, 3, 8))
    std = float(warehouse.read_table("daily_aggregates")["std"].iloc[0])
    assert math.isclose(std, exact_std(values), rel_tol=1e-14, abs_tol=0.0)


def test_split_url_keeps_the_last_schema_parameter() -> None:
    """As libpq does with a keyword given twice, the last `schema` wins (and neither reaches libpq)."""
    assert split_url("postgresql://h/db?schema=first&sslmode=disable&schema=second") == (
        "postgresql://h/db?sslmode=disable",
        "second",
    )


def test_a_table_staged_outside_a_transaction_stays_for_the_connection(postgres_url: str) -> None:
    """Only a transaction's staged tables go with its end (ON COMMIT DROP); one staged outside any stays."""
    with open_warehouse(postgres_url) as wh:
        wh.stage("loose", pa.table({"x": [1, 2, 3]}))
        assert wh.fetch("SELECT sum(x) AS s FROM loose")["s"].iloc[0] == 6
        with wh.transaction():
            wh.stage("within", pa.table({"x": [4]}))
            assert wh.fetch("SELECT x FROM within")["x"].tolist() == [4]
        assert wh.fetch("SELECT count(*) AS n FROM pg_tables WHERE tablename = 'within'")["n"].iloc[0] == 0


def test_refresh_summary_and_preview_release_at_the_threshold(warehouse: Warehouse, tmp_path: Path) -> None:
    """DESIGN 4.4 at the boundary (visits-daily's threshold is 3): a row of 3 is released, a row of 2 is
    suppressed and left out of the preview, which lists the released rows by count, largest first."""
    warehouse.sync_definitions(DEFINITIONS)
    counts = {"desktop": 4, "mobile": 3, "tablet": 2}
    items = [
        measure("visits-daily", 1.0, "2022-03-07", group1=device, group2="linux")
        for device, n in counts.items()
        for _ in range(n)
    ]
    ingest(warehouse, tmp_path, items=items)
    result = warehouse.refresh("day", date(2022, 3, 7), date(2022, 3, 8))
    assert (result.rows, result.released, result.suppressed) == (3, 2, 1)
    assert result.preview["count"].tolist() == [4, 3]


def test_checks_allow_an_average_an_ulp_outside_equal_values(warehouse: Warehouse, tmp_path: Path) -> None:
    """0.1 three times: the rounded sum over 3 is an ulp off 0.1 (above it on DuckDB, below on PostgreSQL's
    exact sum), which min <= avg <= max must tolerate; the row is correct."""
    warehouse.sync_definitions(DEFINITIONS)
    ingest(warehouse, tmp_path, items=[measure("errors-daily", 0.1, "2022-03-07") for _ in range(3)])
    result = warehouse.refresh("day", date(2022, 3, 7), date(2022, 3, 8), checks=True)
    row = warehouse.read_table("daily_aggregates").iloc[0]
    assert row["min"] == row["max"] == 0.1 and abs(row["avg"] - 0.1) <= math.ulp(0.1)
    assert result.violations == dict.fromkeys(result.violations or {}, 0)
    assert warehouse.stored_check_violations("day")["min_le_avg_le_max"] == 0


def test_sums_of_values_needing_17_digits_are_exact(warehouse: Warehouse, tmp_path: Path) -> None:
    """DESIGN 4.3: exact to float64. 0.1 + 0.2 needs 17 significant digits: a sum through 15-digit decimals
    would see 0.3 twice. Expected: twice the value (exact in binary)."""
    value = 0.1 + 0.2
    warehouse.sync_definitions(DEFINITIONS)
    ingest(warehouse, tmp_path, items=[measure("errors-daily", value, "2022-03-07") for _ in range(2)])
    warehouse.refresh("day", date(2022, 3, 7), date(2022, 3, 8))
    row = warehouse.read_table("daily_aggregates").iloc[0]
    assert (row["sum"], row["avg"], row["min"]) == (2 * value, value, value) != (0.6, 0.3, 0.3)


def test_stored_checks_leave_out_a_day_refreshed_for_another_catalog(warehouse: Warehouse, tmp_path: Path) -> None:
    """A day refreshed before errors-daily joined the catalog lacks its rows: not a wrong count but a partition
    its next refresh completes, so count_equals_raw leaves it out until then."""
    warehouse.sync_definitions([d for d in DEFINITIONS if d.name != "errors-daily"])
    items = [
        measure("errors-daily", 1.0, "2022-03-07"),
        measure("visits-daily", 2.0, "2022-03-07", group1="a", group2="b"),
    ]
    ingest(warehouse, tmp_path, items=items)
    warehouse.refresh("day", date(2022, 3, 7), date(2022, 3, 8))
    warehouse.sync_definitions(DEFINITIONS)
    assert warehouse.stored_check_violations("day")["count_equals_raw"] == 0
    warehouse.refresh("day", date(2022, 3, 7), date(2022, 3, 8))
    assert warehouse.read_table("daily_aggregates", "measure_name")["measure_name"].tolist() == [
        "errors-daily",
        "visits-daily",
    ]
    assert warehouse.stored_check_violations("day")["count_equals_raw"] == 0


def test_a_key_purged_in_two_steps_is_frozen_once_per_grain(warehouse: Warehouse, tmp_path: Path) -> None:
    """DESIGN 4.5: a quartile key's Monday values purged first, its Tuesday values (received later, same week)
    purged by a later purge: each grain's quartiles are frozen once, and every figure stays what it was."""
    warehouse.sync_definitions(DEFINITIONS)
    ingest(warehouse, tmp_path, items=[measure("duration-daily", v, "2022-03-07", group1="s") for v in (1, 2, 4)])
    time.sleep(0.01)
    between = utc_now()
    time.sleep(0.01)
    ingest(warehouse, tmp_path, items=[measure("duration-daily", v, "2022-03-08", group1="s") for v in (8, 16)])
    windows = refresh_all(warehouse, [date(2022, 3, 7), date(2022, 3, 8)])
    before = {grain: aggregates(warehouse, grain) for grain in TABLES}
    assert warehouse.purge(31, now=between + timedelta(days=31)) == {"duration-daily": 3}
    assert warehouse.purge(31, now=utc_now() + timedelta(days=31)) == {"duration-daily": 2}
    for grain, (start, end) in windows.items():
        warehouse.refresh(grain, start, end)
        assert_matches(aggregates(warehouse, grain), before[grain])
    frozen = warehouse.read_table("frozen_quartiles")
    assert sorted(frozen[["grain", "period_start"]].astype(str).itertuples(index=False, name=None)) == [
        ("day", "2022-03-07"),
        ("day", "2022-03-08"),
        ("month", "2022-03-01"),
        ("week", "2022-03-07"),
    ]


def test_an_inbox_with_three_of_our_four_columns_is_another_applications(postgres_url: str) -> None:
    """An `inbox` table with seq, batch_id and received_at but no payload is not the warehouse's inbox: the
    schema is refused, by the read-only probe and by opening it, and nothing is created beside it."""
    dsn, schema = split_url(postgres_url)
    con = psycopg2.connect(dsn)
    con.autocommit = True
    try:
        with con.cursor() as cur:
            cur.execute(f"CREATE SCHEMA {schema}")
            cur.execute(f"CREATE TABLE {schema}.inbox (seq BIGINT, batch_id BIGINT, received_at TIMESTAMP, body TEXT)")
        expected = f"PostgreSQL schema {schema} holds a table inbox that is not aggassets'"
        with pytest.raises(AggassetsError, match=expected):
            holds_warehouse(postgres_url)
        with pytest.raises(AggassetsError, match=expected):
            open_warehouse(postgres_url).close()
        with con.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = %(s)s", {"s": schema})
            assert [r[0] for r in cur.fetchall()] == ["inbox"]
    finally:
        con.close()


def test_window_counts_take_the_start_day_and_leave_out_the_end_day(warehouse: Warehouse, tmp_path: Path) -> None:
    """raw_measures' metadata over [start, end): accepted by start date, rejected by receive time."""
    warehouse.sync_definitions(DEFINITIONS)
    days = ["2022-03-06", "2022-03-07", "2022-03-07", "2022-03-08"]
    ingest(warehouse, tmp_path, items=[measure("errors-daily", 1.0, d) for d in days], lines=["oops"] * 3)
    start, end = date(2022, 3, 7), date(2022, 3, 8)
    assert warehouse.raw_window_counts(start, end) == {"errors-daily": (2, 0)}
    times = ["2022-03-06 23:59:59", "2022-03-07 00:00:00", "2022-03-08 00:00:00"]
    seqs = sorted(int(s) for s in warehouse.read_table("rejected_measures")["seq"])
    for seq, at in zip(seqs, times, strict=True):
        warehouse.execute(f"UPDATE rejected_measures SET received_at = TIMESTAMP '{at}' WHERE seq = {seq}")
    assert warehouse.rejected_window_counts(start, end) == {"invalid_json": 1}


def test_a_partition_is_late_only_for_measures_received_after_it_and_reports_the_last(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """A measure received at the very time of a refresh may have come after the refresh read the raw rows (the
    writer lock orders them, the clock may not): its partition is late; one received before it is not; a late
    partition reports the newest receive time of its late measures."""
    warehouse.sync_definitions(DEFINITIONS)
    ingest(warehouse, tmp_path, items=[measure("errors-daily", 1.0, "2022-03-07")])
    warehouse.refresh("day", date(2022, 3, 7), date(2022, 3, 8))
    at_refresh = "(SELECT materialized_at FROM partition_materializations WHERE grain = 'day')"
    warehouse.execute(f"UPDATE raw_measures SET received_at = {at_refresh}")
    assert warehouse.late_partitions()["grain"].tolist() == ["day"]
    warehouse.execute(f"UPDATE raw_measures SET received_at = {at_refresh} - INTERVAL '1 microsecond'")
    assert warehouse.late_partitions().empty
    for value in (2.0, 3.0):
        ingest(warehouse, tmp_path, items=[measure("errors-daily", value, "2022-03-07")])
    raw = warehouse.read_table("raw_measures")
    report = warehouse.late_partitions()
    assert report["grain"].tolist() == ["day"]
    assert pd.Timestamp(report["period_start"].iloc[0]).date() == date(2022, 3, 7)
    assert pd.Timestamp(report["last_received"].iloc[0]) == pd.Timestamp(raw["received_at"].max())
    assert raw["received_at"].nunique() == 3


def test_a_measure_received_at_the_time_of_its_refresh_is_not_purged(warehouse: Warehouse, tmp_path: Path) -> None:
    """DESIGN 4.5: a raw measure is purgeable once its day, week and month were materialized after it arrived:
    one received a microsecond before the refreshes is, one received at their very time is not (it may have
    come after the refreshes read the raw rows)."""
    warehouse.sync_definitions(DEFINITIONS)
    ingest(warehouse, tmp_path, items=[measure("errors-daily", 1.0, "2022-03-07")])
    warehouse.refresh("day", date(2022, 3, 7), date(2022, 3, 8))
    warehouse.refresh("week", date(2022, 3, 7), date(2022, 3, 14))
    warehouse.refresh("month", date(2022, 3, 1), date(2022, 4, 1))
    for table, column in (("raw_measures", "received_at"), ("partition_materializations", "materialized_at")):
        warehouse.execute(f"UPDATE {table} SET {column} = TIMESTAMP '2022-04-02 00:00:00'")
    assert warehouse.purge(0, now=utc_now() + timedelta(days=1)) == {}
    warehouse.execute("UPDATE raw_measures SET received_at = TIMESTAMP '2022-04-01 23:59:59.999999'")
    assert warehouse.purge(0, now=utc_now() + timedelta(days=1)) == {"errors-daily": 1}


def test_a_week_refresh_writes_nothing_for_the_week_after_it(warehouse: Warehouse, tmp_path: Path) -> None:
    """A refresh over [start, end) reads no measure dated `end`: the next week's own measures stay out."""
    warehouse.sync_definitions(DEFINITIONS)
    items = [measure("latency-weekly", v, d) for v, d in ((1.0, "2022-03-07"), (5.0, "2022-03-14"))]
    ingest(warehouse, tmp_path, items=items)
    result = warehouse.refresh("week", date(2022, 3, 7), date(2022, 3, 14))
    table = warehouse.read_table("weekly_aggregates")
    assert [pd.Timestamp(p).date() for p in table["period_start"]] == [date(2022, 3, 7)]
    assert (result.rows, table["sum"].tolist()) == (1, [1.0])


@pytest.mark.parametrize(
    ("grain", "start", "end"),
    [("week", date(2022, 3, 7), date(2022, 3, 10)), ("month", date(2022, 3, 1), date(2022, 3, 31))],
)
def test_a_refresh_window_ending_inside_a_period_is_refused(
    warehouse: Warehouse, grain: str, start: date, end: date
) -> None:
    """A window must end on a period boundary as well as start on one: nothing is refreshed otherwise."""
    warehouse.sync_definitions(DEFINITIONS)
    with pytest.raises(AggassetsError, match=f"{grain} window {start} .. {end} does not start and end on"):
        warehouse.refresh(grain, start, end)
    assert warehouse.read_table("partition_materializations").empty


def test_a_negative_purge_age_is_refused_by_the_warehouse_itself(warehouse: Warehouse, tmp_path: Path) -> None:
    """purge(-1), as the purge job could be configured, is an error and purges nothing (not only in the CLI)."""
    warehouse.sync_definitions(DEFINITIONS)
    ingest(warehouse, tmp_path, items=[measure("errors-daily", 1.0, "2022-03-07")])
    refresh_all(warehouse, [date(2022, 3, 7)])
    with pytest.raises(AggassetsError, match=r"^days must be >= 0 \(the age of the raw measures to purge\), not -1$"):
        warehouse.purge(-1, now=utc_now() + timedelta(days=1))
    assert len(warehouse.read_table("raw_measures")) == 1


def test_the_last_day_accepted_is_2999_12_31_on_the_careful_path(warehouse: Warehouse, tmp_path: Path) -> None:
    """README: start dates up to 2999-12-31; an escaped character sends the item to the careful validation."""
    warehouse.sync_definitions(DEFINITIONS)
    lines = [
        '{"measureName": "errors-daily", "value": 1, "startDate": "' + day + '", "createdBy": "a\\/b"}'
        for day in ("2999-12-31", "3000-01-01")
    ]
    result = ingest(warehouse, tmp_path, lines=lines)
    assert result.as_dict()["rejected_by_reason"] == {"start_date_out_of_range": 1}
    raw = warehouse.read_table("raw_measures")
    assert [str(pd.Timestamp(d).date()) for d in raw["start_date"]] == ["2999-12-31"]
    assert raw["created_by"].tolist() == ["a/b"]


@pytest.mark.postgres
def test_another_schemas_warehouse_neither_counts_nor_stops_this_ones_upgrade(postgres_url: str) -> None:
    """The catalog lookups look at the URL's schema only: a warehouse in a sibling schema does not make this
    empty schema a warehouse, and a column this schema lacks is added though the sibling has it."""
    dsn, schema = split_url(postgres_url)
    sibling_url = with_schema(dsn, f"{schema}_sibling")
    try:
        open_warehouse(sibling_url).close()
        assert holds_warehouse(sibling_url) and not holds_warehouse(postgres_url)
        open_warehouse(postgres_url).close()
        con = psycopg2.connect(dsn)
        con.autocommit = True
        try:
            with con.cursor() as cur:
                cur.execute(f"ALTER TABLE {schema}.partition_materializations DROP COLUMN measures_digest")
            open_warehouse(postgres_url).close()  # an older schema, upgraded on opening
            with con.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM information_schema.columns WHERE table_schema = %s"
                    " AND table_name = 'partition_materializations' AND column_name = 'measures_digest'",
                    (schema,),
                )
                assert cur.fetchone() == (1,)
        finally:
            con.close()
    finally:
        drop_schema(dsn, f"{schema}_sibling")


def test_transactions_do_not_nest(warehouse: Warehouse, tmp_path: Path) -> None:
    """A transaction opened inside another is refused on both engines (PostgreSQL would only warn of the second
    BEGIN, and the inner COMMIT would commit the outer work early); the outer one rolls back, and the next
    transaction works."""
    warehouse.sync_definitions(DEFINITIONS)
    with pytest.raises(Exception, match="transaction"), warehouse.transaction():
        warehouse.execute("DELETE FROM measure_definitions")
        with warehouse.transaction():
            pass
    assert len(warehouse.read_table("measure_definitions")) == len(DEFINITIONS)
    with warehouse.transaction():
        warehouse.execute("DELETE FROM measure_definitions WHERE name = 'errors-daily'")
    assert len(warehouse.read_table("measure_definitions")) == len(DEFINITIONS) - 1


def test_the_refresh_preview_shows_groups_as_key_and_value(warehouse: Warehouse, tmp_path: Path) -> None:
    """The UI preview shows each group as `key=value`: a string without its JSON quotes, a number as
    stored (1.50 is 1.5), a boolean as JSON spells it (the strings "1.5" and "true" keep their quotes), nothing
    for a group the measure does not have."""
    warehouse.sync_definitions(DEFINITIONS)
    groups = [("a|b", "linux"), (1.50, "mac"), (True, "win"), ("1.5", "bsd"), ("true", "hurd")]
    items = [measure("visits-daily", 1.0, "2022-03-07", group1=g1, group2=g2) for g1, g2 in groups for _ in range(3)]
    items += [measure("errors-daily", 1.0, "2022-03-07")]
    ingest(warehouse, tmp_path, items)
    preview = warehouse.refresh("day", date(2022, 3, 7), date(2022, 3, 8)).preview
    shown = {(r.measure_name, r.group1, r.group2, r.group3) for r in preview.itertuples()}
    assert shown == {
        ("visits-daily", "device=a|b", "os=linux", ""),
        ("visits-daily", "device=1.5", "os=mac", ""),
        ("visits-daily", "device=true", "os=win", ""),
        ("visits-daily", 'device="1.5"', "os=bsd", ""),  # strings that read as a number or literal: quoted
        ("visits-daily", 'device="true"', "os=hurd", ""),
        ("errors-daily", "", "", ""),
    }
    assert not {c for c in preview.columns if c.endswith("_key")}


def _open_at_once(gate: threading.Barrier, url: str) -> None:
    """Open (and close) the warehouse once every thread of the gate is ready."""
    gate.wait()
    open_warehouse(url).close()


def test_commands_opening_a_new_schema_at_the_same_moment_all_succeed(postgres_url: str) -> None:
    """CREATE SCHEMA IF NOT EXISTS from several connections at once: all but one raised UniqueViolation
    (pg_namespace) at a deployment's first runs; the losers now go on with the schema the winner made."""
    dsn, schema = split_url(postgres_url)[0], f"{split_url(postgres_url)[1]}_new"
    url = with_schema(dsn, schema)
    try:
        for _ in range(8):
            drop_schema(dsn, schema)
            gate = threading.Barrier(6)
            with ThreadPoolExecutor(6) as pool:
                for future in [pool.submit(_open_at_once, gate, url) for _ in range(6)]:
                    future.result(timeout=60)
            assert holds_warehouse(url)
    finally:
        drop_schema(dsn, schema)


def test_a_connection_lost_during_a_copy_is_one_clear_error_and_stores_nothing(
    postgres_url: str, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server going away in the middle of a COPY (a restart): psycopg2 printed its error, quoting a stored
    row, and `SystemError ... decode` on stderr; now only the raised error speaks, naming the lost connection."""
    rows = pa.table({"name": [f"row {i}" for i in range(100_000)]})
    wh = open_warehouse(postgres_url)
    capfd.readouterr()
    try:
        lost = "connection to PostgreSQL was lost in the middle of a write"
        gone = server_gone_mid_copy(wh, postgres_url, monkeypatch)
        with gone, pytest.raises(WarehouseUnavailable, match=lost), wh.transaction():
            wh.stage("lost_rows", rows)
        assert capfd.readouterr().err == ""
    finally:
        wh.close()
    with open_warehouse(postgres_url) as again:
        assert again.loss_counts() == (0, 0, 0)


def test_a_run_whose_connection_is_lost_mid_step_retries_the_step(tmp_path: Path) -> None:
    """As a warehouse that cannot be opened now: in a run of the code location the step is retried."""
    resource = WarehouseResource(url=f"duckdb:///{tmp_path / 'w.duckdb'}", unavailable_retries=3)
    with pytest.raises(RetryRequested), resource.open(create=True):
        raise WarehouseUnavailable("the connection to PostgreSQL was lost in the middle of a write")
    with pytest.raises(WarehouseUnavailable), WarehouseResource(url=resource.url).open():
        raise WarehouseUnavailable("the aggassets command does not retry")


def test_a_write_waiting_for_another_says_so_once(postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """README (The writer lock): the wait has no limit; it is no longer silent (one warning, then it goes on)."""
    dsn, schema = split_url(postgres_url)
    holder = psycopg2.connect(dsn)
    with open_warehouse(postgres_url) as wh:
        with holder.cursor() as cur:
            cur.execute(f'SET search_path TO "{schema}"')
            cur.execute("SELECT pg_advisory_xact_lock(hashtext('aggassets:' || current_schema()))")
        with ThreadPoolExecutor(1) as pool, caplog.at_level("WARNING", logger="aggassets"):
            done = pool.submit(lambda: wh.purge(0))
            time.sleep(1.0)
            assert not done.done()  # it waits for the holder
            holder.rollback()
            assert done.result(timeout=30) == {}
    holder.close()
    waits = [r.getMessage() for r in caplog.records if r.name == "aggassets"]
    assert waits == [f"waiting for another write to the warehouse ({schema}) to finish: PostgreSQL's writer lock"]
