"""Boundaries of purge and refresh windows: ages, sequence numbers, purge stamps, the period after a window."""

from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd

from aggassets.warehouse.base import Warehouse
from aggassets.warehouse.values import period_end, utc_now
from aggassets_tests.warehouse.support import (
    DEFINITIONS,
    aggregates,
    assert_matches,
    expected,
    frame,
    ingest,
    measure,
    refresh_all,
)

MONDAY = date(2022, 1, 10)
TWO_WEEKS = [MONDAY + timedelta(days=i) for i in range(14)]


def received_at(wh: Warehouse) -> datetime:
    """The one receive time of the warehouse's raw rows."""
    times = {pd.Timestamp(t).to_pydatetime() for t in wh.read_table("raw_measures")["received_at"]}
    assert len(times) == 1
    return times.pop()


def test_a_measure_is_purged_only_when_received_more_than_n_days_ago(warehouse: Warehouse, tmp_path: Path) -> None:
    warehouse.sync_definitions(DEFINITIONS)
    ingest(warehouse, tmp_path, [measure("errors-daily", 1, MONDAY.isoformat())])
    refresh_all(warehouse, [MONDAY])
    received = received_at(warehouse)
    assert warehouse.purge(90, now=received + timedelta(days=90)) == {}  # exactly 90 days old
    assert warehouse.purge(90, now=received + timedelta(days=90, microseconds=1)) == {"errors-daily": 1}


def test_sequence_numbers_are_not_reused_once_a_purge_empties_the_inbox(warehouse: Warehouse, tmp_path: Path) -> None:
    warehouse.sync_definitions(DEFINITIONS)
    ingest(warehouse, tmp_path, [measure("errors-daily", v, MONDAY.isoformat()) for v in (1, 2, 3)])
    refresh_all(warehouse, [MONDAY])
    assert warehouse.purge(0, now=utc_now() + timedelta(seconds=1)) == {"errors-daily": 3}
    assert warehouse.read_table("inbox").empty
    ingest(warehouse, tmp_path, [measure("errors-daily", v, MONDAY.isoformat()) for v in (4, 5)])
    assert warehouse.read_table("inbox", order_by="seq")["seq"].tolist() == [4, 5]
    assert warehouse.read_table("raw_measures", order_by="seq")["seq"].tolist() == [4, 5]


def test_rows_sealed_twice_show_the_latest_purge(warehouse: Warehouse, tmp_path: Path) -> None:
    """A key purged at t1, then again at t2 after a late measure: its rows say t2."""
    warehouse.sync_definitions(DEFINITIONS)
    ingest(warehouse, tmp_path, [measure("errors-daily", 1, MONDAY.isoformat())])
    refresh_all(warehouse, [MONDAY])
    t1 = utc_now() + timedelta(seconds=1)
    assert warehouse.purge(0, now=t1) == {"errors-daily": 1}
    ingest(warehouse, tmp_path, [measure("errors-daily", 2, MONDAY.isoformat())])
    refresh_all(warehouse, [MONDAY])
    t2 = utc_now() + timedelta(days=1)
    assert warehouse.purge(0, now=t2) == {"errors-daily": 1}
    refresh_all(warehouse, [MONDAY])
    for grain in ("day", "week", "month"):
        rows = aggregates(warehouse, grain)
        assert rows["count"].tolist() == [2] and rows["sum"].tolist() == [3.0], grain
        stamps = [pd.Timestamp(t).to_pydatetime() for t in rows["last_raw_measures_purged"]]
        assert stamps == [t2], grain


def test_refreshing_one_week_takes_nothing_from_the_day_after_it(warehouse: Warehouse, tmp_path: Path) -> None:
    """The week window ends before the next Monday: that day's fresh daily rows (and, after a purge, its
    sealed moments) stay out of it, so refreshing the first week again leaves both weeks as numpy has them."""
    warehouse.sync_definitions(DEFINITIONS)
    items = [measure("errors-daily", float(i % 7 + d.day), d.isoformat()) for d in TWO_WEEKS for i in range(3)]
    ingest(warehouse, tmp_path, items)
    rows = frame(items)
    windows = refresh_all(warehouse, TWO_WEEKS)
    want = expected(rows, "week", *windows["week"])
    first_week = (MONDAY, MONDAY + timedelta(days=7))
    warehouse.refresh("week", *first_week)
    assert_matches(aggregates(warehouse, "week"), want)
    assert warehouse.purge(0, now=utc_now() + timedelta(seconds=1)) == {"errors-daily": len(items)}
    warehouse.refresh("day", *windows["day"])
    warehouse.refresh("week", *first_week)
    assert_matches(aggregates(warehouse, "week"), want)
    assert set(warehouse.stored_check_violations("week").values()) == {0}


def test_period_end_is_the_first_day_after_the_period() -> None:
    assert period_end("day", date(2024, 2, 28)) == date(2024, 2, 29)
    assert period_end("week", date(2024, 12, 30)) == date(2025, 1, 6)
    assert period_end("month", date(2024, 1, 1)) == date(2024, 2, 1)
    assert period_end("month", date(2024, 12, 1)) == date(2025, 1, 1)
