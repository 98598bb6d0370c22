"""The whole-table check: every stored row, and the counts of every partition that is up to date."""

from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from aggassets.checks import AGGREGATE_CHECKS
from aggassets.warehouse.base import Warehouse
from aggassets_tests.warehouse.support import DEFINITIONS, generate, ingest, measure, refresh_all, window

FIRST = date(2022, 1, 24)  # a Monday
ZERO = dict.fromkeys(AGGREGATE_CHECKS, 0)


@pytest.fixture
def refreshed(warehouse: Warehouse, tmp_path: Path) -> Warehouse:
    """1,000 generated measures over four weeks, every grain refreshed."""
    warehouse.sync_definitions(DEFINITIONS)
    items = generate(seed=11, n=1000, first=FIRST, days=28)
    ingest(warehouse, tmp_path, items)
    refresh_all(warehouse, [FIRST + timedelta(days=i) for i in range(28)])
    return warehouse


def test_a_refreshed_warehouse_passes_at_every_grain(refreshed: Warehouse) -> None:
    for grain in ("day", "week", "month"):
        assert refreshed.stored_check_violations(grain) == ZERO, grain


@pytest.mark.parametrize(
    ("table", "grain", "change", "found"),
    [
        ("daily_aggregates", "day", "UPDATE {t} SET std = -1 WHERE {one}", {"std_non_negative": 1}),
        ("daily_aggregates", "day", "UPDATE {t} SET min = max + 1 WHERE {one}", {"min_le_avg_le_max": 1}),
        (  # -inf is below the average, but not a finite minimum
            "daily_aggregates",
            "day",
            "UPDATE {t} SET min = CAST('-Infinity' AS DOUBLE PRECISION) WHERE {one}",
            {"min_le_avg_le_max": 1},
        ),
        ("weekly_aggregates", "week", "UPDATE {t} SET count = count + 1 WHERE {one}", {"count_equals_raw": 1}),
        (
            "monthly_aggregates",
            "month",
            "INSERT INTO {t} SELECT * FROM {t} WHERE {one}",
            {"unique_keys": 1, "count_equals_raw": 1},
        ),
        ("daily_aggregates", "day", "DELETE FROM {t} WHERE {one}", {"count_equals_raw": 1}),
        (  # every row of a measure gone: the measure has raw rows and no aggregate at all
            "weekly_aggregates",
            "week",
            "DELETE FROM {t} WHERE measure_name = (SELECT min(measure_name) FROM {t} WHERE {one})",
            {"count_equals_raw": 1},
        ),
    ],
)
def test_a_corrupted_stored_row_is_found_by_its_check(
    refreshed: Warehouse, table: str, grain: str, change: str, found: dict[str, int]
) -> None:
    """Rows changed after their refresh, wherever they are in the table (no window given)."""
    rows = refreshed.read_table(table, "period_start, measure_name, created_by, group1, group2, group3")
    first = rows.iloc[len(rows) // 2]
    one = " AND ".join(
        f"{c} = '{first[c]}'" if c != "period_start" else f"period_start = DATE '{pd.Timestamp(first[c]).date()}'"
        for c in ("measure_name", "period_start", "created_by", "group1", "group2", "group3")
    )
    refreshed.execute(change.format(t=table, one=one))
    assert refreshed.stored_check_violations(grain) == ZERO | found
    others = {"day", "week", "month"} - {grain}
    assert all(refreshed.stored_check_violations(g) == ZERO for g in others)


def test_partitions_with_later_measures_or_never_refreshed_are_left_to_their_refresh(
    refreshed: Warehouse, tmp_path: Path
) -> None:
    """A measure arrived after its day was refreshed (the late-measure sensor's work) and measures of days
    never refreshed make no count violation; the window's own check does see the late one."""
    late_day, new_day = FIRST + timedelta(days=3), FIRST + timedelta(days=40)
    ingest(
        refreshed,
        tmp_path,
        [measure("errors-daily", 1, late_day.isoformat()), measure("errors-daily", 2, new_day.isoformat())],
    )
    assert refreshed.check_violations("day", *window("day", [late_day]))["count_equals_raw"] == 1
    for grain in ("day", "week", "month"):
        assert refreshed.stored_check_violations(grain) == ZERO, grain
    refreshed.refresh("day", *window("day", [late_day]))
    assert refreshed.stored_check_violations("day") == ZERO


def test_a_corrupted_december_is_found_beside_the_january_after_it(warehouse: Warehouse, tmp_path: Path) -> None:
    """December's month ends on January 1st of the next year: its counts are checked like any month's."""
    warehouse.sync_definitions(DEFINITIONS)
    ingest(warehouse, tmp_path, [measure("errors-daily", 1.0, d) for d in ("2021-11-20", "2021-12-15", "2022-01-10")])
    for start, end in ((date(2021, 11, 1), date(2021, 12, 1)), (date(2021, 12, 1), date(2022, 2, 1))):
        warehouse.refresh("month", start, end)
    assert warehouse.stored_check_violations("month") == ZERO
    warehouse.execute("UPDATE monthly_aggregates SET count = count + 1 WHERE period_start = DATE '2021-12-01'")
    assert warehouse.stored_check_violations("month") == ZERO | {"count_equals_raw": 1}
