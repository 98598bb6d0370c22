"""Experiment assets, partitioned by experiment id from the catalog: goals from events, then evaluations."""

from collections.abc import Sequence
from datetime import UTC, date, datetime

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    Config,
    MaterializeResult,
    MetadataValue,
    StaticPartitionsDefinition,
    asset,
)

from aggassets.assets.markdown import markdown
from aggassets.checks import experiment_check_specs, finite_result, srm_result
from aggassets.errors import AggassetsError
from aggassets.experiments.evaluate import evaluate_goals
from aggassets.experiments.summary import evaluated_level, goal_exposures, metrics_table, per_variant
from aggassets.resources import WAREHOUSE_KINDS, CatalogResource, WarehouseResource
from aggassets.settings import iso_day
from aggassets.warehouse.experiments import compute_goals, last_data_day, latest_goals, store_evaluation, store_goals

GROUP = "experiments"


class ExperimentGoalsConfig(Config):
    """The evaluation date (YYYY-MM-DD); empty: today (UTC). Events are read up to min(date_to, it)."""

    as_of: str = ""


def evaluation_date(text: str) -> date:
    """The configured evaluation date, or today (UTC)."""
    if not text:
        return datetime.now(UTC).date()
    try:
        return iso_day(text)
    except ValueError as exc:
        raise AggassetsError(f"as_of: expected YYYY-MM-DD, got {text!r}") from exc


def build_experiment_assets(experiment_ids: Sequence[str]) -> list[AssetsDefinition]:
    """experiment_goals and experiment_evaluations, one static partition per catalog experiment."""
    partitions = StaticPartitionsDefinition(sorted(experiment_ids))

    @asset(group_name=GROUP, partitions_def=partitions, pool="warehouse", kinds=WAREHOUSE_KINDS)
    def experiment_goals(
        context: AssetExecutionContext,
        config: ExperimentGoalsConfig,
        catalog: CatalogResource,
        warehouse: WarehouseResource,
    ) -> MaterializeResult:
        """Goals per variant (ep-stats' layout) and delta-method cross products, aggregated from events."""
        experiment = catalog.experiment(context.partition_key)
        as_of = evaluation_date(config.as_of)
        with warehouse.open() as wh:
            goals = compute_goals(wh, experiment, as_of)
            store_goals(wh, goals)
        preview = goals.goals.drop(columns=["exp_id"]).head(30)
        return MaterializeResult(metadata={
            "evaluation_date": str(as_of),
            "data_window": f"{experiment.date_from or '-'} .. {last_data_day(experiment, as_of)}",
            "goal_rows": len(goals.goals), "cross_product_rows": len(goals.cross),
            "exposures": MetadataValue.json(goal_exposures(goals.goals, experiment)),
            "preview": markdown(preview, "_no goals_"),
        })  # fmt: skip

    @asset(
        group_name=GROUP,
        partitions_def=partitions,
        pool="warehouse",
        kinds=WAREHOUSE_KINDS,
        deps=[experiment_goals],
        check_specs=experiment_check_specs(),
    )
    def experiment_evaluations(
        context: AssetExecutionContext, catalog: CatalogResource, warehouse: WarehouseResource
    ) -> MaterializeResult:
        """Metrics, checks and exposures of the latest goals, kept per evaluation date (the history)."""
        experiment = catalog.experiment(context.partition_key)
        with warehouse.open() as wh:
            goals = latest_goals(wh, experiment.id)
            evaluation = evaluate_goals(experiment, goals.goals, goals.cross, as_of=goals.evaluation_date)
            store_evaluation(wh, evaluation, goals.evaluation_date)
        exposures = per_variant(evaluation.exposures.exp_variant_id, evaluation.exposures.exposures)
        return MaterializeResult(
            metadata={
                "evaluation_date": str(goals.evaluation_date),
                "confidence_level": evaluated_level(evaluation, experiment),
                "exposures": MetadataValue.json(exposures),
                "metrics": markdown(metrics_table(evaluation, experiment), "_no metrics_"),
            },
            check_results=[srm_result(evaluation, experiment), finite_result(evaluation, experiment)],
        )

    return [experiment_goals, experiment_evaluations]
