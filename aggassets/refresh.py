"""Refresh a date range: one in-process single-run backfill per grain, recorded in the instance."""

from datetime import date, timedelta
from typing import Any

from dagster import Definitions, in_process_executor, materialize

from aggassets.assets.measures import MEASURE_ASSETS, STORED_CHECKS
from aggassets.errors import AggassetsError
from aggassets.jobs import REFRESH_JOBS
from aggassets.partitions import PARTITIONS_BY_GRAIN
from aggassets.resources import CatalogResource, WarehouseResource
from aggassets.runs import QUIET, cli_run_tags, failure_causes, instance_for_runs
from aggassets.warehouse.values import period_start


def overlapping_keys(grain: str, start: date, end: date) -> list[str]:
    """Partition keys of `grain` whose period overlaps [start, end) (existing partitions only)."""
    if end <= start:
        raise AggassetsError(f"--end ({end}) must be after --start ({start})")
    keys = PARTITIONS_BY_GRAIN[grain].get_partition_keys()
    last = (end - timedelta(days=1)).isoformat()
    first = period_start(grain, start).isoformat()
    return [k for k in keys if first <= k <= last]


def _resources(warehouse_url: str, definitions_dir: str) -> dict[str, Any]:
    """The assets' resources for an in-process run."""
    return {
        "warehouse": WarehouseResource(url=warehouse_url),
        "catalog": CatalogResource(definitions_dir=definitions_dir),
    }


def materialize_definitions(warehouse_url: str, definitions_dir: str) -> str:
    """Materialize measure_definitions (the catalog synced to the warehouse); the run id."""
    result = materialize(
        MEASURE_ASSETS,
        selection=["measure_definitions"],
        resources=_resources(warehouse_url, definitions_dir),
        run_config=QUIET,
        tags=cli_run_tags(),
        instance=instance_for_runs(),
        raise_on_error=False,
    )
    if not result.success:
        raise AggassetsError(f"measure_definitions failed (run {result.run_id}): {failure_causes(result)}")
    return result.run_id


def refresh_range(start: date, end: date, warehouse_url: str, definitions_dir: str) -> list[dict[str, Any]]:
    """Materialize raw + daily, weekly and monthly assets over [start, end): one run per grain."""
    refresh_definitions = Definitions(  # the code location's jobs: the stored-rows checks run after the assets
        assets=MEASURE_ASSETS,
        asset_checks=STORED_CHECKS,
        jobs=list(REFRESH_JOBS.values()),
        resources=_resources(warehouse_url, definitions_dir),
        executor=in_process_executor,
    )
    instance = instance_for_runs()
    report = []
    for grain, job_def in REFRESH_JOBS.items():
        keys = overlapping_keys(grain, start, end)
        if not keys:
            report.append({"grain": grain, "partitions": 0, "skipped": "no complete partition in range"})
            continue
        tags = {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}
        tags |= cli_run_tags()
        job = refresh_definitions.resolve_job_def(job_def.name)  # the UI lists the run under its job
        result = job.execute_in_process(run_config=QUIET, tags=tags, instance=instance, raise_on_error=False)
        if not result.success:
            raise AggassetsError(f"{grain} refresh failed (run {result.run_id}): {failure_causes(result)}")
        report.append(
            {"grain": grain, "partitions": len(keys), "first": keys[0], "last": keys[-1], "run_id": result.run_id}
        )
    return report
