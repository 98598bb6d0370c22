"""Purge and sealing (DESIGN §4.5): figures kept exact, quartile keys sealed, nothing lost."""

import json
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from aggassets.catalog import MeasureDefinition
from aggassets.errors import AggassetsError
from aggassets.warehouse.base import Warehouse
from aggassets.warehouse.values import utc_now
from aggassets_tests.warehouse.support import (
    BY_NAME,
    DEFINITIONS,
    FIRST_DAY,
    STATS,
    TABLES,
    aggregates,
    assert_matches,
    canonical,
    expected,
    frame,
    generate,
    ingest,
    measure,
    refresh_all,
    truncate,
    window,
)

FIRST = date(2022, 1, 24)
QUARTILE_WAITING = {"latency-weekly", "variation-monthly"}  # maxDaysToUpdateQuartile 200 and 100


@dataclass
class Loaded:
    """A refreshed warehouse, what went in, and when."""

    wh: Warehouse
    items: list[dict[str, Any]]
    rows: pd.DataFrame
    received: datetime
    windows: dict[str, tuple[date, date]]


@pytest.fixture
def loaded(warehouse: Warehouse, tmp_path: Path) -> Loaded:
    """1,200 generated measures over five weeks, refreshed on every grain."""
    warehouse.sync_definitions(DEFINITIONS)
    items = generate(seed=3, n=1200, first=FIRST, days=35)
    ingest(warehouse, tmp_path, items)
    received = utc_now()
    rows = frame(items)
    return Loaded(warehouse, items, rows, received, refresh_all(warehouse, list(rows["day"])))


def want(state: Loaded, grain: str, rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """numpy's table of `grain` over the state's window."""
    return expected(state.rows if rows is None else rows, grain, *state.windows[grain])


def purged_stamps(wh: Warehouse, grain: str) -> dict[str, set[Any]]:
    """The distinct last_raw_measures_purged values per measure of one grain (None for NULL)."""
    table = wh.read_table(TABLES[grain])
    return {
        m: {None if pd.isna(v) else pd.Timestamp(v).to_pydatetime() for v in g["last_raw_measures_purged"]}
        for m, g in table.groupby("measure_name")
    }


def test_purge_keeps_figures_and_recompute_is_identical(loaded: Loaded) -> None:
    """Purged raw rows move to sealed moments: the figures do not move, before or after a recompute."""
    wh = loaded.wh
    before = {g: aggregates(wh, g) for g in TABLES}
    now = loaded.received + timedelta(days=91)
    counts = Counter(i["measureName"] for i in loaded.items)
    everything = (date(2000, 1, 1), date(2100, 1, 1))
    assert wh.raw_window_counts(*everything) == {m: (n, 0) for m, n in counts.items()}
    summary = wh.purge(90, now=now)
    assert summary == {m: n for m, n in sorted(counts.items()) if m not in QUARTILE_WAITING}
    # accepted measures of a window stay counted: (raw rows stored, moved into sealed moments)
    assert wh.raw_window_counts(*everything) == {
        m: (n - summary.get(m, 0), summary.get(m, 0)) for m, n in counts.items()
    }
    remaining = wh.read_table("raw_measures")
    assert set(remaining["measure_name"]) == QUARTILE_WAITING
    assert len(remaining) == sum(counts[m] for m in QUARTILE_WAITING)
    received, accepted, rejected = wh.loss_counts()
    assert (received, accepted, rejected) == (len(remaining), len(remaining), 0)
    for grain in TABLES:
        assert_matches(aggregates(wh, grain), before[grain])  # untouched by the purge itself
        stamps = purged_stamps(wh, grain)
        assert all(s == ({None} if m in QUARTILE_WAITING else {now}) for m, s in stamps.items()), grain
    refresh_all(wh, list(loaded.rows["day"]))
    for grain, (start, end) in loaded.windows.items():
        assert_matches(aggregates(wh, grain), before[grain])
        assert_matches(aggregates(wh, grain), want(loaded, grain))
        assert purged_stamps(wh, grain) == {
            m: ({None} if m in QUARTILE_WAITING else {now}) for m in purged_stamps(wh, grain)
        }
        assert set(wh.check_violations(grain, start, end).values()) == {0}
    released = wh.released("week", "visits-daily", *loaded.windows["week"])
    assert released and all(r["lastRawMeasuresPurged"] == now.isoformat() for r in released)


def test_a_wholly_purged_key_recomputes_to_the_same_bits(warehouse: Warehouse, tmp_path: Path) -> None:
    """DESIGN §4.5: a purge never changes a released figure. When every raw row of a key's period is purged,
    its sealed moments are those the refresh computed from them, so the recomputed row is the same to the bit,
    std included (sealed M2 came from a second pass, the refresh's from one: std moved in its last digit),
    for wide and for narrow spreads (1e9 + a fraction: the refresh's second pass), on every grain."""
    rng = np.random.default_rng(11)
    days = [FIRST + timedelta(days=i) for i in range(14)]
    items = []
    for day in days:
        for device in ("desktop", "mobile"):
            items += [
                measure("visits-daily", float(v), day.isoformat(), group1=device, group2="ios")
                for v in rng.normal(50, 20, 7)
            ]
        items += [measure("errors-daily", float(v), day.isoformat()) for v in 1e9 + rng.random(6)]
        items += [measure("duration-daily", float(v), day.isoformat(), group1="s") for v in rng.gamma(2, 3e3, 5)]
        items += [measure("sharing-weekly", float(v), day.isoformat(), group1="k") for v in rng.normal(7, 3, 3)]
    warehouse.sync_definitions(DEFINITIONS)
    ingest(warehouse, tmp_path, items)
    refresh_all(warehouse, days)
    figures = [*STATS, "m2"]
    before = {g: aggregates(warehouse, g)[["measure_name", "period_start", "group1", *figures]] for g in TABLES}
    purged = warehouse.purge(0, now=utc_now() + timedelta(days=400))
    assert sum(purged.values()) == len(items) and len(warehouse.read_table("raw_measures")) == 0
    refresh_all(warehouse, days)
    for grain in TABLES:
        after = aggregates(warehouse, grain)[["measure_name", "period_start", "group1", *figures]]
        pd.testing.assert_frame_equal(after, before[grain], check_exact=True, obj=grain)


def test_quartile_measures_wait_for_both_delays(loaded: Loaded) -> None:
    """A quartile measure is purged only when older than both --days and maxDaysToUpdateQuartile."""
    wh, t0 = loaded.wh, loaded.received
    quartile = {d.name for d in DEFINITIONS if d.with_quartiles}
    first = wh.purge(0, now=t0 + timedelta(days=10))  # duration-daily waits 30 days
    assert not set(first) & quartile
    assert wh.purge(60, now=t0 + timedelta(days=40)) == {}  # 40 > 30 but 40 < 60
    assert set(wh.purge(60, now=t0 + timedelta(days=61))) == {"duration-daily"}
    assert set(wh.purge(60, now=t0 + timedelta(days=101))) == {"variation-monthly"}
    assert set(wh.read_table("raw_measures")["measure_name"]) == {"latency-weekly"}
    assert set(wh.purge(60, now=t0 + timedelta(days=201))) == {"latency-weekly"}
    assert wh.loss_counts() == (0, 0, 0)
    refresh_all(wh, list(loaded.rows["day"]))
    for grain in TABLES:
        assert_matches(aggregates(wh, grain), want(loaded, grain))


def test_late_measures_after_purge_merge_exactly(loaded: Loaded, tmp_path: Path) -> None:
    """Late non-quartile measures on purged keys: sealed moments + raw equal numpy over every value."""
    wh, t0 = loaded.wh, loaded.received
    wh.purge(30, now=t0 + timedelta(days=31))
    plain = [i for i in loaded.items if not BY_NAME[i["measureName"]].with_quartiles]
    late = [dict(i, value=round(float(i["value"]) * -0.5 + k % 7, 3)) for k, i in enumerate(plain[:300])]
    late += generate(seed=99, n=200, first=FIRST, days=35, names=["visits-daily", "storage-monthly"])
    result = ingest(wh, tmp_path, late)
    assert (result.accepted, result.rejected) == (len(late), 0)
    everything = pd.concat([loaded.rows, frame(late)], ignore_index=True)
    refresh_all(wh, list(loaded.rows["day"]))
    for grain in TABLES:
        assert_matches(aggregates(wh, grain), want(loaded, grain, everything))
    wh.purge(30, now=t0 + timedelta(days=200))  # a second sealed chunk for the same keys
    refresh_all(wh, list(loaded.rows["day"]))
    for grain in TABLES:
        assert_matches(aggregates(wh, grain), want(loaded, grain, everything))


def test_late_quartile_measures_of_a_sealed_key_are_rejected(loaded: Loaded, tmp_path: Path) -> None:
    """Once raw rows of a quartile key are purged, later measures for it are rejected and kept."""
    wh, t0 = loaded.wh, loaded.received
    assert "duration-daily" in wh.purge(90, now=t0 + timedelta(days=91))
    sample = next(i for i in loaded.items if i["measureName"] == "duration-daily" and len(i["startDate"]) == 10)
    day = date.fromisoformat(sample["startDate"])
    same_week = day + timedelta(days=1 if day.weekday() < 6 else -1)
    group, by = sample["group1"]["slug"], sample.get("createdBy")
    sealed = [
        measure("duration-daily", 1.0, day.isoformat(), by, group1=group),
        measure("duration-daily", 2.0, same_week.isoformat(), by, group1=group),
    ]
    fresh = [
        measure("duration-daily", 3.0, day.isoformat(), by, group1="fresh-slug"),
        measure("duration-daily", 4.0, "2022-06-01", by, group1=group),
    ]
    before = {g: aggregates(wh, g) for g in TABLES}
    result = ingest(wh, tmp_path, sealed + fresh)
    assert result.as_dict() == {
        "received": 4,
        "accepted": 2,
        "rejected": 2,
        "rejected_by_reason": {"quartile_key_sealed": 2},
    }
    rejected = wh.read_table("rejected_measures")
    assert rejected["reason"].tolist() == ["quartile_key_sealed"] * 2
    assert set(rejected["measure_name"]) == {"duration-daily"}
    inbox = wh.read_table("inbox")
    assert set(rejected["seq"]) <= set(inbox["seq"])
    received, accepted, n_rejected = wh.loss_counts()
    assert received == accepted + n_rejected
    refresh_all(wh, list(loaded.rows["day"]))
    for grain in TABLES:  # sealed keys keep their figures (quartiles frozen); the fresh key appears
        after = aggregates(wh, grain)
        assert_matches(after[after["group1"] != '"fresh-slug"'].reset_index(drop=True), before[grain])
        assert (after["group1"] == '"fresh-slug"').sum() == 1
        assert_matches(after, want(loaded, grain, pd.concat([loaded.rows, frame(fresh[:1])])))


def test_partitions_not_materialized_since_arrival_are_not_purged(warehouse: Warehouse, tmp_path: Path) -> None:
    """Only measures whose partitions were materialized after they arrived are purged: a day measure's
    day, and the week and month it rolls up into (once purged, no late-measure sensor would see it)."""
    warehouse.sync_definitions(DEFINITIONS)
    days = [date(2022, 1, 3) + timedelta(days=i) for i in range(4)]
    ingest(warehouse, tmp_path, [measure("errors-daily", i, d.isoformat()) for i, d in enumerate(days)])
    ingest(warehouse, tmp_path, [measure("sharing-weekly", 5, "2022-01-05", group1="k")])
    warehouse.refresh("day", days[0], days[2])  # the first two days only; no week or month refreshed
    late = ingest(warehouse, tmp_path, [measure("errors-daily", 9, days[0].isoformat())])
    assert late.accepted == 1
    now = utc_now() + timedelta(days=5)
    assert warehouse.purge(1, now=now) == {}  # the days wait for their week and month
    warehouse.refresh("week", date(2022, 1, 3), date(2022, 1, 10))
    assert warehouse.purge(1, now=now) == {"sharing-weekly": 1}  # a week measure needs its week only
    warehouse.refresh("month", date(2022, 1, 1), date(2022, 2, 1))
    assert warehouse.purge(1, now=now) == {"errors-daily": 2}  # days 0 (before the late one) and 1
    kept = warehouse.read_table("raw_measures", order_by="seq")
    assert kept["value"].tolist() == [2.0, 3.0, 9.0]
    warehouse.refresh("day", days[0], days[1])
    assert warehouse.purge(1, now=now) == {"errors-daily": 1}
    daily = aggregates(warehouse, "day").set_index("period_start")
    assert daily.loc[days[0], "sum"] == 9.0 and daily.loc[days[0], "count"] == 2


def test_purge_per_measure(loaded: Loaded) -> None:
    """--measure purges that measure only and stamps only its rows."""
    wh = loaded.wh
    now = loaded.received + timedelta(days=2)
    n = sum(1 for i in loaded.items if i["measureName"] == "visits-daily")
    assert wh.purge(1, measure="visits-daily", now=now) == {"visits-daily": n}
    assert "visits-daily" not in set(wh.read_table("raw_measures")["measure_name"])
    assert len(wh.read_table("raw_measures")) == len(loaded.items) - n
    for grain in TABLES:
        stamps = purged_stamps(wh, grain)
        assert all(s == ({now} if m == "visits-daily" else {None}) for m, s in stamps.items())
    assert wh.purge(1, measure="visits-daily", now=now) == {}


def test_purge_refuses_negative_days(warehouse: Warehouse) -> None:
    """A negative age is an error, not a purge of the future."""
    with pytest.raises(AggassetsError, match=r"^days must be >= 0 \(the age of the raw measures to purge\), not -1$"):
        warehouse.purge(-1)


def test_a_late_day_measure_waits_for_its_week_and_month_before_purge(warehouse: Warehouse, tmp_path: Path) -> None:
    """Late value, its day refreshed alone, purge: the value stays, so its week and month are still late."""
    warehouse.sync_definitions(DEFINITIONS)
    days = [date(2022, 1, 10) + timedelta(days=i) for i in range(3)]
    ingest(warehouse, tmp_path, [measure("errors-daily", 1, d.isoformat()) for d in days])
    refresh_all(warehouse, days)
    ingest(warehouse, tmp_path, [measure("errors-daily", 1000, days[1].isoformat())])
    warehouse.refresh("day", days[1], days[2])
    assert warehouse.purge(0, now=utc_now() + timedelta(seconds=1)) == {"errors-daily": 3}  # not the late one
    assert warehouse.read_table("raw_measures")["value"].tolist() == [1000.0]
    late = {(row.grain, pd.Timestamp(row.period_start).date()) for row in warehouse.late_partitions().itertuples()}
    assert late == {("week", date(2022, 1, 10)), ("month", date(2022, 1, 1))}
    refresh_all(warehouse, days)
    week = aggregates(warehouse, "week")
    assert week[["count", "sum", "max"]].values.tolist() == [[4, 1003.0, 1000.0]]


QUARTILES = ["first_quartile", "median", "third_quartile"]
MOMENTS = STATS[:7]  # count .. std


def with_duration(**changes: Any) -> list[MeasureDefinition]:
    """The test catalog with duration-daily (a quartile measure, maxDaysToUpdateQuartile 30) changed."""
    return [d.model_copy(update=changes) if d.name == "duration-daily" else d for d in DEFINITIONS]


def ingest_with(wh: Warehouse, folder: Path, catalog: list[MeasureDefinition], items: list[dict[str, Any]]) -> Any:
    """Ingest items as an NDJSON file against `catalog`."""
    path = folder / f"catalog-{len(list(folder.iterdir()))}.ndjson"
    path.write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    return wh.ingest_file(path, catalog, FIRST_DAY)


def test_quartiles_turned_off_after_a_seal(loaded: Loaded, tmp_path: Path) -> None:
    """A measure whose quartiles are turned off seals nothing: a late value of a sealed key is accepted,
    its rows show no quartiles; turned on again, the key it changed shows none (its frozen quartiles no
    longer hold every value, and the purged ones are gone) while the other keys keep theirs."""
    wh, t0 = loaded.wh, loaded.received
    assert "duration-daily" in wh.purge(90, now=t0 + timedelta(days=91))
    sample = next(i for i in loaded.items if i["measureName"] == "duration-daily" and len(i["startDate"]) == 10)
    day, by, slug = date.fromisoformat(sample["startDate"]), sample.get("createdBy"), sample["group1"]["slug"]
    off = with_duration(with_quartiles=False)
    wh.sync_definitions(off)
    late = measure("duration-daily", 12345.0, day.isoformat(), by, group1=slug)
    assert ingest_with(wh, tmp_path, off, [late]).as_dict()["accepted"] == 1
    refresh_all(wh, list(loaded.rows["day"]))
    rows = pd.concat([loaded.rows, frame([late])])
    for grain in TABLES:
        got = aggregates(wh, grain)
        assert_matches(got, want(loaded, grain, rows), MOMENTS)  # the late value counted everywhere
        assert got.loc[got["measure_name"] == "duration-daily", QUARTILES].isna().all().all()
    wh.sync_definitions(DEFINITIONS)
    refresh_all(wh, list(loaded.rows["day"]))
    for grain in TABLES:
        got, wanted = aggregates(wh, grain), want(loaded, grain, rows)
        touched = [
            (r.measure_name, r.period_start, r.created_by, r.group1)
            == ("duration-daily", truncate(grain, day), by or "", canonical(slug))
            for r in got.itertuples()
        ]
        assert sum(touched) == 1
        mask = np.array(touched)
        assert got.loc[mask, QUARTILES].isna().all().all()
        assert_matches(got[mask].reset_index(drop=True), wanted[mask].reset_index(drop=True), MOMENTS)
        assert_matches(got[~mask].reset_index(drop=True), wanted[~mask].reset_index(drop=True))


def test_quartiles_turned_on_after_a_purge(warehouse: Warehouse, tmp_path: Path) -> None:
    """Values purged while a measure had no quartiles are gone: once quartiles are on, every row they fed
    shows none (not quartiles of the values left), at refresh and when the key is frozen later."""
    off = with_duration(with_quartiles=False)
    warehouse.sync_definitions(off)
    d1, d2 = date(2022, 1, 3), date(2022, 1, 4)  # one week, one month
    first = [measure("duration-daily", v, d1.isoformat(), group1="a") for v in (1.0, 2.0, 4.0)]
    ingest_with(warehouse, tmp_path, off, first)
    refresh_all(warehouse, [d1, d2])
    assert warehouse.purge(0, now=utc_now() + timedelta(seconds=1)) == {"duration-daily": 3}
    second = [measure("duration-daily", v, d2.isoformat(), group1="a") for v in (10.0, 20.0, 40.0, 80.0)]
    ingest_with(warehouse, tmp_path, off, second)
    warehouse.sync_definitions(DEFINITIONS)
    expected_d2 = np.quantile([10.0, 20.0, 40.0, 80.0], [0.25, 0.5, 0.75])

    def check() -> None:
        refresh_all(warehouse, [d1, d2])
        for grain in TABLES:
            got = aggregates(warehouse, grain)
            assert_matches(got, expected(frame(first + second), grain, *window(grain, [d1, d2])), MOMENTS)
            if grain != "day":
                assert got[QUARTILES].isna().all().all(), grain  # d1's values are part of it
        day = aggregates(warehouse, "day")
        assert day.loc[0, QUARTILES].isna().all()
        np.testing.assert_allclose(day.loc[1, QUARTILES].to_numpy(dtype=float), expected_d2, rtol=1e-12)

    check()
    # the second day purged with quartiles on: its key is frozen, its day from its values, week and month unknown
    assert warehouse.purge(0, now=utc_now() + timedelta(days=31)) == {"duration-daily": 4}
    frozen = warehouse.read_table("frozen_quartiles").sort_values("grain")
    assert frozen["grain"].tolist() == ["day", "month", "week"]
    np.testing.assert_allclose(frozen.loc[frozen["grain"] == "day", QUARTILES].to_numpy(dtype=float)[0], expected_d2)
    assert frozen.loc[frozen["grain"] != "day", QUARTILES].isna().all().all()
    check()
    late = measure("duration-daily", 1.0, d2.isoformat(), group1="a")
    assert ingest_with(warehouse, tmp_path, DEFINITIONS, [late]).as_dict()["rejected_by_reason"] == {
        "quartile_key_sealed": 1
    }


@pytest.mark.parametrize("days", [3_000_000, 2**31, 10**12])
def test_purge_older_than_any_receive_time_purges_nothing(loaded: Loaded, days: int) -> None:
    """An age beyond any receive time purges nothing, on both engines (not a timestamp error)."""
    assert loaded.wh.purge(days, now=loaded.received + timedelta(days=1)) == {}


def test_a_very_long_quartile_wait_holds_quartile_measures_back(loaded: Loaded) -> None:
    """maxDaysToUpdateQuartile as large as its column holds: quartile rows wait, the others are purged."""
    wh = loaded.wh
    wh.sync_definitions(with_duration(max_days_to_update_quartile=2**31 - 1))
    purged = wh.purge(0, now=loaded.received + timedelta(days=1000))
    assert "duration-daily" not in purged and "visits-daily" in purged
