"""Idempotent refreshes and the late-partition report."""

import json
import math
import statistics
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aggassets.errors import AggassetsError
from aggassets.warehouse.base import Warehouse
from aggassets.warehouse.duckdb_engine import DuckDBWarehouse
from aggassets.warehouse.values import utc_now
from aggassets_tests.warehouse.support import (
    DEFINITIONS,
    TABLES,
    frame,
    generate,
    ingest,
    measure,
    refresh_all,
)

TIMESTAMPS = {"computed_at", "materialized_at"}  # when a refresh ran: the only columns allowed to move


def snapshot(wh: Warehouse) -> dict[str, pd.DataFrame]:
    """Every table a refresh writes, without its run timestamps, in a stable order."""
    out = {}
    for table in [*TABLES.values(), "partition_materializations"]:
        data = wh.read_table(table)
        data = data.drop(columns=[c for c in data.columns if c in TIMESTAMPS])
        out[table] = data.sort_values(list(data.columns[:6]), kind="stable").reset_index(drop=True)
    return out


def partitions(report: pd.DataFrame) -> set[tuple[str, date]]:
    """A partition report's rows as (grain, period start)."""
    return {(g, pd.Timestamp(p).date()) for g, p in zip(report["grain"], report["period_start"], strict=True)}


def late(wh: Warehouse) -> set[tuple[str, date]]:
    """The late partitions as (grain, period start)."""
    return partitions(wh.late_partitions())


def test_refreshing_twice_gives_identical_tables(warehouse: Warehouse, tmp_path: Path) -> None:
    """A second refresh of the same windows rewrites the same rows, values and partitions."""
    warehouse.sync_definitions(DEFINITIONS)
    items = generate(seed=5, n=800, first=date(2022, 1, 24), days=30)
    ingest(warehouse, tmp_path, items)
    days = list(frame(items)["day"])
    windows = refresh_all(warehouse, days)
    first = snapshot(warehouse)
    results = [warehouse.refresh(g, s, e) for g, (s, e) in windows.items()]
    second = snapshot(warehouse)
    for table, data in first.items():
        pd.testing.assert_frame_equal(second[table], data, check_exact=True, obj=table)
    assert [r.rows for r in results] == [len(first[t]) for t in TABLES.values()]


def test_late_partitions_are_exactly_those_fed_after_materialization(warehouse: Warehouse, tmp_path: Path) -> None:
    """A late measure marks its partition and the roll-ups above it, if they were materialized."""
    warehouse.sync_definitions(DEFINITIONS)
    days = [date(2022, 1, 24) + timedelta(days=i) for i in range(14)]  # two Monday weeks, Jan and Feb
    on_time = [measure("errors-daily", i, d.isoformat()) for i, d in enumerate(days)]
    on_time += [
        measure("sharing-weekly", 1, "2022-01-26", group1="k"),
        measure("variation-monthly", 1, "2022-02-02", group1="gas"),
    ]
    ingest(warehouse, tmp_path, on_time)
    refresh_all(warehouse, days)
    assert late(warehouse) == set()
    before = utc_now()
    ingest(
        warehouse,
        tmp_path,
        [
            measure("errors-daily", 5, "2022-01-26"),  # day, its week and its month
            measure("errors-daily", 6, "2022-01-26T23:30:00-01:00"),  # the 27th in UTC
            measure("sharing-weekly", 2, "2022-02-03", group1="k"),  # week of Jan 31
            measure("variation-monthly", 2, "2022-02-20", group1="gas"),  # month of February
            measure("errors-daily", 7, "2022-03-15"),  # never materialized: not late, just new
            {"measureName": "nope", "value": 1, "startDate": "2022-01-25"},  # rejected: feeds nothing
        ],
    )
    assert late(warehouse) == {
        ("day", date(2022, 1, 26)),
        ("day", date(2022, 1, 27)),
        ("week", date(2022, 1, 24)),
        ("week", date(2022, 1, 31)),
        ("month", date(2022, 1, 1)),
        ("month", date(2022, 2, 1)),
    }
    report = warehouse.late_partitions()
    assert all(before <= pd.Timestamp(t).to_pydatetime() <= utc_now() for t in report["last_received"])
    warehouse.refresh("day", date(2022, 1, 26), date(2022, 1, 27))
    assert ("day", date(2022, 1, 26)) not in late(warehouse) and ("day", date(2022, 1, 27)) in late(warehouse)
    refresh_all(warehouse, days)
    assert late(warehouse) == set()


def unaggregated(wh: Warehouse, ended_by: date) -> set[tuple[str, date]]:
    """The never-materialized partitions with measures whose period ended by `ended_by`."""
    return partitions(wh.unaggregated_partitions(ended_by))


def test_unaggregated_partitions_are_those_never_materialized_whose_period_ended(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """History ingested without a refresh: every partition it feeds, once its period ended by the cutoff,
    until materialized (the period a schedule has not run yet stays out)."""
    warehouse.sync_definitions(DEFINITIONS)
    ingest(
        warehouse,
        tmp_path,
        [
            measure("errors-daily", 1, "2022-01-28"),  # Friday: day, week of Jan 24, January
            measure("errors-daily", 2, "2022-01-31"),  # Monday: day, week of Jan 31, January
            measure("sharing-weekly", 1, "2022-02-02", group1="k"),  # week of Jan 31 only
            measure("variation-monthly", 1, "2022-02-20", group1="gas"),  # February only
            {"measureName": "nope", "value": 1, "startDate": "2022-01-25"},  # rejected: feeds nothing
        ],
    )
    assert unaggregated(warehouse, date(2022, 1, 28)) == set()  # no period ended yet
    assert unaggregated(warehouse, date(2022, 1, 31)) == {("day", date(2022, 1, 28)), ("week", date(2022, 1, 24))}
    everything = {
        ("day", date(2022, 1, 28)),
        ("day", date(2022, 1, 31)),
        ("week", date(2022, 1, 24)),
        ("week", date(2022, 1, 31)),
        ("month", date(2022, 1, 1)),
        ("month", date(2022, 2, 1)),
    }
    assert unaggregated(warehouse, date(2022, 3, 1)) == everything
    warehouse.refresh("day", date(2022, 1, 28), date(2022, 1, 29))
    warehouse.refresh("week", date(2022, 1, 31), date(2022, 2, 7))
    assert unaggregated(warehouse, date(2022, 3, 1)) == everything - {
        ("day", date(2022, 1, 28)),
        ("week", date(2022, 1, 31)),
    }
    assert late(warehouse) == set()  # materialized after the measures: not late either
    refresh_all(warehouse, [date(2022, 1, 28), date(2022, 1, 31), date(2022, 2, 20)])
    assert unaggregated(warehouse, date(2022, 3, 1)) == set()


def test_inbox_sequence_never_reuses_numbers(warehouse: Warehouse, tmp_path: Path) -> None:
    """After a purge empties the inbox, new measures still get new sequence numbers."""
    warehouse.sync_definitions(DEFINITIONS)
    ingest(warehouse, tmp_path, [measure("errors-daily", v, "2022-01-03") for v in (1, 2, 3)])
    refresh_all(warehouse, [date(2022, 1, 3)])
    assert warehouse.purge(0, now=utc_now() + timedelta(seconds=1)) == {"errors-daily": 3}
    assert warehouse.loss_counts() == (0, 0, 0)
    ingest(warehouse, tmp_path, [measure("errors-daily", 4, "2022-01-04")], lines=["not json"])
    assert warehouse.read_table("inbox", order_by="seq")["seq"].tolist() == [4, 5]
    assert warehouse.read_table("intake_batches", order_by="batch_id")["batch_id"].tolist() == [1, 2]


@pytest.mark.parametrize(
    ("grain", "start", "end"),
    [
        ("week", date(2022, 1, 4), date(2022, 1, 11)),
        ("week", date(2022, 1, 3), date(2022, 1, 9)),
        ("month", date(2022, 1, 2), date(2022, 2, 1)),
        ("month", date(2022, 1, 1), date(2022, 1, 31)),
    ],
)
def test_refresh_refuses_windows_across_period_boundaries(
    warehouse: Warehouse, grain: str, start: date, end: date
) -> None:
    """A window that cuts a week or a month would write rows outside itself: refused."""
    with pytest.raises(AggassetsError, match="boundaries"):
        warehouse.refresh(grain, start, end)
    with pytest.raises(AggassetsError, match="unknown grain"):
        warehouse.refresh("year", start, end)


def test_received_at_is_naive_utc(warehouse: Warehouse, tmp_path: Path) -> None:
    """Timestamps are stored as naive UTC."""
    warehouse.sync_definitions(DEFINITIONS)
    ingest(warehouse, tmp_path, [measure("errors-daily", 1, "2022-01-03")])
    stamp = pd.Timestamp(warehouse.read_table("raw_measures")["received_at"].iloc[0]).to_pydatetime()
    assert stamp.tzinfo is None and abs(stamp - datetime.now(UTC).replace(tzinfo=None)) < timedelta(minutes=1)


def test_duckdb_raw_sum_is_exact_and_stable_over_many_row_groups(tmp_path: Path) -> None:
    """A day of 300k values spread over three row groups, mixing 1e16 with small values: the stored sum is
    Python's correctly rounded math.fsum (a plain parallel sum loses the small values, differently each
    run), and a second refresh stores the same bits."""
    wh = DuckDBWarehouse(str(tmp_path / "wh.duckdb"))
    wh.sync_definitions(DEFINITIONS)
    values = [(1e16, 1.0, -1e16, 0.1, 3.3, -2.5)[i % 6] * (1 + (i % 7) / 8) for i in range(300_000)]
    ingest(wh, tmp_path, [measure("errors-daily", v, "2022-01-24") for v in values])
    sums = []
    for _ in range(2):
        wh.refresh("day", date(2022, 1, 24), date(2022, 1, 25))
        sums.append(wh.read_table("daily_aggregates")["sum"].tolist())
    assert sums == [[math.fsum(values)], [math.fsum(values)]]
    wh.close()


def test_std_is_exact_and_stable_over_many_row_groups(warehouse: Warehouse, tmp_path: Path) -> None:
    """Three keys of one day against Python's statistics.stdev (exact rational arithmetic): 250k values
    around 1e6 with a wide spread (over two row groups: the same bits on a second refresh), values of a
    narrow spread around 1e9 (relative spread 1e-6), and equal values (std exactly 0); then the week, from
    that day's row and from a weekly measure's raw values of a narrow spread."""
    wh = warehouse
    wh.sync_definitions(DEFINITIONS)
    rng = np.random.default_rng(3)
    keys = {
        "wide": (1e6 * rng.lognormal(0, 0.6, 250_000)).tolist(),
        "narrow": (1e9 + rng.normal(0, 1e3, 2_000)).tolist(),
        "equal": [0.1] * 500,
    }
    weekly = (1e9 + rng.normal(0, 1e3, 2_000)).tolist()  # an own-period measure of the week: its raw rows
    ingest(
        wh,
        tmp_path,
        [measure("visits-daily", v, "2022-01-24", group1=k, group2="x") for k, values in keys.items() for v in values]
        + [measure("latency-weekly", v, "2022-01-25") for v in weekly],
    )
    runs = []
    for _ in range(2):
        wh.refresh("day", date(2022, 1, 24), date(2022, 1, 25))
        table = wh.read_table("daily_aggregates")
        runs.append({json.loads(g): s for g, s in zip(table["group1"], table["std"], strict=True)})
    assert runs[0]["equal"] == 0.0 and runs[0]["wide"] == runs[1]["wide"]
    for key, values in keys.items():
        assert runs[0][key] == pytest.approx(statistics.stdev(values), rel=1e-12, abs=0), key
    wh.refresh("week", date(2022, 1, 24), date(2022, 1, 31))  # the narrow day rolls up; the weekly raw rows
    week = wh.read_table("weekly_aggregates").set_index("measure_name")
    assert week.loc["latency-weekly", "std"] == pytest.approx(statistics.stdev(weekly), rel=1e-12, abs=0)
    rolled = week.loc[["visits-daily"]].set_index("group1")["std"]
    assert rolled['"narrow"'] == pytest.approx(statistics.stdev(keys["narrow"]), rel=1e-12, abs=0)


def test_equal_values_merged_over_days_have_std_zero(warehouse: Warehouse, tmp_path: Path) -> None:
    """A week rolled up from days of the same value (0.1, whose sums do not divide back exactly) has std
    and m2 exactly 0."""
    warehouse.sync_definitions(DEFINITIONS)
    counts = {"2022-01-24": 3, "2022-01-25": 7, "2022-01-27": 10}
    ingest(warehouse, tmp_path, [measure("errors-daily", 0.1, day) for day, n in counts.items() for _ in range(n)])
    warehouse.refresh("day", date(2022, 1, 24), date(2022, 1, 28))
    warehouse.refresh("week", date(2022, 1, 24), date(2022, 1, 31))
    week = warehouse.read_table("weekly_aggregates")
    assert week[["count", "std", "m2"]].values.tolist() == [[20, 0.0, 0.0]]


def test_a_day_refreshed_alone_or_in_a_range_gets_the_same_bits(warehouse: Warehouse, tmp_path: Path) -> None:
    """Re-running a day gives identical rows whatever range it is refreshed in: a single day after the
    whole range (as the late-measure sensor does) rewrote some std on PostgreSQL in the last bit (its sort
    of a window's rows by key is not stable, so a key's values reached var_pop in an order that depended on
    the other rows of the window)."""
    warehouse.sync_definitions(DEFINITIONS)
    first = date(2022, 1, 3)
    items = generate(seed=8, n=6000, first=first, days=120)
    ingest(warehouse, tmp_path, items[:3000])
    ingest(warehouse, tmp_path, items[3000:])
    warehouse.refresh("day", first, first + timedelta(days=120))
    whole = snapshot(warehouse)["daily_aggregates"]
    for offset in (17, 52, 53, 90):
        day = first + timedelta(days=offset)
        warehouse.refresh("day", day, day + timedelta(days=1))
    alone = snapshot(warehouse)["daily_aggregates"]
    pd.testing.assert_frame_equal(alone, whole, check_exact=True)
