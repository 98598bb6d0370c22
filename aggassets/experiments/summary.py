"""What the experiment assets show in the UI: per-variant exposures and a readable table of the metrics."""

import numpy as np
import pandas as pd

from aggassets.experiments.definition import ExperimentDefinition
from aggassets.experiments.evaluate import Evaluation


def per_variant(variants: pd.Series, counts: pd.Series) -> dict[str, int]:
    """{variant: count}."""
    return {str(v): int(c) for v, c in zip(variants, counts, strict=True)}


def goal_exposures(goals: pd.DataFrame, experiment: ExperimentDefinition) -> dict[str, int]:
    """Exposures per variant of computed goals (their `count(<unit_type>.global.exposure)` rows)."""
    exposures = goals[goals.goal_key == experiment.exposure_ref().key]
    return per_variant(exposures.exp_variant_id, exposures["count"])


def evaluated_level(evaluation: Evaluation, experiment: ExperimentDefinition) -> float:
    """The confidence level the metrics were tested at (a sequential experiment's of its day), else the
    experiment's."""
    return (
        float(evaluation.metrics.confidence_level.iloc[0]) if len(evaluation.metrics) else experiment.confidence_level
    )


def _number(value: float, digits: int = 4) -> str:
    """A compact cell."""
    return "" if value is None or not np.isfinite(value) else f"{value:.{digits}g}"


def metrics_table(evaluation: Evaluation, experiment: ExperimentDefinition) -> pd.DataFrame:
    """One row per metric and variant: mean, differences (relative in %), interval, p-values, significant
    (p below 1 - the confidence level; blank for the control and where p is NaN) and the NaN reason."""
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
    return pd.DataFrame(rows)
