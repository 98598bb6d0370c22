"""Experiment assets, partitioned by experiment id from the catalog: goals from events, then evaluations."""

from collections.abc import Sequence
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
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
from aggassets.experiments.definition import ExperimentDefinition
from aggassets.experiments.evaluate import Evaluation, evaluate_goals
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


def per_variant(variants: pd.Series, counts: pd.Series) -> dict[str, int]:
    """{variant: count} for the metadata."""
    return {str(v): int(c) for v, c in zip(variants, counts, strict=True)}


def _number(value: float, digits: int = 4) -> str:
    """A compact cell for the Markdown table."""
    return "" if value is None or not np.isfinite(value) else f"{value:.{digits}g}"


def metrics_markdown(evaluation: Evaluation, experiment: ExperimentDefinition) -> MetadataValue:
    """One Markdown row per metric and variant: mean, differences, interval, p-value, significance."""
    rows = []
    for r in evaluation.metrics.to_dict("records"):
        control = r["exp_variant_id"] == experiment.control_variant
        alpha = 1 - r["confidence_level"]
        significant = "" if control or not np.isfinite(r["p_value"]) else ("yes" if r["p_value"] < alpha else "no")
        rows.append({
            "metric": r["metric_name"], "variant": r["exp_variant_id"] + (" (control)" if control else ""),
            "mean": _number(r["mean"]), "diff %": _number(100 * r["diff"], 3),
            "CI ± %": _number(100 * r["confidence_interval"], 3), "p-value": _number(r["p_value"], 3),
            "abs diff": _number(r["abs_diff"]), "abs p-value": _number(r["abs_p_value"], 3),
            "significant": significant, "note": r["reason"],
        })  # fmt: skip
    return markdown(pd.DataFrame(rows), "_no metrics_")


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
        exposures = goals.goals[goals.goals.goal_key == experiment.exposure_ref().key]
        preview = goals.goals.drop(columns=["exp_id"]).head(30)
        return MaterializeResult(metadata={
            "evaluation_date": str(as_of),
            "data_window": f"{experiment.date_from or '-'} .. {last_data_day(experiment, as_of)}",
            "goal_rows": len(goals.goals), "cross_product_rows": len(goals.cross),
            "exposures": MetadataValue.json(per_variant(exposures.exp_variant_id, exposures["count"])),
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
                "confidence_level": float(evaluation.metrics.confidence_level.iloc[0])
                if len(evaluation.metrics)
                else experiment.confidence_level,
                "exposures": MetadataValue.json(exposures),
                "metrics": metrics_markdown(evaluation, experiment),
            },
            check_results=[srm_result(evaluation, experiment), finite_result(evaluation, experiment)],
        )

    return [experiment_goals, experiment_evaluations]
