"""Weeks and months roll up the daily rows of fresh days (DESIGN 4.3), and read raw measures otherwise."""

import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aggassets.catalog import MeasureDefinition
from aggassets.warehouse.base import Warehouse
from aggassets.warehouse.values import utc_now
from aggassets_tests.warehouse.support import (
    DEFINITIONS,
    aggregates,
    assert_matches,
    expected,
    frame,
    generate,
    ingest,
    measure,
    refresh_all,
    window,
)

FIRST = date(2022, 1, 24)  # a Monday
DAYS = [FIRST + timedelta(days=i) for i in range(40)]


def refresh_rollups(wh: Warehouse, days: list[date]) -> None:
    """Refresh weeks and months only (their days as they are)."""
    for grain in ("week", "month"):
        wh.refresh(grain, *window(grain, days))


def assert_rollups_match(wh: Warehouse, rows: pd.DataFrame) -> None:
    """Weeks and months equal numpy over every accepted measure."""
    for grain in ("week", "month"):
        assert_matches(aggregates(wh, grain), expected(rows, grain, *window(grain, list(rows["day"]))))


def test_rollups_from_fresh_days_match_numpy(warehouse: Warehouse, tmp_path: Path) -> None:
    """Days refreshed first, then weeks and months: every statistic equals numpy's over the raw values."""
    warehouse.sync_definitions(DEFINITIONS)
    items = generate(seed=11, n=1200, first=FIRST, days=40)
    ingest(warehouse, tmp_path, items)
    refresh_all(warehouse, DAYS)
    assert_rollups_match(warehouse, frame(items))


def test_rollups_read_fresh_daily_rows_and_raw_for_stale_days(warehouse: Warehouse, tmp_path: Path) -> None:
    """A fresh day's daily rows stand in for its raw measures; a late measure makes the day read from raw."""
    warehouse.sync_definitions(DEFINITIONS)
    items = [measure("errors-daily", v, d.isoformat()) for v, d in [(1, FIRST), (2, FIRST), (4, DAYS[1])]]
    ingest(warehouse, tmp_path, items)
    warehouse.refresh("day", FIRST, DAYS[2])
    # a marker in a fresh day's row: the roll-up must carry it (it reads the row, not the raw values)
    warehouse.execute("UPDATE daily_aggregates SET sum = sum + 1000 WHERE period_start = DATE '2022-01-24'")
    warehouse.refresh("week", FIRST, FIRST + timedelta(days=7))
    assert aggregates(warehouse, "week")["sum"].tolist() == [1007.0]
    late = measure("errors-daily", 8, FIRST.isoformat())
    ingest(warehouse, tmp_path, [late])  # the 24th is stale now: its raw measures count, not its row
    warehouse.refresh("week", FIRST, FIRST + timedelta(days=7))
    week = aggregates(warehouse, "week")
    assert week[["count", "sum", "min", "max"]].values.tolist() == [[4, 15.0, 1.0, 8.0]]
    assert abs(week["std"].iloc[0] - pd.Series([1.0, 2.0, 4.0, 8.0]).std()) < 1e-12


def test_rollups_mix_fresh_and_late_days(warehouse: Warehouse, tmp_path: Path) -> None:
    """Late measures on some refreshed days, others untouched: weeks and months still equal numpy."""
    warehouse.sync_definitions(DEFINITIONS)
    items = generate(seed=12, n=900, first=FIRST, days=40)
    ingest(warehouse, tmp_path, items)
    refresh_all(warehouse, DAYS)
    late = generate(seed=13, n=150, first=FIRST + timedelta(days=3), days=9)  # days 3..11 become stale
    ingest(warehouse, tmp_path, late)
    refresh_rollups(warehouse, DAYS)
    assert_rollups_match(warehouse, frame(items + late))
    refresh_all(warehouse, DAYS)  # the days refreshed again: fresh, and the same figures
    assert_rollups_match(warehouse, frame(items + late))


def test_rollups_after_a_catalog_change_read_raw(warehouse: Warehouse, tmp_path: Path) -> None:
    """A measure that became a day measure after its days were refreshed is still in the roll-ups."""
    warehouse.sync_definitions(DEFINITIONS)
    items = generate(seed=14, n=600, first=FIRST, days=40)
    ingest(warehouse, tmp_path, items)
    refresh_all(warehouse, DAYS)  # sharing-weekly is a week measure: not in the daily rows
    changed = [
        d if d.name != "sharing-weekly" else MeasureDefinition(**{**d.model_dump(), "aggregation_period": "day"})
        for d in DEFINITIONS
    ]
    warehouse.sync_definitions(changed)
    refresh_rollups(warehouse, DAYS)
    weeks = aggregates(warehouse, "week")
    shared = [i for i in items if i["measureName"] == "sharing-weekly"]
    assert int(weeks.loc[weeks["measure_name"] == "sharing-weekly", "count"].sum()) == len(shared) > 0
    months = aggregates(warehouse, "month")
    assert int(months.loc[months["measure_name"] == "sharing-weekly", "count"].sum()) == len(shared)


def test_rollups_unchanged_by_a_purge(warehouse: Warehouse, tmp_path: Path) -> None:
    """Days refreshed, raw measures purged into sealed moments, weeks and months refreshed: same figures."""
    warehouse.sync_definitions(DEFINITIONS)
    items = generate(seed=15, n=900, first=FIRST, days=40, names=["visits-daily", "errors-daily", "storage-monthly"])
    ingest(warehouse, tmp_path, items)
    refresh_all(warehouse, DAYS)
    before = {g: aggregates(warehouse, g) for g in ("week", "month")}
    purged = warehouse.purge(0, now=utc_now() + timedelta(seconds=1))
    assert sum(purged.values()) == len(items)
    refresh_rollups(warehouse, DAYS)
    for grain, table in before.items():
        after = aggregates(warehouse, grain)
        assert_matches(after, table)
        assert after["last_raw_measures_purged"].notna().all()
    assert_rollups_match(warehouse, frame(items))


def test_a_warehouse_from_before_the_digest_gains_it(warehouse: Warehouse, tmp_path: Path) -> None:
    """Opening a warehouse whose partition table lacks measures_digest adds it; its old days read raw."""
    warehouse.sync_definitions(DEFINITIONS)
    items = generate(seed=16, n=300, first=FIRST, days=40)
    ingest(warehouse, tmp_path, items)
    warehouse.refresh("day", *window("day", DAYS))
    warehouse.execute("ALTER TABLE partition_materializations DROP COLUMN measures_digest")
    warehouse.setup()
    assert warehouse.read_table("partition_materializations")["measures_digest"].isna().all()
    refresh_rollups(warehouse, DAYS)
    assert_rollups_match(warehouse, frame(items))


def test_sums_are_exact_across_rows_days_and_purges(warehouse: Warehouse, tmp_path: Path) -> None:
    """Large values that cancel: every grain's sum is the exactly rounded one (math.fsum), whether the
    values meet in one day, in a week of daily rows or in sealed moments merged with newer rows."""
    warehouse.sync_definitions(DEFINITIONS)
    one_day = [1e16, 1.0, -1e16, 1.0, 3.0]
    across = [(1e16, 0), (1.0, 1), (1.0, 2), (-1e16, 3)]  # (value, day of the week)
    items = [measure("errors-daily", v, DAYS[7].isoformat()) for v in one_day]
    items += [measure("errors-daily", v, DAYS[d].isoformat()) for v, d in across]
    ingest(warehouse, tmp_path, items)
    refresh_all(warehouse, DAYS[:14])
    days = aggregates(warehouse, "day").set_index("period_start")
    assert days.loc[DAYS[7], "sum"] == math.fsum(one_day) == 5.0
    weeks = aggregates(warehouse, "week").set_index("period_start")
    assert weeks.loc[FIRST, "sum"] == math.fsum(v for v, _ in across) == 2.0
    assert weeks.loc[FIRST, "avg"] == 0.5
    assert weeks.loc[FIRST, "std"] == pytest.approx(np.std([v for v, _ in across], ddof=1), rel=1e-12)
    warehouse.purge(0, now=utc_now() + timedelta(seconds=1))
    later = [measure("errors-daily", v, DAYS[7].isoformat()) for v in (1e16, 2.0, -1e16)]
    ingest(warehouse, tmp_path, later)  # merged with the day's sealed moments
    refresh_all(warehouse, DAYS[:14])
    days = aggregates(warehouse, "day").set_index("period_start")
    assert days.loc[DAYS[7], "sum"] == math.fsum([*one_day, 1e16, 2.0, -1e16]) == 7.0
    weeks = aggregates(warehouse, "week").set_index("period_start")
    assert weeks.loc[FIRST, "sum"] == 2.0


def test_week_quartiles_with_fresh_days_leave_the_next_monday_out(warehouse: Warehouse, tmp_path: Path) -> None:
    """duration-daily (quartiles) on Mon 24 and Tue 25 Jan 2022, and on Mon 31 Jan (next week). Days
    refreshed (fresh), then the week [24 Jan, 31 Jan): one week row, count 2, median 2 (values 1, 3);
    nothing for the week of 31 Jan (reading its values made a row without moments, and the refresh fail)."""
    warehouse.sync_definitions(DEFINITIONS)
    items = [
        measure("duration-daily", 1.0, "2022-01-24", "app", group1="s"),
        measure("duration-daily", 3.0, "2022-01-25", "app", group1="s"),
        measure("duration-daily", 100.0, "2022-01-31", "app", group1="s"),
    ]
    ingest(warehouse, tmp_path, items)
    warehouse.refresh("day", date(2022, 1, 24), date(2022, 1, 31))
    warehouse.refresh("week", date(2022, 1, 24), date(2022, 1, 31))
    week = warehouse.read_table("weekly_aggregates")
    assert [pd.Timestamp(p).date() for p in week["period_start"]] == [date(2022, 1, 24)]
    assert week["count"].tolist() == [2] and week["median"].tolist() == [2.0]
