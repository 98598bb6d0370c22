"""The warehouse's values and pure helpers: grains, results of an intake or a refresh, DACC's
restitution rows, period arithmetic (no database access)."""

import contextlib
import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from aggassets.catalog import MeasureDefinition

GRAINS = ("day", "week", "month")
AGGREGATE_TABLES = {"day": "daily_aggregates", "week": "weekly_aggregates", "month": "monthly_aggregates"}
# Which measure periods feed each grain: day measures roll up into weeks and months.
PERIODS_FEEDING = {"day": ("day",), "week": ("day", "week"), "month": ("day", "month")}
# An age in days older than any receive time (2,700 years): purge ages beyond it purge the same, and stay
# inside both engines' timestamp ranges.
MAX_AGE_DAYS = 1_000_000


@dataclass(frozen=True)
class IntakeResult:
    """What one intake did: received = accepted + rejected."""

    received: int
    accepted: int
    rejected: int
    rejected_by_reason: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The CLI's JSON line."""
        return {
            "received": self.received,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "rejected_by_reason": self.rejected_by_reason,
        }


def intake_totals(results: Sequence[IntakeResult]) -> dict[str, Any]:
    """The intake results of several files added up, as the CLI prints them."""
    reasons: Counter[str] = Counter()
    for r in results:
        reasons.update(r.rejected_by_reason)
    return {
        "received": sum(r.received for r in results),
        "accepted": sum(r.accepted for r in results),
        "rejected": sum(r.rejected for r in results),
        "rejected_by_reason": dict(reasons.most_common()),
    }


@dataclass(frozen=True)
class RefreshResult:
    """What one aggregate refresh wrote for its window."""

    grain: str
    start: date
    end: date
    rows: int
    released: int
    suppressed: int
    preview: pd.DataFrame
    violations: dict[str, int] | None = None  # the aggregate checks, when asked for (see Warehouse.refresh)


def utc_now() -> datetime:
    """The current UTC time, naive (every timestamp in the warehouse is UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


FileState = tuple[int, int, int, int]  # size, modification time (ns), inode, device


def file_state(path: Path) -> FileState | None:
    """What tells that a file changed (it grew, was rewritten or replaced) while it was read; None when it
    cannot be looked at (missing: reading it says so)."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_dev


def file_sha256(path: Path) -> str:
    """The file's SHA-256, to ingest an inbox file at most once."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def definitions_frame(definitions: Sequence[MeasureDefinition]) -> pd.DataFrame:
    """The catalog as rows of the measure_definitions table (DACC's `id` is not kept: names identify)."""
    rows = [
        {
            "name": d.name,
            "org": d.org,
            "created_by": d.created_by,
            "group1_key": d.group1_key,
            "group2_key": d.group2_key,
            "group3_key": d.group3_key,
            "description": d.description,
            "aggregation_period": d.aggregation_period,
            "execution_frequency": d.execution_frequency,
            "aggregation_threshold": d.aggregation_threshold,
            "access_app": d.access_app,
            "access_public": d.access_public,
            "with_quartiles": d.with_quartiles,
            "max_days_to_update_quartile": d.max_days_to_update_quartile,
        }
        for d in definitions
    ]
    return pd.DataFrame(rows, columns=[f for f in MeasureDefinition.model_fields if f != "id"])


def quote(name: str) -> str:
    """An identifier (a column name from the validated catalog or an events file's header) as quoted SQL:
    the one quoting helper of the warehouse's SQL."""
    return '"' + name.replace('"', '""') + '"'


def _group(key: str | None, stored: str) -> dict[str, Any] | None:
    """A stored group value (JSON text, '' when absent) back to DACC's {key: value}."""
    return {key: json.loads(stored)} if key and stored != "" else None


def restitution_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """One aggregate row in DACC's restitution shape: camelCase keys, null keys omitted (NaN is how pandas
    reads a NULL number: a row without quartiles has no quartile keys, never a bare NaN)."""
    out: dict[str, Any] = {
        "measureName": row["measure_name"],
        "startDate": pd.Timestamp(row["period_start"]).strftime("%Y-%m-%dT%H:%M:%S"),
        "createdBy": row["created_by"] or None,
    }
    for i in (1, 2, 3):
        out[f"group{i}"] = _group(row[f"group{i}_key"], row[f"group{i}"])
    out |= {
        "count": int(row["count"]),
        "countNotZero": int(row["count_not_zero"]),
        "sum": row["sum"],
        "min": row["min"],
        "max": row["max"],
        "avg": row["avg"],
        "std": row["std"],
    }
    if row["with_quartiles"]:
        out |= {"median": row["median"], "firstQuartile": row["first_quartile"], "thirdQuartile": row["third_quartile"]}
    if row.get("last_raw_measures_purged") is not None and not pd.isna(row["last_raw_measures_purged"]):
        out["lastRawMeasuresPurged"] = pd.Timestamp(row["last_raw_measures_purged"]).isoformat()
    return {k: (float(v) if isinstance(v, float) else v) for k, v in out.items() if v is not None and not _nan(v)}


def _shown_group(key: Any, stored: str) -> str:
    """A stored group value as the UI shows it: `key=value`, a string without its JSON quotes unless it
    would then read as a number or literal ('' when the row has no such group)."""
    if stored == "" or key is None or _nan(key):
        return ""
    if not stored.startswith('"'):
        return f"{key}={stored}"
    text = json.loads(stored)
    with contextlib.suppress(ValueError):
        json.loads(text)
        return f"{key}={stored}"  # "1.5" or "true": unquoted, it would read as the number or literal
    return f"{key}={text}"


def preview_groups(frame: pd.DataFrame) -> pd.DataFrame:
    """Preview rows (window_preview) with each group shown as `key=value`, the key columns dropped."""
    shown = frame.copy()
    for i in (1, 2, 3):
        pairs = zip(frame[f"group{i}_key"], frame[f"group{i}"], strict=True)
        shown[f"group{i}"] = [_shown_group(key, stored) for key, stored in pairs]
    return shown.drop(columns=[f"group{i}_key" for i in (1, 2, 3)])


def _nan(value: Any) -> bool:
    """True for a float NaN (a NULL number read by pandas)."""
    return isinstance(value, float) and math.isnan(value)


def period_start(grain: str, day: date) -> date:
    """The first day of the `grain` period containing `day` (weeks start on Monday)."""
    if grain == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1) if grain == "month" else day


def period_end(grain: str, start: date) -> date:
    """The first day after the period of `grain` that starts on `start`."""
    if grain == "day":
        return start + timedelta(days=1)
    if grain == "week":
        return start + timedelta(days=7)
    return date(start.year + start.month // 12, start.month % 12 + 1, 1)


def consecutive_runs(grain: str, periods: Iterable[date]) -> list[tuple[date, date]]:
    """(first, last) of each run of consecutive period starts of `grain`, in order."""
    runs: list[tuple[date, date]] = []
    for p in sorted(periods):
        if runs and period_end(grain, runs[-1][1]) == p:
            runs[-1] = (runs[-1][0], p)
        else:
            runs.append((p, p))
    return runs


def last_line_length(path: Path | str) -> int:
    """Bytes of the file's last line that holds something (trailing line ends left out), read backwards in
    blocks: DuckDB's line reader drops, without an error, a last line far longer than its limit."""
    with open(path, "rb") as fh:
        pos, content_end = fh.seek(0, 2), None
        while pos > 0:
            step = min(1 << 20, pos)
            pos -= step
            fh.seek(pos)
            chunk = fh.read(step)
            if content_end is None:  # still in the trailing line ends
                kept = len(chunk.rstrip(b"\r\n"))
                if not kept:
                    continue
                content_end, chunk = pos + kept, chunk[:kept]
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                return content_end - (pos + newline + 1)
        return content_end or 0
