"""Model-based random sequences of warehouse operations (ingest, refresh, purge, re-refresh) on every engine,
each step checked against an oracle written from DESIGN §4.2-4.5 and README's measure semantics (numpy and
math.fsum over the measures the model knows were accepted; none of the project's SQL or expectations)."""

import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from aggassets.catalog import MeasureDefinition
from aggassets.warehouse import base
from aggassets.warehouse.base import Warehouse
from aggassets_tests.warehouse.support import (
    BY_NAME,
    DEFINITIONS,
    TABLES,
    aggregates,
    canonical,
    ingest,
    measure,
    next_period,
    truncate,
)

FIRST, LAST = date(2022, 1, 20), date(2022, 3, 9)  # weeks across month ends (Mon 31 Jan, Mon 28 Feb)
DAYS = [FIRST + timedelta(days=i) for i in range((LAST - FIRST).days + 1)]
GRAIN_FEEDS = {"day": {"day"}, "week": {"day", "week"}, "month": {"day", "month"}}
FEEDS_OF_PERIOD = {"day": ("day", "week", "month"), "week": ("week",), "month": ("month",)}
GROUPS: list[list[Any]] = [["desktop", "mobile", 3, True, 'é "quoted"'], ["a", "b"], ["x"]]
CREATORS = [None, "ecolyo", "drive", "steady", "flat"]  # steady: narrow spread; flat: equal values
MALFORMED = [
    ("not json", "invalid_json"),
    ('{"measureName": "nope", "value": 1, "startDate": "2022-02-01"}', "unknown_measure"),
    ('{"measureName": "errors-daily", "value": "abc", "startDate": "2022-02-01"}', "invalid_value"),
    ('{"measureName": "errors-daily", "value": true, "startDate": "2022-02-01"}', "invalid_value"),
    ('{"measureName": "errors-daily", "value": NaN, "startDate": "2022-02-01"}', "value_not_finite"),
    ('{"measureName": "errors-daily", "value": null, "startDate": "2022-02-01"}', "missing_value"),
    ('{"measureName": "errors-daily", "value": 1}', "missing_start_date"),
    ("[1]", "not_an_object"),
    ('{"measureName": "errors-daily", "value": 1, "startDate": "2022-02-01", "group1": {"k": 1}}', "unexpected_group1"),
]
EXTRA = MeasureDefinition(name="extra-daily", aggregationPeriod="day")  # in the catalog by turns, never sent
QUARTILES = ["first_quartile", "median", "third_quartile"]
FLOATS = ["sum", "min", "max", "avg", "std", *QUARTILES]
STEPS = 18
ULPS = 8  # tolerance: ULPS float64 ulps of the data's magnitude (sum: of sum |x|; others: of max |x|)
EPS = float(np.finfo(float).eps)
Key = tuple[str, date, str, str, str, str]  # measure, period start, createdBy ('' absent), group texts


@dataclass
class Item:
    """One valid measure sent, as the model sees it."""

    name: str
    day: date  # its UTC day
    created_by: str | None
    groups: tuple[Any, ...]  # raw group values (None absent)
    value: float
    received_at: datetime
    accepted: bool = True
    purged_at: datetime | None = None

    @property
    def own(self) -> date:
        """The start of its own period (DESIGN §4.2)."""
        return truncate(BY_NAME[self.name].aggregation_period, self.day)

    def key(self, grain: str) -> Key:
        """Its aggregate key at `grain`."""
        texts = tuple(canonical(g) for g in self.groups)
        return (self.name, truncate(grain, self.own), self.created_by or "", *texts)  # type: ignore[return-value]

    def grains(self) -> tuple[str, ...]:
        """The grains it feeds."""
        return FEEDS_OF_PERIOD[BY_NAME[self.name].aggregation_period]


@dataclass
class Model:
    """What the warehouse should hold: items, partition refresh times, stored rows, frozen quartiles."""

    now: datetime
    defs: dict[str, MeasureDefinition] = field(default_factory=lambda: dict(BY_NAME))  # the catalog now
    items: list[Item] = field(default_factory=list)
    received: int = 0
    rejected: int = 0
    purged: int = 0
    materialized: dict[tuple[str, date], datetime] = field(default_factory=dict)
    stored: dict[str, dict[Key, dict[str, Any]]] = field(default_factory=lambda: {g: {} for g in TABLES})
    frozen: dict[tuple[str, Key], list[float]] = field(default_factory=dict)

    def tick(self, seconds: float) -> None:
        """Move the clock (back, for a negative number of seconds)."""
        self.now += timedelta(seconds=seconds)

    def accepted_in(self, grain: str, period: date) -> list[Item]:
        """Accepted items (purged ones included) of one partition."""
        return [i for i in self.items if i.accepted and grain in i.grains() and i.key(grain)[1] == period]

    def sealed(self, item: Item) -> bool:
        """DESIGN §4.5: a quartile key whose raw rows were purged takes no later measure (at any grain)."""
        return BY_NAME[item.name].with_quartiles and any((g, item.key(g)) in self.frozen for g in item.grains())

    def row(self, grain: str, key: Key, items: list[Item]) -> dict[str, Any]:
        """The oracle's figures of one aggregate row."""
        x = np.array([i.value for i in items])
        n, stamps = len(x), [i.purged_at for i in items if i.purged_at is not None]
        quartiles = [math.nan] * 3
        if BY_NAME[key[0]].with_quartiles:
            quartiles = self.frozen.get((grain, key)) or np.quantile(x, [0.25, 0.5, 0.75]).tolist()
        s = math.fsum(x.tolist())
        std = float(np.std(x, ddof=1)) if x.min() < x.max() else 0.0  # equal values: exactly 0 (README)
        return {
            "count": n,
            "count_not_zero": int(np.count_nonzero(x)),
            **dict(sum=s, min=float(x.min()), max=float(x.max()), avg=s / n),
            "std": std,
            **dict(zip(QUARTILES, quartiles, strict=True)),
            "purged": max(stamps) if stamps else None,
            "scale_sum": math.fsum(np.abs(x).tolist()),
            "scale": float(np.abs(x).max()),
        }

    def refresh(self, grain: str, periods: list[date]) -> None:
        """A refresh replaces its partitions' rows by the figures of every accepted measure."""
        table = self.stored[grain]
        for p in periods:
            self.materialized[(grain, p)] = self.now
            for key in [k for k in table if k[1] == p]:
                del table[key]
            by_key: dict[Key, list[Item]] = {}
            for item in self.accepted_in(grain, p):
                by_key.setdefault(item.key(grain), []).append(item)
            table.update({k: self.row(grain, k, v) for k, v in by_key.items()})

    def purgeable(self, item: Item, days: int, name: str | None) -> bool:
        """README Purge: received > days ago, every partition it feeds materialized after it arrived (strictly:
        a refresh at its receive instant may not hold it), and for a quartile measure older than
        maxDaysToUpdateQuartile too."""
        d = self.defs[item.name]
        if not item.accepted or item.purged_at is not None or name not in (None, item.name):
            return False
        if item.received_at >= self.now - timedelta(days=days):
            return False
        if d.with_quartiles and item.received_at >= self.now - timedelta(days=d.max_days_to_update_quartile):
            return False
        done = [self.materialized.get((g, item.key(g)[1])) for g in item.grains()]
        return all(t is not None and t > item.received_at for t in done)

    def purge(self, days: int, name: str | None) -> Counter[str]:
        """Purged items: quartile targets frozen from the raw values present, stored rows stamped."""
        gone = [i for i in self.items if self.purgeable(i, days, name)]
        for item in gone:
            if BY_NAME[item.name].with_quartiles:
                for g in item.grains():
                    target = (g, item.key(g))
                    if target not in self.frozen:
                        present = [i.value for i in self.accepted_in(g, target[1][1]) if i.key(g) == target[1]]
                        self.frozen[target] = np.quantile(present, [0.25, 0.5, 0.75]).tolist()
        for item in gone:
            item.purged_at = self.now
            for g in item.grains():
                if item.key(g) in self.stored[g]:
                    self.stored[g][item.key(g)]["purged"] = self.now
        self.purged += len(gone)
        return Counter(i.name for i in gone)


def periods(grain: str) -> list[date]:
    """Every partition of `grain` holding a day of DAYS."""
    out = [truncate(grain, FIRST)]
    while next_period(grain, out[-1]) <= LAST:
        out.append(next_period(grain, out[-1]))
    return out


def start_text(rng: np.random.Generator, day: date) -> str:
    """The day as a date, or a date-time (T or space, fraction digits, Z or an offset) whose UTC date is
    `day` (README: startDate)."""
    if rng.random() < 0.6:
        return day.isoformat()
    offset = int(rng.integers(-11, 13)) if rng.random() < 0.7 else 0
    local = datetime(day.year, day.month, day.day, int(rng.integers(0, 24)), 15) + timedelta(hours=offset)
    text = local.strftime("%Y-%m-%d" + str(rng.choice(["T", " "])) + "%H:%M:%S")
    text += str(rng.choice(["", ".5", ".123456789"]))
    return text + (
        str(rng.choice(["Z", "+00:00", ""])) if offset == 0 else f"{'+' if offset > 0 else '-'}{abs(offset):02d}:00"
    )


def new_item(rng: np.random.Generator, model: Model) -> Item:
    """A valid measure: a new key, a late one for an existing key, or one aimed at a sealed quartile key."""
    pick = rng.random()
    if pick < 0.15 and model.frozen:
        grain, key = list(model.frozen)[int(rng.integers(len(model.frozen)))]
        twin = next(i for i in model.items if i.accepted and i.key(grain) == key)
        day = key[1] + timedelta(days=int(rng.integers(0, 7 if grain == "week" else 28 if grain == "month" else 1)))
        name, created_by, groups = twin.name, twin.created_by, twin.groups
    elif pick < 0.55 and model.items:
        twin = model.items[int(rng.integers(len(model.items)))]
        name, created_by, groups, day = twin.name, twin.created_by, twin.groups, twin.day
    else:
        name = str(rng.choice([d.name for d in DEFINITIONS]))
        created_by = CREATORS[int(rng.integers(len(CREATORS)))]
        keys = BY_NAME[name].group_keys()
        groups = tuple(GROUPS[i][int(rng.integers(len(GROUPS[i])))] if k else None for i, k in enumerate(keys))
        day = DAYS[int(rng.integers(len(DAYS)))]
    return Item(name, min(max(day, FIRST), LAST), created_by, groups, value_for(rng, created_by), model.now)


def value_for(rng: np.random.Generator, created_by: str | None) -> float:
    """Small integers, normal values, a few large ones; for `steady` a spread of 1e-6 of the mean (the
    refresh's exact second pass), for `flat` always 0.1."""
    if created_by == "flat":
        return 0.1
    if created_by == "steady":
        return 1000.0 + int(rng.integers(0, 4)) * 0.001
    kind = rng.random()
    value = float(rng.integers(-3, 4)) if kind < 0.4 else round(float(rng.normal(40, 25)), 3)
    return float(rng.integers(-50_000, 50_000)) if kind > 0.95 else value


def payload(rng: np.random.Generator, item: Item) -> str:
    """The item as DACC sends it; some values as numeric strings, some integer groups written as floats
    (README: `1`, `1.0` and `1E0` are one group)."""
    groups = {f"group{n}": g for n, g in enumerate(item.groups, start=1) if g is not None}
    value: Any = item.value
    if rng.random() < 0.15:
        value = str(
            rng.choice([repr(item.value), f" {item.value} ", f"+{item.value}" if item.value >= 0 else f"{item.value}"])
        )
    sent = measure(item.name, value, start_text(rng, item.day), item.created_by, **groups)
    for n, k in enumerate(BY_NAME[item.name].group_keys(), start=1):
        sent |= {f"group{n}": None} if k is None and rng.random() < 0.1 else {}  # null: absent (README)
    sent |= {"createdBy": None} if item.created_by is None and rng.random() < 0.2 else {}
    text = json.dumps(sent)
    if rng.random() < 0.5:
        text = text.replace(": 3}", ": " + str(rng.choice(["3.0", "3E0", "0.3e1"])) + "}")
    return text


@dataclass
class Run:
    """A warehouse under test, its model, the random source and a folder for files."""

    wh: Warehouse
    model: Model
    rng: np.random.Generator
    folder: Path


def step_ingest(run: Run) -> None:
    """A batch of valid, late, sealed-key and malformed measures: intake counts and reasons as modelled."""
    rng, model = run.rng, run.model
    items = [new_item(rng, model) for _ in range(int(rng.integers(5, 40)))]
    bad = [MALFORMED[int(rng.integers(len(MALFORMED)))] for _ in range(int(rng.integers(0, 3)))]
    lines = [(payload(rng, i), i) for i in items] + [(text, reason) for text, reason in bad]
    order = [0, *(1 + rng.permutation(len(lines) - 1))]  # a measure first: the file is NDJSON (README)
    lines = [lines[k] for k in order]
    reasons: Counter[str] = Counter(reason for _, reason in bad)
    for item in items:
        item.accepted = not model.sealed(item)
        reasons.update([] if item.accepted else ["quartile_key_sealed"])
    seq0 = int(run.wh.fetch("SELECT coalesce(max(seq), 0) AS s FROM inbox").iloc[0, 0])
    result = ingest(run.wh, run.folder, lines=[text for text, _ in lines])
    model.items += items
    model.received += len(lines)
    model.rejected += sum(reasons.values())
    assert (result.received, result.rejected) == (len(lines), sum(reasons.values()))
    assert result.accepted + result.rejected == result.received
    assert result.rejected_by_reason == dict(reasons)
    kept = run.wh.fetch(
        "SELECT r.seq, r.reason, i.payload FROM rejected_measures r JOIN inbox i ON i.seq = r.seq WHERE r.seq > "
        + str(seq0)
    )
    want = Counter((text, r if isinstance(r, str) else "quartile_key_sealed") for text, r in lines if not _ok(r))
    assert Counter(zip(kept["payload"], kept["reason"], strict=True)) == want  # rejected and kept, with a reason


def _ok(entry: Item | str) -> bool:
    """Whether a line of a batch is an accepted item."""
    return isinstance(entry, Item) and entry.accepted


def step_refresh(run: Run, grain: str | None = None, whole: bool = False) -> None:
    """Refresh an aligned window of 1-3 partitions of a grain (or the whole range)."""
    grain = grain or str(run.rng.choice(list(TABLES)))
    parts = periods(grain)
    first = 0 if whole else int(run.rng.integers(len(parts)))
    chosen = parts[first:] if whole else parts[first : first + int(run.rng.integers(1, 4))]
    result = run.wh.refresh(grain, chosen[0], next_period(grain, chosen[-1]), checks=True)
    assert result.violations is not None and set(result.violations.values()) == {0}, result.violations
    assert set(run.wh.stored_check_violations(grain).values()) == {0}
    run.model.refresh(grain, chosen)
    new = [(key, row) for key, row in run.model.stored[grain].items() if key[1] in chosen]
    released = sum(row["count"] >= run.model.defs[key[0]].aggregation_threshold for key, row in new)
    assert (result.rows, result.released, result.suppressed) == (len(new), released, len(new) - released)
    shown = result.preview.to_dict("records")  # the UI preview shows released rows only (DESIGN §4.4)
    assert all(r["count"] >= run.model.defs[r["measure_name"]].aggregation_threshold for r in shown)


def step_purge(run: Run) -> None:
    """Time moves on, then a purge: the modelled measures go, no stored figure moves, and a recomputation of
    unchanged partitions gives the figures from before the purge."""
    rng, model = run.rng, run.model
    model.tick([60, 86_400 * 3, 86_400 * 20, 86_400 * 45][int(rng.integers(4))] * float(rng.random() + 0.5))
    days = [0, 1, 7, 30, 90][int(rng.integers(5))]
    edge = [
        i.received_at + timedelta(days=days) for i in model.items if i.received_at + timedelta(days=days) > model.now
    ]
    if edge and rng.random() < 0.3:  # now exactly `days` after a receive time: that measure is not older
        model.now = min(edge)
    name = None if rng.random() < 0.6 else str(rng.choice([d.name for d in DEFINITIONS]))
    before = {g: aggregates(run.wh, g) for g in TABLES}
    want = model.purge(days, name)
    assert run.wh.purge(days, measure=name, now=model.now) == dict(sorted(want.items()))
    for g in TABLES:
        after = aggregates(run.wh, g)
        pd.testing.assert_frame_equal(after[[*FLOATS, "count"]], before[g][[*FLOATS, "count"]])
    check(run)
    if rng.random() < 0.5:
        return
    grain = str(rng.choice(list(TABLES)))
    unchanged = {p for (g, p), t in model.materialized.items() if g == grain and _unchanged(model, grain, p, t)}
    step_refresh(run, grain, whole=True)
    old, new = (frame.set_index(KEY_COLUMNS) for frame in (before[grain], aggregates(run.wh, grain)))
    same = [k for k in old.index if k[1] in unchanged]
    assert set(same) <= set(new.index)
    for col in ["count", "count_not_zero", "min", "max", *QUARTILES]:
        assert new.loc[same, col].equals(old.loc[same, col]), col  # to the bit (README Purge)
    assert_close(new.loc[same], old.loc[same], old.loc[same, "sum"].abs() + old.loc[same, "max"].abs())


KEY_COLUMNS = ["measure_name", "period_start", "created_by", "group1", "group2", "group3"]


def _unchanged(model: Model, grain: str, period: date, refreshed: datetime) -> bool:
    """Every measure of the partition was accepted before its last refresh."""
    return all(i.received_at < refreshed for i in model.accepted_in(grain, period))


def assert_close(got: pd.DataFrame, want: pd.DataFrame, scale: pd.Series) -> None:
    """sum, avg, std within ULPS ulps of `scale` (a loose check for a recomputation's merge errors)."""
    for col in ["sum", "avg", "std"]:
        err = (got[col] - want[col]).abs().to_numpy(dtype=float)
        assert (err <= ULPS * EPS * scale.to_numpy(dtype=float)).all(), col


def check(run: Run) -> None:
    """DESIGN's invariants on everything stored: counts held, every aggregate row, the released rows."""
    wh, model = run.wh, run.model
    assert wh.loss_counts() == (
        model.received - model.purged,
        sum(i.accepted for i in model.items) - model.purged,
        model.rejected,
    )
    late = {
        (g, i.key(g)[1])
        for i in model.items
        for g in i.grains()
        if i.accepted
        and i.purged_at is None
        and (g, i.key(g)[1]) in model.materialized
        and i.received_at >= model.materialized[(g, i.key(g)[1])]  # a tie may not be in the row: late
    }
    assert {(r.grain, pd.Timestamp(r.period_start).date()) for r in wh.late_partitions().itertuples()} == late
    for grain in TABLES:
        table = {tuple(r[c] for c in KEY_COLUMNS): r for r in aggregates(wh, grain).to_dict("records")}
        check_rows(table, model.stored[grain], grain)
        names = [d.name for d in DEFINITIONS if d.aggregation_period in GRAIN_FEEDS[grain]]
        for name in run.rng.choice(names, size=2, replace=False):  # two measures a step, by turns
            lo, hi = sorted(int(k) for k in run.rng.integers(0, len(DAYS) + 20, size=2))
            span = (date(2022, 1, 1) + timedelta(days=lo), date(2022, 1, 1) + timedelta(days=hi + 1))
            by = CREATORS[int(run.rng.integers(len(CREATORS)))]
            check_released(wh, table, grain, model.defs[str(name)], span, by)


def check_rows(got: dict[Any, dict[str, Any]], stored: dict[Key, dict[str, Any]], grain: str) -> None:
    """Exactly the modelled rows; counts, min, max exact, other figures within ULPS ulps, stamps equal."""
    assert sorted(got, key=str) == sorted(stored, key=str), f"{grain}: keys differ"
    for key, want in stored.items():
        row = got[key]
        for col in ["count", "count_not_zero", "min", "max"] + (["std"] if want["std"] == 0 else []):
            assert row[col] == want[col], (grain, key, col, row[col], want[col])
        for col in ["sum", "avg", "std", *QUARTILES]:
            scale = want["scale_sum"] if col == "sum" else want["scale"]
            ok = abs(row[col] - want[col]) <= ULPS * EPS * scale or (math.isnan(want[col]) and pd.isna(row[col]))
            assert ok, (grain, key, col, row[col], want[col])
        stamp = row["last_raw_measures_purged"]
        assert (None if pd.isna(stamp) else pd.Timestamp(stamp).to_pydatetime()) == want["purged"], (grain, key)


def restitution(grain_row: dict[str, Any], key: Any) -> dict[str, Any]:
    """The DACC restitution of one stored row (DESIGN §4.4: camelCase keys, null keys omitted)."""
    d = BY_NAME[key[0]]
    out: dict[str, Any] = {"measureName": key[0], "startDate": key[1].strftime("%Y-%m-%dT%H:%M:%S")}
    out |= {"createdBy": key[2]} if key[2] else {}
    for n, (k, text) in enumerate(zip(d.group_keys(), key[3:], strict=True), start=1):
        out |= {f"group{n}": {k: json.loads(text)}} if k else {}
    names = {"count": "count", "count_not_zero": "countNotZero", **{c: c for c in ["sum", "min", "max", "avg", "std"]}}
    if d.with_quartiles:
        names |= {"median": "median", "first_quartile": "firstQuartile", "third_quartile": "thirdQuartile"}
    out |= {camel: grain_row[col] for col, camel in names.items()}
    stamp = grain_row["last_raw_measures_purged"]
    return out | ({} if pd.isna(stamp) else {"lastRawMeasuresPurged": pd.Timestamp(stamp).isoformat()})


def check_released(
    wh: Warehouse, table: dict[Any, dict[str, Any]], grain: str, d: MeasureDefinition, span: Any, by: str | None
) -> None:
    """DESIGN §4.4: released rows are exactly the stored ones of [start, end) with count >= the threshold of
    today's catalog, ordered by start date, in DACC's shape."""
    got = wh.released(grain, d.name, *span, by)
    assert [r["startDate"] for r in got] == sorted(r["startDate"] for r in got)
    want = [
        restitution(row, key)
        for key, row in table.items()
        if key[0] == d.name
        and span[0] <= key[1] < span[1]
        and row["count"] >= d.aggregation_threshold
        and by in (None, key[2])
    ]
    dumps = [json.dumps(r, sort_keys=True, default=float) for r in got]
    assert sorted(dumps) == sorted(json.dumps(w, sort_keys=True, default=float) for w in want), (grain, d.name, by)


def step_catalog(run: Run) -> None:
    """A catalog change: a day measure never sent comes or goes (the day measures' set changes: README
    Roll-ups), or a measure takes another aggregationThreshold or maxDaysToUpdateQuartile."""
    if run.rng.random() < 0.3:
        if run.model.defs.pop(EXTRA.name, None) is None:
            run.model.defs[EXTRA.name] = EXTRA
        run.wh.sync_definitions(list(run.model.defs.values()))
        return
    name = str(run.rng.choice([d.name for d in DEFINITIONS]))
    change: dict[str, int] = {"aggregation_threshold": int(run.rng.integers(1, 6))}
    if run.model.defs[name].with_quartiles and run.rng.random() < 0.5:
        change = {"max_days_to_update_quartile": int(run.rng.choice([0, 10, 30, 100]))}
    run.model.defs[name] = run.model.defs[name].model_copy(update=change)
    run.wh.sync_definitions(list(run.model.defs.values()))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Model]:
    """A model whose clock is the warehouse's utc_now (ingest and refresh times), moved by the test."""
    model = Model(now=datetime(2022, 4, 1))
    monkeypatch.setattr(base, "utc_now", lambda: model.now)
    yield model


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_random_operation_sequences(warehouse: Warehouse, clock: Model, tmp_path: Path, seed: int) -> None:
    """STEPS random steps; after each, the warehouse equals the model (rows, figures, release, counts)."""
    warehouse.sync_definitions(DEFINITIONS)
    run = Run(warehouse, clock, np.random.default_rng(seed), tmp_path)
    for step in range(STEPS):
        clock.tick(float(run.rng.integers(1, 3600)))
        pick = run.rng.random()
        if pick < 0.07 and step:
            step_catalog(run)
        elif pick < 0.3 or not step:
            step_ingest(run)
        elif pick < 0.55:
            step_refresh(run)
        elif pick < 0.72:  # every grain over the whole range, in a random order
            for grain in run.rng.permutation(list(TABLES)):
                step_refresh(run, str(grain), whole=True)
        else:
            step_purge(run)
        check(run)


def test_a_measure_ingested_at_its_partitions_refresh_instant_is_late(
    warehouse: Warehouse, clock: Model, tmp_path: Path
) -> None:
    """A measure ingested when the clock reads its day's refresh time (a clock tie) came after the refresh:
    its day is late, the week reads raw rows for that day, and purge waits for the day's next refresh."""
    warehouse.sync_definitions(DEFINITIONS)
    ingest(warehouse, tmp_path, [measure("errors-daily", 1.0, "2022-02-02")])
    clock.tick(1)
    warehouse.refresh("day", date(2022, 2, 2), date(2022, 2, 3))
    ingest(warehouse, tmp_path, [measure("errors-daily", 10.0, "2022-02-02")])  # same utc_now() as the refresh
    assert_late_then_merged(warehouse, clock)


def test_a_clock_stepped_back_cannot_hide_a_late_measure(warehouse: Warehouse, clock: Model, tmp_path: Path) -> None:
    """A clock an hour behind the day's refresh (stepped back, or another host's writing to the same
    PostgreSQL): the measure ingested after the refresh is still late and is not purged before the next
    refresh holds it. With the clock's own times it looked held by the refresh and was sealed unrefreshed."""
    warehouse.sync_definitions(DEFINITIONS)
    ingest(warehouse, tmp_path, [measure("errors-daily", 1.0, "2022-02-02")])
    clock.tick(1)
    warehouse.refresh("day", date(2022, 2, 2), date(2022, 2, 3))
    clock.tick(-3600)
    ingest(warehouse, tmp_path, [measure("errors-daily", 10.0, "2022-02-02")])
    assert_late_then_merged(warehouse, clock)


def assert_late_then_merged(warehouse: Warehouse, clock: Model) -> None:
    """Day 2022-02-02 holds 1.0 from its refresh and 10.0 ingested after it: late, rolled up from raw rows,
    purged only once the day is refreshed again."""
    late = warehouse.late_partitions()
    assert [(r.grain, pd.Timestamp(r.period_start).date()) for r in late.itertuples()] == [("day", date(2022, 2, 2))]
    clock.tick(1)
    warehouse.refresh("week", date(2022, 1, 31), date(2022, 2, 7))
    assert aggregates(warehouse, "week")[["count", "sum"]].values.tolist() == [[2, 11.0]]
    clock.tick(1)
    warehouse.refresh("month", date(2022, 2, 1), date(2022, 3, 1))
    far = max(clock.now, datetime(2022, 4, 1)) + timedelta(days=1)
    assert warehouse.purge(0, now=far) == {"errors-daily": 1}  # the first one only
    clock.tick(1)
    warehouse.refresh("day", date(2022, 2, 2), date(2022, 2, 3))
    assert aggregates(warehouse, "day")[["count", "sum"]].values.tolist() == [[2, 11.0]]
    assert warehouse.purge(0, now=far) == {"errors-daily": 1}
    assert warehouse.late_partitions().empty
