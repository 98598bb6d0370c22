"""Measure assets: the catalog, raw measures and daily / weekly / monthly aggregates (thin)."""

import warnings
from collections.abc import Callable
from datetime import date
from typing import Any

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetChecksDefinition,
    AssetDep,
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    BetaWarning,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
    asset_check,
)

from aggassets.assets.markdown import markdown
from aggassets.checks import (
    STORED_CHECK,
    STORED_CHECK_TEXT,
    aggregate_check_results,
    aggregate_check_specs,
    no_loss_result,
    no_loss_spec,
    stored_check_result,
)
from aggassets.partitions import PARTITIONS_BY_GRAIN, daily_partitions
from aggassets.resources import WAREHOUSE_KINDS, CatalogResource, WarehouseResource
from aggassets.warehouse.values import AGGREGATE_TABLES

GROUP = "measures"


def window(context: AssetExecutionContext) -> tuple[date, date]:
    """The run's partition window as dates [start, end)."""
    tw = context.partition_time_window
    return tw.start.date(), tw.end.date()


def single_run_asset(**kwargs: Any) -> Callable[[Callable[..., Any]], AssetsDefinition]:
    """@asset with BackfillPolicy.single_run() (DESIGN §3), without Dagster's beta-parameter warning on
    every import (it would be printed by every command, run and `dagster dev`)."""

    def decorate(fn: Callable[..., Any]) -> AssetsDefinition:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=BetaWarning)
            return asset(backfill_policy=BackfillPolicy.single_run(), kinds=WAREHOUSE_KINDS, **kwargs)(fn)

    return decorate


def daily_dep(name: str) -> AssetDep:
    """A dep on a daily asset that tolerates days before the partitions start: the first week and month
    begin before it (partitions.py), and a backfill of them must not wait for days that do not exist."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=BetaWarning)
        mapping = TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True)
    return AssetDep(name, partition_mapping=mapping)


@asset(group_name=GROUP, pool="warehouse", kinds=WAREHOUSE_KINDS)
def measure_definitions(catalog: CatalogResource, warehouse: WarehouseResource) -> MaterializeResult:
    """The measure catalog (definitions/measures.json), validated and synced to the warehouse."""
    measures = catalog.measures()
    with warehouse.open(measures, create=True):
        pass
    frame = pd.DataFrame(
        [(m.name, m.aggregation_period, m.aggregation_threshold, m.with_quartiles) for m in measures.measures],
        columns=["name", "period", "threshold", "quartiles"],
    )
    return MaterializeResult(metadata={"measures": len(frame), "preview": markdown(frame)})


@single_run_asset(
    group_name=GROUP,
    partitions_def=daily_partitions,
    pool="warehouse",
    deps=[measure_definitions],
    check_specs=[no_loss_spec()],
)
def raw_measures(
    context: AssetExecutionContext, catalog: CatalogResource, warehouse: WarehouseResource
) -> MaterializeResult:
    """Accepted raw measures of the window (validated at intake), with rejected counts by reason."""
    start, end = window(context)
    with warehouse.open(catalog.measures()) as wh:
        accepted = wh.raw_window_counts(start, end)
        rejected = wh.rejected_window_counts(start, end)
        rejected_ever = wh.rejected_counts()
        received, ok, ko = wh.loss_counts()
    frame = pd.DataFrame(
        [(m, stored + purged, purged) for m, (stored, purged) in sorted(accepted.items())],
        columns=["measure", "accepted", "purged_into_sealed_moments"],
    )
    return MaterializeResult(
        metadata={
            "window": f"{start} .. {end}",
            "accepted": int(frame["accepted"].sum()),
            "accepted_purged_into_sealed_moments": int(frame["purged_into_sealed_moments"].sum()),
            "rejected_received_in_window": sum(rejected.values()),
            "rejected_by_reason": MetadataValue.json(rejected),
            "rejected_by_reason_all_batches": MetadataValue.json(rejected_ever),
            "preview": markdown(frame),
        },
        check_results=[no_loss_result(received, ok, ko)],
    )


def build_aggregate_asset(grain: str, description: str) -> AssetsDefinition:
    """One time-partitioned aggregate asset for `grain`, with its checks."""
    name = AGGREGATE_TABLES[grain]
    deps = [daily_dep("raw_measures")] + ([daily_dep("daily_aggregates")] if grain != "day" else [])

    @single_run_asset(
        name=name,
        group_name=GROUP,
        partitions_def=PARTITIONS_BY_GRAIN[grain],
        pool="warehouse",
        deps=deps,
        check_specs=aggregate_check_specs(name),
        description=description,
    )
    def _aggregate(
        context: AssetExecutionContext, catalog: CatalogResource, warehouse: WarehouseResource
    ) -> MaterializeResult:
        start, end = window(context)
        with warehouse.open(catalog.measures()) as wh:
            result = wh.refresh(grain, start, end, checks=True)
        return MaterializeResult(
            metadata={
                "window": f"{start} .. {end}",
                "rows": result.rows,
                "released_rows": result.released,
                "suppressed_rows": result.suppressed,
                "preview": markdown(result.preview),
            },
            check_results=aggregate_check_results(result.violations or {}, f"{start} .. {end}"),
        )

    return _aggregate


daily_aggregates = build_aggregate_asset(
    "day", "Daily aggregates of day measures (count, sums, min/max/avg/std, quartiles where defined)."
)
weekly_aggregates = build_aggregate_asset(
    "week", "Weekly (Monday) aggregates of week measures and of day measures rolled up."
)
monthly_aggregates = build_aggregate_asset(
    "month", "Monthly aggregates of month measures and of day measures rolled up."
)

MEASURE_ASSETS = [measure_definitions, raw_measures, daily_aggregates, weekly_aggregates, monthly_aggregates]


def build_stored_check(grain: str) -> AssetChecksDefinition:
    """The whole-table check of one aggregate asset, executable on its own (the others run in the asset)."""

    @asset_check(asset=AGGREGATE_TABLES[grain], name=STORED_CHECK, description=STORED_CHECK_TEXT, pool="warehouse")
    def _stored(catalog: CatalogResource, warehouse: WarehouseResource) -> AssetCheckResult:
        with warehouse.open(catalog.measures()) as wh:
            return stored_check_result(wh.stored_check_violations(grain))

    return _stored


STORED_CHECKS = [build_stored_check(grain) for grain in AGGREGATE_TABLES]
