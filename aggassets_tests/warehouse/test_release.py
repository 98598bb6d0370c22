"""Threshold release and DACC's restitution format (DESIGN §4.4)."""

import json
import math
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from aggassets.warehouse.base import Warehouse
from aggassets_tests.warehouse.support import (
    BY_NAME,
    DEFINITIONS,
    aggregates,
    expected,
    frame,
    generate,
    ingest,
    measure,
    refresh_all,
    window,
)

FIRST = date(2022, 3, 7)
BASE_KEYS = {"measureName", "startDate", "count", "countNotZero", "sum", "min", "max", "avg", "std"}
QUARTILE_KEYS = {"median", "firstQuartile", "thirdQuartile"}


def dacc_row(row: pd.Series, original_groups: dict[str, Any]) -> dict[str, Any]:
    """The restitution row DACC would return for one expected aggregate row (built independently)."""
    d = BY_NAME[row["measure_name"]]
    out: dict[str, Any] = {"measureName": d.name, "startDate": f"{row['period_start'].isoformat()}T00:00:00"}
    if row["created_by"]:
        out["createdBy"] = row["created_by"]
    for i, key in enumerate(d.group_keys(), start=1):
        if key:
            out[f"group{i}"] = {key: original_groups[row[f"group{i}"]]}
    out |= {"count": int(row["count"]), "countNotZero": int(row["count_not_zero"])}
    out |= {k: float(row[c]) for k, c in (("sum", "sum"), ("min", "min"), ("max", "max"), ("avg", "avg"))}
    out["std"] = float(row["std"])
    if d.with_quartiles:
        out |= {"median": row["median"], "firstQuartile": row["first_quartile"], "thirdQuartile": row["third_quartile"]}
    return out


def _identity(row: dict[str, Any]) -> str:
    """The key part of a restitution row, as text."""
    return json.dumps({k: row.get(k) for k in ("startDate", "createdBy", "group1", "group2", "group3")}, sort_keys=True)


def assert_same_rows(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """Same rows (any order within a start date), same keys, floats to 1e-9 relative."""
    assert [r["startDate"] for r in got] == sorted(r["startDate"] for r in got)
    assert sorted(map(_identity, got)) == sorted(map(_identity, want))
    by_id = {_identity(r): r for r in want}
    for row in got:
        wanted = by_id[_identity(row)]
        assert set(row) == set(wanted)
        for k, v in wanted.items():
            assert row[k] == (pytest.approx(v, rel=1e-9, abs=1e-9) if isinstance(v, float) else v), k


@pytest.fixture
def released_setup(warehouse: Warehouse, tmp_path: Path) -> tuple[Warehouse, pd.DataFrame, dict[str, Any]]:
    """Generated measures of every shape, refreshed on every grain."""
    warehouse.sync_definitions(DEFINITIONS)
    items = generate(seed=11, n=900, first=FIRST, days=21)
    ingest(warehouse, tmp_path, items)
    rows = frame(items)
    refresh_all(warehouse, list(rows["day"]))
    originals = {json.dumps(v): v for i in items for k, g in i.items() if k.startswith("group") for v in g.values()}
    return warehouse, rows, originals


@pytest.mark.parametrize("grain", ["day", "week", "month"])
def test_released_rows_match_numpy_above_threshold(
    released_setup: tuple[Warehouse, pd.DataFrame, dict[str, Any]], grain: str
) -> None:
    """Every measure: only count >= aggregationThreshold, DACC's keys and values, by start date."""
    wh, rows, originals = released_setup
    start, end = window(grain, list(rows["day"]))
    want_all = expected(rows, grain, start, end)
    seen_suppressed = 0
    for d in DEFINITIONS:
        want = want_all[want_all["measure_name"] == d.name]
        above = want[want["count"] >= d.aggregation_threshold]
        seen_suppressed += len(want) - len(above)
        got = wh.released(grain, d.name, start, end)
        assert_same_rows(got, [dacc_row(r, originals) for _, r in above.iterrows()])
        json.dumps(got)  # plain JSON types only
    if grain == "day":
        assert seen_suppressed > 0  # the threshold did hide something


def test_created_by_filter_and_window(warehouse: Warehouse, tmp_path: Path) -> None:
    """createdBy narrows the rows to one app's; startDate is inclusive, endDate exclusive (hand data:
    three or four contributions per released row, visits-daily's threshold is 3)."""
    warehouse.sync_definitions(DEFINITIONS)
    before, first, last, after = "2022-05-01", "2022-05-02", "2022-05-04", "2022-05-05"
    items = [measure("visits-daily", v, day, "drive", group1="a", group2="x")
             for day, values in ((before, (7, 7, 7)), (first, (1, 2, 3)), (last, (4, 5, 6)), (after, (9, 9, 9)))
             for v in values]  # fmt: skip
    items += [measure("visits-daily", v, first, "ecolyo", group1="a", group2="x") for v in (10, 20, 30, 40)]
    items += [measure("visits-daily", v, last, None, group1="a", group2="x") for v in (100, 200, 300)]  # no app
    ingest(warehouse, tmp_path, items)
    warehouse.refresh("day", date(2022, 5, 1), date(2022, 5, 6))
    start, end = date(2022, 5, 2), date(2022, 5, 5)

    def figures(rows: list[dict[str, Any]]) -> list[tuple[str, str | None, int, float]]:
        return [(r["startDate"][:10], r.get("createdBy"), r["count"], r["sum"]) for r in rows]

    drive = warehouse.released("day", "visits-daily", start, end, created_by="drive")
    assert figures(drive) == [(first, "drive", 3, 6.0), (last, "drive", 3, 15.0)]
    ecolyo = warehouse.released("day", "visits-daily", start, end, created_by="ecolyo")
    assert figures(ecolyo) == [(first, "ecolyo", 4, 100.0)]
    anonymous = warehouse.released("day", "visits-daily", start, end, created_by="")  # sent without createdBy
    assert figures(anonymous) == [(last, None, 3, 600.0)]
    every = warehouse.released("day", "visits-daily", start, end)
    assert sorted(figures(every), key=str) == sorted(figures(drive) + figures(ecolyo) + figures(anonymous), key=str)
    assert warehouse.released("day", "visits-daily", start, end, created_by="nobody") == []
    assert warehouse.released("day", "visits-daily", start, start) == []


def test_threshold_boundary_and_null_keys(warehouse: Warehouse, tmp_path: Path) -> None:
    """threshold - 1 contributions: stored, never released; threshold: released; null keys omitted."""
    warehouse.sync_definitions(DEFINITIONS)
    day = "2022-05-02"
    items = [measure("visits-daily", v, day, "drive", group1="a", group2="x") for v in (1, 2)]
    items += [measure("visits-daily", v, day, "drive", group1="b", group2="x") for v in (1, 2, 6)]
    items += [measure("errors-daily", v, day) for v in (0, 0, 4)]
    items += [measure("duration-daily", v, day, group1=3) for v in (10, 20)]
    ingest(warehouse, tmp_path, items)
    result = warehouse.refresh("day", date(2022, 5, 2), date(2022, 5, 3))
    assert (result.rows, result.released, result.suppressed) == (4, 3, 1)
    assert len(aggregates(warehouse, "day")) == 4
    visits = warehouse.released("day", "visits-daily", date(2022, 5, 2), date(2022, 5, 3))
    assert visits == [
        {
            "measureName": "visits-daily",
            "startDate": "2022-05-02T00:00:00",
            "createdBy": "drive",
            "group1": {"device": "b"},
            "group2": {"os": "x"},
            "count": 3,
            "countNotZero": 3,
            "sum": 9.0,
            "min": 1.0,
            "max": 6.0,
            "avg": 3.0,
            "std": pytest.approx(7**0.5),
        }
    ]
    errors = warehouse.released("day", "errors-daily", date(2022, 5, 1), date(2022, 5, 8))
    assert errors == [
        {
            "measureName": "errors-daily",
            "startDate": "2022-05-02T00:00:00",
            "count": 3,
            "countNotZero": 1,
            "sum": 4.0,
            "min": 0.0,
            "max": 4.0,
            "avg": pytest.approx(4 / 3),
            "std": pytest.approx((16 / 3) ** 0.5),
        }
    ]
    durations = warehouse.released("day", "duration-daily", date(2022, 5, 2), date(2022, 5, 3))
    assert [(r["group1"], r["median"], r["firstQuartile"], r["thirdQuartile"]) for r in durations] == [
        ({"slug": 3}, 15.0, 12.5, 17.5)
    ]
    assert set(durations[0]) == BASE_KEYS | QUARTILE_KEYS | {"group1"}
    preview = result.preview.to_dict("records")
    assert sorted((r["measure_name"], r["count"]) for r in preview) == [
        ("duration-daily", 2),
        ("errors-daily", 3),
        ("visits-daily", 3),
    ]


def test_released_rows_ordered_by_start_date(warehouse: Warehouse, tmp_path: Path) -> None:
    """Rows come back by start date whatever the order of arrival."""
    warehouse.sync_definitions(DEFINITIONS)
    days = [date(2022, 6, 1) + timedelta(days=i) for i in (5, 1, 3, 0, 4, 2)]
    ingest(warehouse, tmp_path, [measure("errors-daily", i, d.isoformat()) for i, d in enumerate(days)])
    warehouse.refresh("day", date(2022, 6, 1), date(2022, 6, 7))
    got = warehouse.released("day", "errors-daily", date(2022, 6, 1), date(2022, 6, 7))
    assert [r["startDate"] for r in got] == [f"2022-06-0{i}T00:00:00" for i in range(1, 7)]
    assert [r["sum"] for r in got] == [3.0, 1.0, 5.0, 2.0, 4.0, 0.0]


def test_quartiles_turned_on_before_a_refresh_are_omitted_not_nan(warehouse: Warehouse, tmp_path: Path) -> None:
    """errors-daily refreshed without quartiles, then withQuartiles turned on: until the next refresh its
    rows hold no quartiles, and the restitution omits those keys (it printed bare NaN, which is not JSON);
    the refresh then gives numpy's quartiles."""
    warehouse.sync_definitions(DEFINITIONS)
    ingest(warehouse, tmp_path, [measure("errors-daily", v, "2022-03-08") for v in (1.0, 2.0, 4.0)])
    refresh_all(warehouse, [date(2022, 3, 8)])
    turned_on = {"with_quartiles": True}
    warehouse.sync_definitions([d.model_copy(update=turned_on) if d.name == "errors-daily" else d for d in DEFINITIONS])
    for grain, start in (("day", date(2022, 3, 8)), ("week", date(2022, 3, 7)), ("month", date(2022, 3, 1))):
        rows = warehouse.released(grain, "errors-daily", start, start + timedelta(days=1))
        assert len(rows) == 1 and not QUARTILE_KEYS & set(rows[0]), rows
        json.dumps(rows, allow_nan=False)
    refresh_all(warehouse, [date(2022, 3, 8)])
    (row,) = warehouse.released("day", "errors-daily", date(2022, 3, 8), date(2022, 3, 9))
    quartiles = [row["firstQuartile"], row["median"], row["thirdQuartile"]]
    assert quartiles == pytest.approx(list(np.percentile([1.0, 2.0, 4.0], [25, 50, 75])), rel=1e-12)


def test_the_mean_of_equal_values_is_that_value_at_every_grain(warehouse: Warehouse, tmp_path: Path) -> None:
    """Six (day) and twenty-one (week, month) values of 0.1: the float64 sum is 0.6000000000000001 and
    sum / count passed the maximum (0.10000000000000002); the mean of values all equal to 0.1 is 0.1."""
    warehouse.sync_definitions(DEFINITIONS)
    days = [date(2022, 3, 7) + timedelta(days=i) for i in range(7)]
    counts = [6, 3, 3, 3, 3, 3, 0]  # six on the Monday, 21 in the week and the month
    items = [measure("errors-daily", 0.1, d.isoformat()) for d, n in zip(days, counts, strict=True) for _ in range(n)]
    ingest(warehouse, tmp_path, items)
    refresh_all(warehouse, days)
    for grain in ("day", "week", "month"):
        table = aggregates(warehouse, grain)
        assert (table["avg"] == 0.1).all() and (table["min"] == 0.1).all() and (table["max"] == 0.1).all(), grain
    assert math.fsum([0.1] * 6) / 6 > 0.1  # the rounded sum's mean alone would pass the maximum
