"""Helpers of the warehouse contract suite: a test catalog, generated measures, numpy expectations."""

import io
import json
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg2
import pytest

from aggassets.catalog import MeasureDefinition
from aggassets.warehouse import intake, postgres_engine
from aggassets.warehouse.base import Warehouse
from aggassets.warehouse.values import IntakeResult

FIRST_DAY = date(2020, 1, 1)
TABLES = {"day": "daily_aggregates", "week": "weekly_aggregates", "month": "monthly_aggregates"}
KEY = ["measure_name", "period_start", "created_by", "group1", "group2", "group3"]
STATS = ["count", "count_not_zero", "sum", "min", "max", "avg", "std", "median", "first_quartile", "third_quartile"]

DEFINITIONS = [
    MeasureDefinition(
        name="visits-daily", aggregationPeriod="day", group1Key="device", group2Key="os", aggregationThreshold=3
    ),
    MeasureDefinition(
        name="duration-daily",
        aggregationPeriod="day",
        group1Key="slug",
        withQuartiles=True,
        maxDaysToUpdateQuartile=30,
        aggregationThreshold=2,
    ),
    MeasureDefinition(name="errors-daily", aggregationPeriod="day", aggregationThreshold=1),
    MeasureDefinition(name="sharing-weekly", aggregationPeriod="week", group1Key="kind", aggregationThreshold=2),
    MeasureDefinition(name="latency-weekly", aggregationPeriod="week", withQuartiles=True, maxDaysToUpdateQuartile=200),
    MeasureDefinition(
        name="storage-monthly",
        aggregationPeriod="month",
        group1Key="offer",
        group2Key="plan",
        group3Key="region",
        aggregationThreshold=1,
    ),
    MeasureDefinition(name="variation-monthly", aggregationPeriod="month", group1Key="fluid", withQuartiles=True),
]
BY_NAME = {d.name: d for d in DEFINITIONS}
# Which measure periods feed each grain (DESIGN §4.3): day measures roll up into weeks and months.
FEEDS = {"day": {"day"}, "week": {"day", "week"}, "month": {"day", "month"}}
GROUP_VALUES: list[Any] = ["desktop", "mobile", "tablet", 3, True, 'é "quoted"']


def truncate(grain: str, day: date) -> date:
    """The first day of the `grain` period containing `day` (weeks start on Monday)."""
    if grain == "week":
        return day - timedelta(days=day.weekday())
    if grain == "month":
        return day.replace(day=1)
    return day


def next_period(grain: str, start: date) -> date:
    """The first day of the period after the one starting on `start`."""
    if grain == "day":
        return start + timedelta(days=1)
    if grain == "week":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def canonical(value: Any) -> str:
    """A group value as comparable text ('' when absent)."""
    return "" if value is None else json.dumps(value)


def measure(name: str, value: Any, start: str, created_by: str | None = None, **groups: Any) -> dict[str, Any]:
    """One DACC measure; groups given as group1=value... use the definition's keys."""
    item: dict[str, Any] = {"measureName": name, "value": value, "startDate": start}
    if created_by is not None:
        item["createdBy"] = created_by
    keys = BY_NAME[name].group_keys()
    for i in (1, 2, 3):
        if f"group{i}" in groups:
            item[f"group{i}"] = {keys[i - 1]: groups[f"group{i}"]}
    return item


def utc_day(start: str) -> date:
    """The UTC date of an ISO date or date-time (independent of the warehouse's parser)."""
    if len(start) == 10:
        return date.fromisoformat(start)
    moment = datetime.fromisoformat(start.replace("Z", "+00:00"))
    return (moment.astimezone(UTC) if moment.tzinfo else moment).date()


def _start_text(rng: np.random.Generator, day: date) -> str:
    """The day as a plain date, or as a date-time with an offset whose UTC date is `day`."""
    if rng.random() >= 0.2:
        return day.isoformat()
    offset = int(rng.integers(-11, 13))
    local = datetime(day.year, day.month, day.day, int(rng.integers(0, 24)), 30) + timedelta(hours=offset)
    sign = "+" if offset >= 0 else "-"
    return local.strftime("%Y-%m-%dT%H:%M:%S") + f"{sign}{abs(offset):02d}:00"


def _value(rng: np.random.Generator) -> float:
    """Small integers (zeros and negatives included), normal values, a few large ones."""
    kind = rng.random()
    if kind < 0.4:
        return float(rng.integers(-3, 4))
    if kind < 0.95:
        return round(float(rng.normal(40, 25)), 3)
    return float(rng.integers(-50_000, 50_000))


def generate(seed: int, n: int, first: date, days: int, names: Sequence[str] = tuple(BY_NAME)) -> list[dict[str, Any]]:
    """`n` valid measures of `names` over `days` days from `first`, with groups and createdBy."""
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(n):
        name = str(rng.choice(list(names)))
        day = first + timedelta(days=int(rng.integers(0, days)))
        created_by = [None, "ecolyo", "drive"][int(rng.integers(0, 3))]
        groups = {
            f"group{i + 1}": GROUP_VALUES[int(rng.integers(0, 3 if i else len(GROUP_VALUES)))]
            for i, key in enumerate(BY_NAME[name].group_keys())
            if key
        }
        items.append(measure(name, _value(rng), _start_text(rng, day), created_by, **groups))
    return items


def frame(items: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Accepted measures as rows: measure, UTC day, createdBy, canonical groups, value."""
    rows = []
    for item in items:
        keys = BY_NAME[item["measureName"]].group_keys()
        groups = [canonical(item[f"group{i}"][k]) if k else "" for i, k in enumerate(keys, start=1)]
        rows.append(
            [
                item["measureName"],
                utc_day(item["startDate"]),
                item.get("createdBy") or "",
                *groups,
                float(item["value"]),
            ]
        )
    return pd.DataFrame(rows, columns=["measure_name", "day", "created_by", "group1", "group2", "group3", "value"])


def _stats(values: np.ndarray, quartiles: bool) -> dict[str, float]:
    """The statistics of one aggregate row, computed with numpy."""
    n = len(values)
    q = np.quantile(values, [0.25, 0.5, 0.75]) if quartiles else [np.nan] * 3
    return {
        "count": n,
        "count_not_zero": int(np.count_nonzero(values)),
        "sum": float(np.sum(values)),
        "min": float(np.min(values)),
        "max": float(np.max(values)),
        "avg": float(np.mean(values)),
        "std": float(np.std(values, ddof=1)) if n > 1 else 0.0,
        "median": float(q[1]),
        "first_quartile": float(q[0]),
        "third_quartile": float(q[2]),
    }


def expected(rows: pd.DataFrame, grain: str, start: date, end: date) -> pd.DataFrame:
    """The aggregate table of `grain` over [start, end) that `rows` should give."""
    out = []
    for _, r in rows.iterrows():
        d = BY_NAME[r["measure_name"]]
        stored = truncate(d.aggregation_period, r["day"])
        if d.aggregation_period in FEEDS[grain] and start <= stored < end:
            out.append({**r, "period_start": truncate(grain, stored)})
    if not out:
        return pd.DataFrame(columns=KEY + STATS)
    table = pd.DataFrame(out)
    result = [
        {**dict(zip(KEY, key, strict=True)), **_stats(g["value"].to_numpy(), BY_NAME[key[0]].with_quartiles)}
        for key, g in table.groupby(KEY, sort=True)
    ]
    return pd.DataFrame(result, columns=KEY + STATS)


def aggregates(wh: Warehouse, grain: str) -> pd.DataFrame:
    """The stored table of `grain`, keys normalised (dates, canonical group text), sorted by key."""
    table = wh.read_table(TABLES[grain]).copy()
    table["period_start"] = [pd.Timestamp(v).date() for v in table["period_start"]]
    for col in ("group1", "group2", "group3"):
        table[col] = [canonical(json.loads(v)) if v != "" else "" for v in table[col]]
    return table.sort_values(KEY, kind="stable").reset_index(drop=True)


def assert_matches(actual: pd.DataFrame, wanted: pd.DataFrame, columns: Sequence[str] = STATS) -> None:
    """Same keys in the same order; counts exact; floats equal to 1e-9 relative (NaN where NaN)."""
    wanted = wanted.sort_values(KEY, kind="stable").reset_index(drop=True)
    assert actual[KEY].astype(str).values.tolist() == wanted[KEY].astype(str).values.tolist()
    for col in columns:
        got, want = actual[col].to_numpy(dtype=float), wanted[col].to_numpy(dtype=float)
        if col.startswith("count"):
            assert got.tolist() == want.tolist(), col
        else:
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=col)


def window(grain: str, days: Sequence[date]) -> tuple[date, date]:
    """The aligned window of `grain` covering every day of `days`."""
    return truncate(grain, min(days)), next_period(grain, truncate(grain, max(days)))


def ingest(
    wh: Warehouse, folder: Path, items: Sequence[dict[str, Any]] = (), lines: Sequence[str] = ()
) -> IntakeResult:
    """Write items (then raw lines) as an NDJSON file and ingest it with the test catalog."""
    path = Path(folder) / f"measures-{uuid.uuid4().hex[:8]}.ndjson"
    text = [json.dumps(i) for i in items] + list(lines)
    path.write_text("".join(t + "\n" for t in text), encoding="utf-8")
    return wh.ingest_file(path, DEFINITIONS, FIRST_DAY)


def refresh_all(wh: Warehouse, days: Sequence[date]) -> dict[str, tuple[date, date]]:
    """Refresh every grain over the aligned windows covering `days`; returns the windows."""
    windows = {grain: window(grain, days) for grain in TABLES}
    for grain, (start, end) in windows.items():
        wh.refresh(grain, start, end)
    return windows


def full_spill_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Make the intake's validation DuckDB small (128 MB) and its temporary folder full past 1 MB; the folder."""
    monkeypatch.setattr(intake, "VALIDATION_MEMORY_LIMIT", "128MB")
    monkeypatch.setattr(intake, "VALIDATION_SPILL_LIMIT", "1MB")
    spill = tmp_path / "tmp"
    spill.mkdir()
    monkeypatch.setenv("TMPDIR", str(spill))
    monkeypatch.setattr(tempfile, "tempdir", None)  # Python reads TMPDIR again
    return spill


def spill_error(path: Path, spill: Path) -> str:
    """The error of a validation of `path` that found no room in the temporary folder `spill`."""
    return (
        f"{path}: out of room to validate it: beyond 128MB in memory, validation spills to a temporary folder "
        f"in {spill}, which is full (free space there, or set TMPDIR to a folder with room)"
    )


@contextmanager
def server_gone_mid_copy(wh: Warehouse, url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Inside: the PostgreSQL warehouse's next COPY loses its connection in the middle (its backend terminated
    by another connection at the third read of the COPY's data, as a server restart would)."""
    killer = psycopg2.connect(postgres_engine.split_url(url)[0])
    killer.autocommit = True

    class ServerGoneAtThirdRead(io.BytesIO):
        reads = 0

        def read(self, size: int | None = -1) -> bytes:
            self.reads += 1
            if self.reads == 3:
                with killer.cursor() as cur:
                    cur.execute("SELECT pg_terminate_backend(%s)", [wh.con.get_backend_pid()])  # type: ignore[attr-defined]
                time.sleep(0.3)
            return super().read(size)

    monkeypatch.setattr(postgres_engine.io, "BytesIO", ServerGoneAtThirdRead)
    try:
        yield
    finally:
        monkeypatch.undo()
        killer.close()
