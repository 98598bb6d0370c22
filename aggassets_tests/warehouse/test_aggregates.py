"""Aggregates against numpy on generated data, hand-computed cases, windows and zone offsets."""

import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aggassets.checks import AGGREGATE_CHECKS
from aggassets.warehouse.base import Warehouse
from aggassets_tests.warehouse.support import (
    BY_NAME,
    DEFINITIONS,
    TABLES,
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

FIRST = date(2022, 1, 24)  # a Monday; six weeks reach into March


@pytest.fixture
def loaded(warehouse: Warehouse, tmp_path: Path) -> tuple[Warehouse, pd.DataFrame]:
    """A warehouse holding 1,500 generated measures (every measure, grain and group shape)."""
    warehouse.sync_definitions(DEFINITIONS)
    items = generate(seed=7, n=1500, first=FIRST, days=42)
    result = ingest(warehouse, tmp_path, items)
    assert (result.received, result.accepted, result.rejected) == (1500, 1500, 0)
    return warehouse, frame(items)


@pytest.mark.parametrize("grain", ["day", "week", "month"])
def test_grain_matches_numpy(loaded: tuple[Warehouse, pd.DataFrame], grain: str) -> None:
    """Every statistic of every key equals numpy's over the raw values (roll-ups included)."""
    wh, rows = loaded
    start, end = window(grain, list(rows["day"]))
    result = wh.refresh(grain, start, end)
    want = expected(rows, grain, start, end)
    assert_matches(aggregates(wh, grain), want)
    threshold = want["measure_name"].map(lambda m: BY_NAME[m].aggregation_threshold)
    assert result.rows == len(want)
    assert result.released == int((want["count"] >= threshold).sum())
    assert result.suppressed == int((want["count"] < threshold).sum())
    assert wh.check_violations(grain, start, end) == dict.fromkeys(AGGREGATE_CHECKS, 0)
    checked = wh.refresh(grain, start, end, checks=True)  # the checks in the refresh's own transaction
    assert checked.violations == dict.fromkeys(AGGREGATE_CHECKS, 0) and result.violations is None


def test_grains_hold_the_right_periods(loaded: tuple[Warehouse, pd.DataFrame]) -> None:
    """Day: day measures; week: day + week measures on Mondays; month: day + month measures on the 1st."""
    wh, rows = loaded
    refresh_all(wh, list(rows["day"]))
    periods = {
        name: {BY_NAME[m].aggregation_period for m in aggregates(wh, g)["measure_name"]} for g, name in TABLES.items()
    }
    assert periods == {
        "daily_aggregates": {"day"},
        "weekly_aggregates": {"day", "week"},
        "monthly_aggregates": {"day", "month"},
    }
    assert {d.weekday() for d in aggregates(wh, "week")["period_start"]} == {0}
    assert {d.day for d in aggregates(wh, "month")["period_start"]} == {1}


def test_quartiles_only_for_quartile_measures(loaded: tuple[Warehouse, pd.DataFrame]) -> None:
    """median / first / third quartile are NULL exactly where withQuartiles is false."""
    wh, rows = loaded
    refresh_all(wh, list(rows["day"]))
    for grain in TABLES:
        table = aggregates(wh, grain)
        flagged = table["measure_name"].map(lambda m: BY_NAME[m].with_quartiles)
        for col in ("median", "first_quartile", "third_quartile"):
            assert table.loc[flagged, col].notna().all() and table.loc[~flagged, col].isna().all()


def test_hand_computed_day_and_week(warehouse: Warehouse, tmp_path: Path) -> None:
    """Small cases computed by hand: std n-1, zero counts, linear quartiles, Monday weeks."""
    warehouse.sync_definitions(DEFINITIONS)
    values = [1, 2, 3, 4, 0]
    items = [measure("duration-daily", v, "2022-01-03", group1="a") for v in values]  # Monday
    items += [measure("duration-daily", -1.5, "2022-01-09", group1="a")]  # Sunday, same week
    items += [measure("duration-daily", 7, "2022-01-10", group1="a")]  # next Monday
    ingest(warehouse, tmp_path, items)
    warehouse.refresh("day", date(2022, 1, 3), date(2022, 1, 11))
    warehouse.refresh("week", date(2022, 1, 3), date(2022, 1, 17))
    day = aggregates(warehouse, "day").set_index("period_start")
    first = day.loc[date(2022, 1, 3)]
    assert (first["count"], first["count_not_zero"], first["sum"], first["min"], first["max"]) == (5, 4, 10, 0, 4)
    assert first["avg"] == 2 and first["std"] == pytest.approx(math.sqrt(2.5), rel=1e-12)
    assert (first["first_quartile"], first["median"], first["third_quartile"]) == (1, 2, 3)
    single = day.loc[date(2022, 1, 9)]
    assert (single["count"], single["std"], single["median"], single["first_quartile"]) == (1, 0, -1.5, -1.5)
    week = aggregates(warehouse, "week").set_index("period_start")
    w1 = week.loc[date(2022, 1, 3)]
    # values 1, 2, 3, 4, 0, -1.5: mean 1.41666..., sorted -1.5 0 1 2 3 4
    assert (w1["count"], w1["count_not_zero"], w1["sum"]) == (6, 5, 8.5)
    mean = 8.5 / 6
    sample_var = sum((v - mean) ** 2 for v in [*values, -1.5]) / 5
    assert w1["std"] == pytest.approx(math.sqrt(sample_var), rel=1e-12)
    assert (w1["first_quartile"], w1["median"], w1["third_quartile"]) == (0.25, 1.5, 2.75)
    assert week.loc[date(2022, 1, 10), "count"] == 1


def test_window_bounds(loaded: tuple[Warehouse, pd.DataFrame], tmp_path: Path) -> None:
    """Refreshing [start, end) rewrites exactly that window: start inclusive, end exclusive."""
    wh, rows = loaded
    days = list(rows["day"])
    full_start, full_end = window("day", days)
    wh.refresh("day", full_start, full_end)
    before = aggregates(wh, "day")
    start, end = FIRST + timedelta(days=10), FIRST + timedelta(days=17)
    late = [
        measure("visits-daily", 5, d.isoformat(), group1="late", group2="x")
        for d in (start - timedelta(days=1), start, end - timedelta(days=1), end)
    ]
    ingest(wh, tmp_path, late)
    wh.refresh("day", start, end)
    after = aggregates(wh, "day")
    inside = (after["period_start"] >= start) & (after["period_start"] < end)
    all_rows = pd.concat([rows, frame(late)], ignore_index=True)
    assert_matches(after[inside].reset_index(drop=True), expected(all_rows, "day", start, end))
    outside_before = before[(before["period_start"] < start) | (before["period_start"] >= end)]
    pd.testing.assert_frame_equal(after[~inside].reset_index(drop=True), outside_before.reset_index(drop=True))
    late_days = set(after.loc[after["group1"] == '"late"', "period_start"])
    assert late_days == {start, end - timedelta(days=1)}


def test_zone_offsets_converted_to_utc_then_truncated(warehouse: Warehouse, tmp_path: Path) -> None:
    """A date-time with an offset is moved to UTC, then truncated to its measure's period start."""
    warehouse.sync_definitions(DEFINITIONS)
    cases = [  # (measure, startDate, stored start_date): hand-converted
        ("errors-daily", "2022-01-31T23:30:00-02:00", date(2022, 2, 1)),
        ("errors-daily", "2022-02-01T01:30:00+02:00", date(2022, 1, 31)),
        ("errors-daily", "2022-02-01T00:00:00Z", date(2022, 2, 1)),
        ("errors-daily", "2022-02-01T23:59:59.999+00:00", date(2022, 2, 1)),
        ("latency-weekly", "2022-01-09T22:00:00-03:00", date(2022, 1, 10)),  # Sunday local, Monday UTC
        ("latency-weekly", "2022-01-10T01:00:00+02:00", date(2022, 1, 3)),  # Monday local, Sunday UTC
        ("latency-weekly", "2022-01-12", date(2022, 1, 10)),
        ("storage-monthly", "2022-02-28T23:00:00-05:00", date(2022, 3, 1)),
        ("storage-monthly", "2022-03-01T00:30:00+01:00", date(2022, 2, 1)),
        ("storage-monthly", "2022-03-15", date(2022, 3, 1)),
    ]
    groups = {"storage-monthly": {"group1": "o", "group2": "p", "group3": "r"}}
    items = [measure(m, i, s, **groups.get(m, {})) for i, (m, s, _) in enumerate(cases)]
    ingest(warehouse, tmp_path, items)
    raw = warehouse.read_table("raw_measures", order_by="seq")
    stored = [pd.Timestamp(v).date() for v in raw["start_date"]]
    assert stored == [want for _, _, want in cases]
    assert raw["value"].tolist() == list(map(float, range(len(cases))))
    refresh_all(warehouse, [date(2022, 1, 3), date(2022, 3, 31)])
    weekly = aggregates(warehouse, "week")
    latency = weekly[weekly["measure_name"] == "latency-weekly"].set_index("period_start")["sum"]
    assert latency.to_dict() == {date(2022, 1, 3): 5.0, date(2022, 1, 10): 4.0 + 6.0}
    monthly = aggregates(warehouse, "month")
    storage = monthly[monthly["measure_name"] == "storage-monthly"].set_index("period_start")["sum"]
    assert storage.to_dict() == {date(2022, 2, 1): 8.0, date(2022, 3, 1): 7.0 + 9.0}
    np.testing.assert_array_equal(aggregates(warehouse, "day").query("measure_name == 'errors-daily'")["count"], [1, 3])


@pytest.mark.parametrize(
    ("check", "corruption"),
    [
        ("std_non_negative", "std = -1"),
        ("std_non_negative", "std = CAST('NaN' AS DOUBLE PRECISION)"),
        ("std_non_negative", "std = CAST('Infinity' AS DOUBLE PRECISION)"),
        ("min_le_avg_le_max", "avg = max + 5"),
        ("min_le_avg_le_max", "avg = CAST('NaN' AS DOUBLE PRECISION)"),
        ("min_le_avg_le_max", "max = CAST('NaN' AS DOUBLE PRECISION)"),
        ("quartiles_ordered", "first_quartile = median + 1"),
        ("quartiles_ordered", "third_quartile = CAST('NaN' AS DOUBLE PRECISION)"),
        ("count_equals_raw", "count = count + 1"),
    ],
)
def test_each_check_counts_a_corrupted_row(loaded: tuple[Warehouse, pd.DataFrame], check: str, corruption: str) -> None:
    """A row corrupted after the refresh is found by its check (NaN included), and by no other."""
    wh, rows = loaded
    start, end = window("day", list(rows["day"]))
    wh.refresh("day", start, end)
    target = "measure_name = 'duration-daily' AND period_start = (SELECT min(period_start) FROM daily_aggregates)"
    wh.execute(
        f"UPDATE daily_aggregates SET {corruption} WHERE {target} AND created_by = "
        f"(SELECT min(created_by) FROM daily_aggregates WHERE {target})"
    )
    violations = wh.check_violations("day", start, end)
    assert violations[check] >= 1 and {k: v for k, v in violations.items() if k != check} == dict.fromkeys(
        set(violations) - {check}, 0
    )


def test_a_duplicated_aggregate_key_is_found_by_unique_keys(loaded: tuple[Warehouse, pd.DataFrame]) -> None:
    """A row stored twice breaks unique_keys (and the measure's count against its raw rows), no other check."""
    wh, rows = loaded
    start, end = window("day", list(rows["day"]))
    wh.refresh("day", start, end)
    wh.execute(
        "INSERT INTO daily_aggregates SELECT * FROM daily_aggregates WHERE measure_name = 'duration-daily' "
        "AND period_start = (SELECT min(period_start) FROM daily_aggregates) "
        "AND created_by = (SELECT min(created_by) FROM daily_aggregates) LIMIT 1"
    )
    violations = wh.check_violations("day", start, end)
    assert violations == dict.fromkeys(AGGREGATE_CHECKS, 0) | {"unique_keys": 1, "count_equals_raw": 1}


def test_a_refresh_keeps_the_rows_of_a_measure_left_out_of_the_catalog(loaded: tuple[Warehouse, pd.DataFrame]) -> None:
    """DACC keeps a definition removed from its file: a refresh without it (or with the wrong catalog)
    neither deletes nor changes its rows; its raw rows stay; the catalog's other measures are refreshed."""
    wh, rows = loaded
    windows = refresh_all(wh, list(rows["day"]))
    before = {grain: aggregates(wh, grain) for grain in TABLES}
    wh.sync_definitions([d for d in DEFINITIONS if d.name != "visits-daily"])
    wh.execute("UPDATE raw_measures SET value = value + 1 WHERE measure_name = 'errors-daily'")
    refresh_all(wh, list(rows["day"]))
    for grain, table in before.items():
        after = aggregates(wh, grain)
        kept = table[table.measure_name == "visits-daily"].reset_index(drop=True)
        assert len(kept) > 0
        pd.testing.assert_frame_equal(after[after.measure_name == "visits-daily"].reset_index(drop=True), kept)
        errors = after[after.measure_name == "errors-daily"].reset_index(drop=True)
        old = table[table.measure_name == "errors-daily"].reset_index(drop=True)
        assert np.allclose(errors["sum"], old["sum"] + errors["count"])  # refreshed: every value went up by 1
        assert set(wh.check_violations(grain, *windows[grain]).values()) == {0}
    assert len(wh.fetch("SELECT * FROM raw_measures WHERE measure_name = 'visits-daily'")) == int(
        (rows["measure_name"] == "visits-daily").sum()
    )
