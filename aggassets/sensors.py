"""Sensors: inbox files to ingest, and late measures to re-aggregate."""

from dagster import RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor

from aggassets.jobs import REFRESH_JOBS, ingest_inbox_job
from aggassets.resources import WarehouseResource
from aggassets.settings import inbox_dir
from aggassets.sources.inbox import pending_files


@sensor(
    job=ingest_inbox_job,
    minimum_interval_seconds=30,
    description="Every 30 s: each new file in the inbox folder (AGGASSETS_INBOX) gets one ingest run.",
)
def inbox_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
    """Every 30 s: each new file in the inbox folder (AGGASSETS_INBOX) gets one ingest run."""
    files = pending_files(inbox_dir())
    if not files:
        return SkipReason(f"no measure file in {inbox_dir()}")
    requests = []
    for path in files:
        stat = path.stat()
        requests.append(
            RunRequest(
                run_key=f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}",
                run_config={"ops": {"ingest_inbox_files": {"config": {"files": [str(path)]}}}},
            )
        )
    return SensorResult(run_requests=requests)


def late_run_requests(late: list[tuple[str, str, str]]) -> list[RunRequest]:
    """One run per (grain, partition) that received measures after its last materialization."""
    return [
        RunRequest(
            job_name=REFRESH_JOBS[grain].name, partition_key=period, run_key=f"late:{grain}:{period}:{last_received}"
        )
        for grain, period, last_received in late
    ]


@sensor(
    jobs=list(REFRESH_JOBS.values()),
    minimum_interval_seconds=300,
    description="Every 5 min: re-materialize exactly the partitions (and roll-ups) that got late measures.",
)
def late_measures_sensor(context: SensorEvaluationContext, warehouse: WarehouseResource) -> SensorResult | SkipReason:
    """Every 5 min: re-materialize exactly the partitions (and roll-ups) that got late measures."""
    try:
        with warehouse.open() as wh:
            frame = wh.late_partitions()
    except Exception as exc:  # a busy DuckDB file (a run holds it): try at the next tick
        return SkipReason(f"warehouse not readable now: {exc}")
    if frame.empty:
        return SkipReason("no late measures")
    late = [(str(g), f"{p:%Y-%m-%d}", f"{t:%Y-%m-%dT%H:%M:%S}") for g, p, t in frame.itertuples(index=False)]
    return SensorResult(run_requests=late_run_requests(late))


SENSORS = [inbox_sensor, late_measures_sensor]
