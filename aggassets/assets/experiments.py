"""Experiment assets, partitioned by experiment id from the catalog: goals from events, then evaluations."""

from collections.abc import Sequence
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetsDefinition,
    Config,
    MaterializeResult,
    MetadataValue,
    StaticPartitionsDefinition,
    asset,
)

from aggassets.errors import AggassetsError
from aggassets.experiments.definition import ExperimentDefinition
from aggassets.experiments.evaluate import Evaluation, evaluate_goals
from aggassets.resources import CatalogResource, WarehouseResource
from aggassets.warehouse.experiments import compute_goals, last_data_day, latest_goals, store_evaluation, store_goals

GROUP = "experiments"
COMPARISON_COLUMNS = [
    "diff", "test_stat", "p_value", "confidence_interval", "standard_error", "degrees_of_freedom",
    "abs_diff", "abs_p_value", "abs_confidence_interval",
]  # fmt: skip
EXPERIMENT_CHECKS = {
    "srm": "Sample ratio mismatch: warns when an SRM check's p-value < 1 - its confidence level.",
    "finite_statistics": "Rows without a NaN reason have finite statistics and p-values in [0, 1].",
}


class ExperimentGoalsConfig(Config):
    """The evaluation date (YYYY-MM-DD); empty: today (UTC). Events are read up to min(date_to, it)."""

    as_of: str = ""


def evaluation_date(text: str) -> date:
    """The configured evaluation date, or today (UTC)."""
    if not text:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise AggassetsError(f"as_of: expected YYYY-MM-DD, got {text!r}") from exc


def per_variant(variants: pd.Series, counts: pd.Series) -> dict[str, int]:
    """{variant: count} for the metadata."""
    return {str(v): int(c) for v, c in zip(variants, counts, strict=True)}


def _number(value: float, digits: int = 4) -> str:
    """A compact cell for the Markdown table."""
    return "" if value is None or not np.isfinite(value) else f"{value:.{digits}g}"


def metrics_markdown(evaluation: Evaluation, experiment: ExperimentDefinition) -> str:
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
    return pd.DataFrame(rows).to_markdown(index=False) if rows else "_no metrics_"


def srm_result(evaluation: Evaluation, experiment: ExperimentDefinition) -> AssetCheckResult:
    """Warn when any SRM check rejects the expected split."""
    by_id = {c.id: c for c in experiment.checks if c.type == "SRM"}
    checks = evaluation.checks[evaluation.checks.check_id.isin(by_id) & (evaluation.checks.variable_id == "p_value")]
    failed, detail = [], {}
    for check_id, p_value in zip(checks.check_id, checks.value, strict=True):
        check = by_id[int(check_id)]
        detail[check.name] = float(p_value)
        if np.isfinite(p_value) and p_value < 1 - check.confidence_level:
            failed.append(check.name)
    return AssetCheckResult(
        check_name="srm", passed=not failed, severity=AssetCheckSeverity.WARN,
        metadata={"p_values": MetadataValue.json(detail), "failed": ", ".join(failed) or "none",
                  "checks": len(by_id)},
    )  # fmt: skip


def finite_result(evaluation: Evaluation, experiment: ExperimentDefinition) -> AssetCheckResult:
    """Every row without a NaN reason has finite statistics (comparisons on treatment rows)."""
    m = evaluation.metrics
    fine = m[m.reason == ""]
    bad = ~np.isfinite(fine[["count", "mean", "std", "sum_value"]].to_numpy(dtype=float)).all(axis=1)
    treated = (fine.exp_variant_id != experiment.control_variant).to_numpy()
    stats = fine[COMPARISON_COLUMNS].to_numpy(dtype=float)
    bad |= treated & ~np.isfinite(stats).all(axis=1)
    p = fine[["p_value", "abs_p_value"]].to_numpy(dtype=float)
    bad |= treated & ((p < 0) | (p > 1)).any(axis=1)
    offending = [f"{m}:{v}" for m, v in zip(fine.metric_id[bad], fine.exp_variant_id[bad], strict=True)]
    return AssetCheckResult(
        check_name="finite_statistics", passed=not offending, severity=AssetCheckSeverity.ERROR,
        metadata={"rows_checked": len(fine), "rows_with_reason": int((m.reason != "").sum()),
                  "offending": ", ".join(offending) or "none"},
    )  # fmt: skip


def build_experiment_assets(experiment_ids: Sequence[str]) -> list[AssetsDefinition]:
    """experiment_goals and experiment_evaluations, one static partition per catalog experiment."""
    partitions = StaticPartitionsDefinition(sorted(experiment_ids))

    @asset(group_name=GROUP, partitions_def=partitions, pool="warehouse", kinds={"duckdb", "postgres"})
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
            "preview": MetadataValue.md(preview.to_markdown(index=False) if len(preview) else "_no goals_"),
        })  # fmt: skip

    @asset(
        group_name=GROUP, partitions_def=partitions, pool="warehouse", deps=[experiment_goals],
        check_specs=[AssetCheckSpec(name, asset="experiment_evaluations", description=text)
                     for name, text in EXPERIMENT_CHECKS.items()],
    )  # fmt: skip
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
                "metrics": MetadataValue.md(metrics_markdown(evaluation, experiment)),
            },
            check_results=[srm_result(evaluation, experiment), finite_result(evaluation, experiment)],
        )

    return [experiment_goals, experiment_evaluations]
