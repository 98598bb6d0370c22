"""Sensors: inbox files to ingest, and late or never aggregated measures to (re-)aggregate."""

import os
import time
from datetime import UTC, date, datetime, timedelta

from dagster import (
    DagsterRunStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from aggassets.errors import AggassetsError
from aggassets.jobs import REFRESH_JOBS, ingest_inbox_job
from aggassets.partitions import PARTITIONS_BY_GRAIN
from aggassets.resources import WarehouseResource
from aggassets.runs import fail_orphaned_cli_runs
from aggassets.settings import inbox_dir
from aggassets.sources import inbox
from aggassets.warehouse.values import GRAINS, consecutive_runs

ATTEMPT_TAG = "aggassets/attempt_of"  # the work a run does (a file, a late partition), for its retries
_ACTIVE = (DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED)
_FAILED = (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)


# After a failed run, the work is retried at the next tick; after n >= 2 failures in a row it waits
# 60 s * 2^(n-2), at most an hour, since the last one ended (a catalog broken for an hour: 8 runs, not 120).
RETRY_WAIT_SECONDS = 60.0
RETRY_WAIT_MAX_SECONDS = 3600.0


def now() -> float:
    """The clock the retry waits are measured by (seconds since the epoch)."""
    return time.time()


def retry_wait(failed: int) -> float:
    """Seconds to wait after the last of `failed` failed runs of one work before the next try."""
    return 0.0 if failed < 2 else min(RETRY_WAIT_SECONDS * 2 ** (failed - 2), RETRY_WAIT_MAX_SECONDS)


def next_run_key(context: SensorEvaluationContext, job_name: str, work: str) -> str | None:
    """The run key of the next run for `work` (tag ATTEMPT_TAG), None while one is queued or running, or
    while a failed one waits (retry_wait). Dagster never launches a run key twice, so after failed or
    cancelled runs (a held DuckDB file, a broken catalog) the key counts them: the work is retried, not
    skipped for good."""
    records = context.instance.get_run_records(filters=RunsFilter(job_name=job_name, tags={ATTEMPT_TAG: work}))
    if any(r.dagster_run.status in _ACTIVE for r in records):
        return None
    failed = [r for r in records if r.dagster_run.status in _FAILED]
    if not failed:
        return work
    last_end = max(r.end_time or r.update_timestamp.timestamp() for r in failed)
    if now() - last_end < retry_wait(len(failed)):
        return None
    return f"{work}:retry{len(failed)}"


def _fail_orphaned_cli_runs(context: SensorEvaluationContext) -> None:
    """Free the pool slot of runs whose `aggassets` command was killed outright on this host (runs.py)."""
    for run_id in fail_orphaned_cli_runs(context.instance):
        context.log.warning(f"run {run_id}: its aggassets command is gone (killed?); marked failed")


@sensor(
    job=ingest_inbox_job,
    minimum_interval_seconds=30,
    description="Every 30 s: each new file in the inbox folder (AGGASSETS_INBOX) gets one ingest run.",
)
def inbox_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
    """Every 30 s: each new file in the inbox folder (AGGASSETS_INBOX) gets one ingest run."""
    _fail_orphaned_cli_runs(context)
    if not inbox_dir().is_dir():  # a mistyped AGGASSETS_INBOX must not look like an empty inbox
        return SkipReason(f"the inbox folder {inbox_dir()} does not exist: create it, or check AGGASSETS_INBOX")
    for path, reason in inbox.set_aside_unreadable(inbox_dir()):
        context.log.warning(f"{os.fsencode(path)!r}: {reason}; moved to failed/")
    files = inbox.pending_files(inbox_dir())
    if not files:
        waiting = len(inbox.measure_files(inbox_dir()))
        return SkipReason(
            f"{waiting} measure file(s) in {inbox_dir()} still changing: each is taken once unchanged for "
            f"{inbox.SETTLE_SECONDS:g} s ({inbox.MID_LINE_SETTLE_SECONDS:g} s for a file ending mid-line or empty)"
            if waiting
            else f"no measure file ({', '.join(inbox.SUFFIXES)}) in {inbox_dir()}"
        )
    requests = []
    for path in files:
        # the inode too: another file of the same name, size and time is new work; the change time too: a
        # file moved back from processed/ (same inode and times otherwise) is new work (refused as ingested)
        stat = path.stat()
        work = f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}:{stat.st_ctime_ns}"
        if (key := next_run_key(context, ingest_inbox_job.name, work)) is not None:
            config = {"ops": {"ingest_inbox_files": {"config": {"files": [str(path)]}}}}
            requests.append(RunRequest(run_key=key, run_config=config, tags={ATTEMPT_TAG: work}))
    if not requests:
        return SkipReason("every inbox file has a run in progress, or waits to retry a failed one")
    return SensorResult(run_requests=requests)


def late_ranges(late: list[tuple[str, str, str]]) -> list[tuple[str, str, str, str]]:
    """(grain, first, last, last received) of each run of consecutive late partitions, days first: the late
    partitions exactly, in as few single-run backfills as there are gaps."""
    received = {(grain, date.fromisoformat(period)): last for grain, period, last in late}
    ranges = []
    for grain in GRAINS:
        for first, last in consecutive_runs(grain, [p for g, p in received if g == grain]):
            newest = max(t for (g, p), t in received.items() if g == grain and first <= p <= last)
            ranges.append((grain, first.isoformat(), last.isoformat(), newest))
    return ranges


def late_run_requests(context: SensorEvaluationContext, late: list[tuple[str, str, str]]) -> list[RunRequest]:
    """One single-run backfill per range of consecutive partitions that received measures after their last
    materialization (none while one is in progress; failed ones retried)."""
    requests = []
    for grain, first, last, newest in late_ranges(late):
        job_name, work = REFRESH_JOBS[grain].name, f"late:{grain}:{first}...{last}:{newest}"
        if (key := next_run_key(context, job_name, work)) is None:
            continue
        tags = {ATTEMPT_TAG: work}
        if first == last:
            requests.append(RunRequest(job_name=job_name, partition_key=first, run_key=key, tags=tags))
        else:
            tags |= {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
            requests.append(RunRequest(job_name=job_name, run_key=key, tags=tags))
    return requests


def unaggregated_cutoff() -> date:
    """Periods ended by this date (yesterday, UTC) have had their scheduled run: a partition of theirs never
    materialized that holds measures is work the schedules will not do (history loaded late, missed ticks)."""
    return datetime.now(UTC).date() - timedelta(days=1)


@sensor(
    jobs=list(REFRESH_JOBS.values()),
    minimum_interval_seconds=300,
    description="Every 5 min: materialize exactly the partitions (and roll-ups) holding late or unaggregated measures.",
)
def late_measures_sensor(context: SensorEvaluationContext, warehouse: WarehouseResource) -> SensorResult | SkipReason:
    """Every 5 min: materialize exactly the partitions (and roll-ups) holding late or unaggregated measures."""
    _fail_orphaned_cli_runs(context)
    try:
        with warehouse.open(in_run=False) as wh:
            frames = [wh.late_partitions(), wh.unaggregated_partitions(unaggregated_cutoff())]
    except AggassetsError as exc:  # a DuckDB file a run holds, PostgreSQL unreachable: try at the next tick
        return SkipReason(f"warehouse not readable now: {exc}")
    first = {grain: partitions.get_first_partition_key() for grain, partitions in PARTITIONS_BY_GRAIN.items()}
    late = [
        (str(g), f"{p:%Y-%m-%d}", f"{t:%Y-%m-%dT%H:%M:%S}")
        for frame in frames
        for g, p, t in frame.itertuples(index=False)
        if first[str(g)] is not None and f"{p:%Y-%m-%d}" >= first[str(g)]  # days before the start: no partition
    ]
    if not late:
        return SkipReason("no late or unaggregated measures")
    requests = late_run_requests(context, late)
    if not requests:
        return SkipReason("late partitions have runs in progress, or wait to retry failed ones")
    return SensorResult(run_requests=requests)


SENSORS = [inbox_sensor, late_measures_sensor]
