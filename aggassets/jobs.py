"""Jobs: partitioned refresh jobs per grain, the purge job and the inbox intake job."""

import os
from typing import Any

from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetSelection,
    Config,
    OpExecutionContext,
    PartitionsDefinition,
    define_asset_job,
    job,
    op,
)

from aggassets.checks import STORED_CHECK
from aggassets.partitions import daily_partitions, monthly_partitions, weekly_partitions
from aggassets.resources import CatalogResource, WarehouseResource
from aggassets.settings import inbox_dir, partitions_start
from aggassets.sources.inbox import inbox_file, process_file
from aggassets.warehouse.values import AGGREGATE_TABLES

daily_refresh_job = define_asset_job(
    "daily_refresh_job",
    selection=["raw_measures", "daily_aggregates"],
    partitions_def=daily_partitions,
    description="Refresh raw measures and daily aggregates for daily partitions.",
)
weekly_refresh_job = define_asset_job(
    "weekly_refresh_job",
    selection=["weekly_aggregates"],
    partitions_def=weekly_partitions,
    description="Refresh weekly (Monday) aggregates for weekly partitions.",
)
monthly_refresh_job = define_asset_job(
    "monthly_refresh_job",
    selection=["monthly_aggregates"],
    partitions_def=monthly_partitions,
    description="Refresh monthly aggregates for monthly partitions.",
)
REFRESH_JOBS = {"day": daily_refresh_job, "week": weekly_refresh_job, "month": monthly_refresh_job}
stored_checks_job = define_asset_job(
    "stored_checks_job",
    selection=AssetSelection.checks(
        *(AssetCheckKey(AssetKey(table), STORED_CHECK) for table in AGGREGATE_TABLES.values())
    ),
    description="Check the stored daily, weekly and monthly aggregate tables as they are now (no refresh).",
)


class PurgeConfig(Config):
    """Purge settings: age in days (DACC's default 90) and an optional measure name."""

    days: int = 90
    measure: str | None = None


@op(pool="warehouse")
def purge_raw_measures(
    context: OpExecutionContext, config: PurgeConfig, catalog: CatalogResource, warehouse: WarehouseResource
) -> None:
    """Purge old raw measures into sealed moments (DESIGN §4.5)."""
    measures = catalog.measures()
    if config.measure is not None:
        measures.get(config.measure)
    with warehouse.open(measures) as wh:
        purged = wh.purge(config.days, config.measure)
    context.log.info(f"purged {sum(purged.values())} raw measures: {purged}")


@job(description="Purge raw measures older than N days (default 90) into sealed moments.")
def purge_job() -> None:
    """Purge raw measures older than N days into sealed moments."""
    purge_raw_measures()


class InboxConfig(Config):
    """The inbox files to ingest (absolute paths)."""

    files: list[str]


@op(pool="warehouse")
def ingest_inbox_files(
    context: OpExecutionContext, config: InboxConfig, catalog: CatalogResource, warehouse: WarehouseResource
) -> None:
    """Ingest inbox files once each, then move them to processed/ or failed/."""
    measures = catalog.measures()
    paths = [inbox_file(name, inbox_dir()) for name in config.files]  # every one checked before any is read
    with warehouse.open(measures, create=True) as wh:
        for name, path in zip(config.files, paths, strict=True):
            if not os.path.lexists(path):
                context.log.info(f"{name}: already moved, skipped")
                continue
            report = process_file(wh, path, measures, partitions_start())
            # not ingested by this run (failed/, processed/ as a copy of stored content, or left to settle)
            unstored = report.get("status") in ("failed", "already_ingested", "still_changing")
            (context.log.warning if unstored else context.log.info)(str(report))


@job(description="Ingest measure files dropped in the inbox folder.")
def ingest_inbox_job() -> None:
    """Ingest measure files dropped in the inbox folder."""
    ingest_inbox_files()


def build_experiment_job(partitions: PartitionsDefinition) -> Any:  # an unresolved asset job
    """Goals then evaluation of one experiment (a partition), with `as_of` on experiment_goals."""
    return define_asset_job(
        "experiment_evaluation_job",
        selection=["experiment_goals", "experiment_evaluations"],
        partitions_def=partitions,
        description="Aggregate an experiment's goals from events and evaluate them (history kept per date).",
    )
