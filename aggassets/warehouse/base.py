"""The warehouse contract: one class of operations over an engine's statements (`self.sql`: duckdb_sql or
postgres_sql, which share aggregates_sql, goals_sql and the DuckDB validation)."""

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pyarrow as pa

from aggassets.catalog import MeasureDefinition
from aggassets.errors import AggassetsError, AlreadyIngested, FileChanged
from aggassets.warehouse import events_intake
from aggassets.warehouse.aggregates_sql import KEY_IDS_REQUIRED, RAW_KEY_COLUMNS
from aggassets.warehouse.values import (
    GRAINS,
    MAX_AGE_DAYS,
    FileState,
    IntakeResult,
    RefreshResult,
    consecutive_runs,
    definitions_frame,
    file_state,
    period_end,
    period_start,
    preview_groups,
    restitution_row,
    utc_now,
)


class Warehouse(ABC):
    """Operations on the warehouse; engines supply execution, staging and their SQL module."""

    sql: ModuleType

    # -- engine primitives -------------------------------------------------
    @abstractmethod
    def execute(self, statement: str, params: Mapping[str, Any] | None = None) -> None:
        """Run one statement."""

    @abstractmethod
    def fetch(self, statement: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run one query and return its rows."""

    @abstractmethod
    def stage(self, name: str, table: pa.Table) -> None:
        """Make `table` readable as `name` for the current transaction (a temp table)."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """Everything inside commits together or not at all."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""

    def __enter__(self) -> "Warehouse":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema and catalog ------------------------------------------------
    def setup(self) -> None:
        """Create every table that does not exist yet."""
        with self.transaction():
            unkeyed = int(self.fetch(RAW_KEY_COLUMNS).iloc[0, 0]) == 1  # raw_measures from before key_id
            for statement in [*self.sql.SCHEMA, *self.sql.EXPERIMENT_SCHEMA]:
                self.execute(statement)
            if unkeyed:
                for statement in self.sql.FILL_KEY_IDS:
                    self.execute(statement, {"seq0": 0})
        if unkeyed:
            with self.transaction():
                self.execute(KEY_IDS_REQUIRED)

    def sync_definitions(self, definitions: Sequence[MeasureDefinition]) -> None:
        """Replace the measure_definitions table by the catalog (no write, so no writer lock, when it holds
        the catalog already)."""
        frame = definitions_frame(definitions)
        if _rows(self.fetch(self.sql.DEFINITIONS_ROWS)) == _rows(frame):
            return
        with self.transaction():
            self.stage("staged_definitions", pa.Table.from_pandas(frame, preserve_index=False))
            self.execute(self.sql.DELETE_DEFINITIONS)
            self.execute(self.sql.INSERT_DEFINITIONS)

    def read_table(self, name: str, order_by: str | None = None) -> pd.DataFrame:
        """A whole table (tests and the demo summary); `name` must be a known table."""
        schema = [*self.sql.SCHEMA, *self.sql.EXPERIMENT_SCHEMA]
        known = {s.split("EXISTS ", 1)[1].split(" ", 1)[0] for s in schema if s.startswith("CREATE TABLE")}
        if name not in known:
            raise AggassetsError(f"unknown table {name!r}")
        return self.fetch(f"SELECT * FROM {name}" + (f" ORDER BY {order_by}" if order_by else ""))

    # -- intake --------------------------------------------------------------
    def file_seen(self, sha256: str, events: bool = False) -> bool:
        """Whether a measures (or `events`) file with this content was ingested already."""
        statement = self.sql.EVENT_FILE_SEEN if events else self.sql.FILE_SEEN
        return int(self.fetch(statement, {"sha256": sha256}).iloc[0, 0]) > 0

    def refuse_seen(self, sha256: str, events: bool = False) -> None:
        """AggassetsError when content with this sha256 was ingested already (inside the writer's
        transaction, so two commands given the same file at once store it once)."""
        if self.file_seen(sha256, events):
            raise AlreadyIngested("this content was ingested already; pass --again to ingest it once more")

    @abstractmethod
    def ingest_file(
        self,
        path: Path,
        definitions: Sequence[MeasureDefinition],
        first_day: date,
        sha256: str | None = None,
        once: bool = False,
        unchanged_since: FileState | None = None,
    ) -> IntakeResult:
        """Store every item of the file in the inbox, then in raw_measures or rejected_measures (one
        transaction; each engine has its own way, see intake_fast.py). `once`: refuse content the warehouse
        holds already (by sha256), checked inside the transaction, after the writer lock. FileChanged, and
        nothing stored, when the file changed since `unchanged_since` (by default: since it was first read)."""

    def stamp(self) -> datetime:
        """Inside a writer's transaction: the time to store, always after every receive and refresh time
        stored: the clock, or 1 µs past the latest stored time when the clock is behind it (stepped back,
        or another host's). So the times order intakes and refreshes as the writer lock did."""
        latest = self.fetch(self.sql.LATEST_STAMP).iloc[0, 0]
        now = utc_now()
        if pd.isna(latest):
            return now
        return max(now, pd.Timestamp(latest).to_pydatetime() + timedelta(microseconds=1))

    def batch_ids(self, new_content: str | None = None) -> dict[str, Any]:
        """Inside an intake's transaction: its first sequence number - 1 (seq0), batch id and time; with
        `new_content` (a sha256), AggassetsError when a batch of that content is stored already."""
        if new_content is not None:
            self.refuse_seen(new_content)
        ids = self.fetch(self.sql.NEXT_IDS).iloc[0]
        return {"seq0": int(ids["seq"]), "batch_id": int(ids["batch_id"]) + 1, "now": self.stamp()}

    def record_batch(
        self, ids: Mapping[str, Any], source: Path, sha256: str | None, received: int, read: FileState | None
    ) -> IntakeResult:
        """Once the batch's rows are stored (seq > seq0): accepted items of a sealed quartile key rejected,
        the counts checked against what was read, the file checked unchanged since `read`, the batch
        recorded; the intake's result."""
        if file_state(source) != read:
            raise FileChanged(
                f"{source}: it changed while it was read (still being written?); nothing of it is stored: "
                "ingest it once it is complete"
            )
        if bool(self.fetch(self.sql.ANY_FROZEN).iloc[0, 0]):  # nothing to seal against otherwise
            for statement in self.sql.REJECT_SEALED_KEYS:
                self.execute(statement, ids)
        for statement in self.sql.BATCH_KEY_IDS:
            self.execute(statement, ids)
        counts = {str(r): int(n) for r, n in self.fetch(self.sql.BATCH_COUNTS, ids).itertuples(index=False)}
        if sum(counts.values()) != received:
            raise AggassetsError(f"{source}: {received} items read but {sum(counts.values())} stored")
        by_reason = dict(sorted(((r, n) for r, n in counts.items() if r), key=lambda kv: (-kv[1], kv[0])))
        rejected = sum(by_reason.values())
        self.execute(
            self.sql.INSERT_BATCH,
            {
                **ids,
                "source": str(source),
                "sha256": sha256,
                "received": received,
                "accepted": received - rejected,
                "rejected": rejected,
            },
        )
        return IntakeResult(received, received - rejected, rejected, by_reason)

    def loss_counts(self) -> tuple[int, int, int]:
        """(received still held, accepted, rejected): the first equals the sum of the others."""
        row = self.fetch(self.sql.LOSS_COUNTS).iloc[0]
        return int(row.iloc[0]), int(row.iloc[1]), int(row.iloc[2])

    def raw_window_counts(self, start: date, end: date) -> dict[str, tuple[int, int]]:
        """Accepted measures per measure name whose period starts in [start, end): (raw rows stored, raw
        rows a purge moved into sealed moments)."""
        frame = self.fetch(self.sql.RAW_WINDOW_COUNTS, {"start": start, "end": end})
        return {str(m): (int(stored), int(purged)) for m, stored, purged in frame.itertuples(index=False)}

    def rejected_window_counts(self, start: date, end: date) -> dict[str, int]:
        """Rejected measures by reason, received in [start, end)."""
        frame = self.fetch(self.sql.REJECTED_WINDOW_COUNTS, {"start": start, "end": end})
        return {str(r): int(n) for r, n in frame.itertuples(index=False)}

    def rejected_counts(self) -> dict[str, int]:
        """Every rejected measure the warehouse holds, by reason."""
        return self.rejected_window_counts(date(1, 1, 1), date(9999, 12, 31))

    # -- aggregates ------------------------------------------------------------
    def refresh(self, grain: str, start: date, end: date, checks: bool = False) -> RefreshResult:
        """Recompute one grain's table over [start, end) from raw and sealed measures; `checks`: count
        the aggregate checks' violations in the same transaction (an intake committing right after it
        cannot make count_equals_raw fail)."""
        if grain not in GRAINS:
            raise AggassetsError(f"unknown grain {grain!r}; expected one of {', '.join(GRAINS)}")
        if period_start(grain, start) != start or period_start(grain, end) != end:
            raise AggassetsError(f"{grain} window {start} .. {end} does not start and end on {grain} boundaries")
        with self.transaction():
            params = {"start": start, "end": end, "now": self.stamp()}  # after any writer lock
            for statement in self.sql.refresh_aggregates(grain):
                self.execute(statement, params)
            if int(self.fetch(self.sql.narrow_rows(grain), params).iloc[0, 0]):  # rare: the exact second pass
                for statement in self.sql.refresh_aggregates(grain, exact=True):
                    self.execute(statement, params)
            violations = self.check_violations(grain, start, end) if checks else None
        window = {"start": start, "end": end}
        summary = self.fetch(self.sql.window_summary(grain), window).iloc[0]
        preview = preview_groups(self.fetch(self.sql.window_preview(grain), window))
        return RefreshResult(
            grain,
            start,
            end,
            int(summary["rows"]),
            int(summary["released"] or 0),
            int(summary["suppressed"] or 0),
            preview,
            violations,
        )

    def check_violations(self, grain: str, start: date, end: date) -> dict[str, int]:
        """Violation counts of every aggregate check over one window."""
        window = {"start": start, "end": end}
        return {name: int(self.fetch(q, window).iloc[0, 0]) for name, q in self.sql.check_violations(grain).items()}

    def stored_check_violations(self, grain: str) -> dict[str, int]:
        """The aggregate checks over the whole stored table as it is now: the row checks on every row, and
        count_equals_raw on each run of consecutive partitions that are up to date (current_partitions)."""
        everything = {"start": date.min, "end": date.max}
        queries = self.sql.check_violations(grain)
        with self.transaction():
            counts = queries.pop("count_equals_raw")
            found = {name: int(self.fetch(q, everything).iloc[0, 0]) for name, q in queries.items()}
            periods = [pd.Timestamp(p).date() for p in self.fetch(self.sql.current_partitions(grain))["period_start"]]
            window = [{"start": f, "end": period_end(grain, last)} for f, last in consecutive_runs(grain, periods)]
            found["count_equals_raw"] = sum(int(self.fetch(counts, w).iloc[0, 0]) for w in window)
        return found

    def released(
        self, grain: str, measure: str, start: date, end: date, created_by: str | None = None
    ) -> list[dict[str, Any]]:
        """DACC's restitution rows: count >= threshold only, ordered by start date."""
        params = {"measure": measure, "start": start, "end": end, "created_by": created_by}
        frame = self.fetch(self.sql.released_rows(grain), params)
        return [restitution_row(row) for row in frame.to_dict("records")]

    def late_partitions(self) -> pd.DataFrame:
        """(grain, period_start, last_received) of partitions with measures newer than them."""
        return self.fetch(self.sql.LATE_PARTITIONS)

    def unaggregated_partitions(self, ended_by: date) -> pd.DataFrame:
        """(grain, period_start, last_received) of partitions never materialized that hold measures and whose
        period ended by `ended_by` (history loaded late, periods a stopped scheduler missed)."""
        return self.fetch(self.sql.UNAGGREGATED_PARTITIONS, {"ended_by": ended_by})

    # -- purge -----------------------------------------------------------------
    def purge(self, days: int, measure: str | None = None, now: datetime | None = None) -> dict[str, int]:
        """DESIGN §4.5 in one transaction; returns purged raw measures per measure name."""
        if days < 0:
            raise AggassetsError(f"days must be >= 0 (the age of the raw measures to purge), not {days}")
        params: dict[str, Any] = {"days": min(days, MAX_AGE_DAYS), "measure": measure, "now": now}
        with self.transaction():
            params["now"] = now or self.stamp()  # after any writer lock
            for statement in self.sql.PURGE:
                self.execute(statement, params)
            summary = self.fetch(self.sql.PURGE_SUMMARY)
        return {str(m): int(n) for m, n in summary.itertuples(index=False)}

    # -- events ----------------------------------------------------------------
    def ingest_events(self, path: Path, sha256: str | None = None) -> IntakeResult:
        """Validate an events file (see events_intake) and store it: events, rejected_events, a batch row."""
        validated, dimensions = events_intake.validate_file(Path(path))
        return self.store_events(validated, dimensions, str(path), sha256)

    def store_events(
        self, validated: pa.Table, dimensions: Sequence[str], source: str, sha256: str | None, once: bool = False
    ) -> IntakeResult:
        """One transaction: missing dim_ columns, accepted and rejected rows, the event_batches row
        (`once`: refuse content stored already, see ingest_file)."""
        with self.transaction():
            now = self.stamp()  # after any writer lock
            if once and sha256 is not None:
                self.refuse_seen(sha256, events=True)
            present = set(self.event_dimensions())
            new = [name for name in dimensions if name not in present]
            if len(present) + len(new) > events_intake.MAX_DIMENSIONS:
                raise AggassetsError(
                    f"{source}: its {len(new)} new dimension(s) would make {len(present) + len(new)} event dimensions, "
                    f"over the {events_intake.MAX_DIMENSIONS} the warehouse keeps"
                )
            for name in new:
                self.execute(self.sql.add_event_dimension(name))
            self.stage("staged_events", validated)
            params: dict[str, Any] = {"batch_id": int(self.fetch(self.sql.NEXT_EVENT_BATCH).iloc[0, 0])}
            self.execute(self.sql.insert_events(dimensions), params)
            self.execute(self.sql.INSERT_REJECTED_EVENTS, params)
            counts = self.fetch(self.sql.STAGED_EVENT_COUNTS)
            by_reason = {str(r): int(n) for r, n in counts.itertuples(index=False) if r}
            received = int(counts["n"].sum())
            rejected = sum(by_reason.values())
            self.execute(
                self.sql.INSERT_EVENT_BATCH,
                {
                    **params,
                    "source": str(source),
                    "sha256": sha256,
                    "now": now,
                    "received": received,
                    "accepted": received - rejected,
                    "rejected": rejected,
                },
            )
        ordered = dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0])))
        return IntakeResult(received, received - rejected, rejected, ordered)

    def event_dimensions(self) -> list[str]:
        """Dimension names present in events: lower-case, without the dim_ prefix, sorted."""
        return [str(c).removeprefix("dim_") for c in self.fetch(self.sql.EVENT_DIMENSIONS).iloc[:, 0]]

    def event_loss_counts(self) -> tuple[int, int, int]:
        """(received, accepted, rejected) over every event batch: the first equals the sum of the others."""
        row = self.fetch(self.sql.EVENT_LOSS_COUNTS).iloc[0]
        return int(row.iloc[0]), int(row.iloc[1]), int(row.iloc[2])


def _rows(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """A frame's rows as sorted tuples of plain values (None for missing), to compare across engines."""
    values = frame.astype(object).where(frame.notna(), None)
    return sorted(tuple(v.item() if hasattr(v, "item") else v for v in row) for row in values.itertuples(index=False))
