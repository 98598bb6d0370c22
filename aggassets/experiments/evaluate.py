"""Evaluate one experiment from goals aggregated per variant: the equivalent of ep-stats' evaluate_agg."""

import datetime
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from aggassets.errors import AggassetsError
from aggassets.experiments.comparison import ComparisonInput, compare
from aggassets.experiments.compile import compile_metrics, cross_pairs, delta_sums, metric_sums
from aggassets.experiments.definition import ExperimentDefinition
from aggassets.experiments.expressions import GoalRef, evaluate, goal_refs
from aggassets.experiments.goals import GoalTable, build_cross_table, build_goal_table
from aggassets.stats.checks import srm_test, sum_ratio_test
from aggassets.stats.ratio import MetricMoments, delta_moments, mean_moments
from aggassets.stats.sequential import sequential_confidence_level

EPSTATS_METRIC_COLUMNS = [
    "exp_id", "metric_id", "metric_name", "exp_variant_id", "count", "mean", "std", "sum_value",
    "confidence_level", "diff", "test_stat", "p_value", "confidence_interval", "standard_error",
    "degrees_of_freedom", "minimum_effect", "sample_size", "required_sample_size", "power",
    "false_positive_risk",
]  # fmt: skip
METRIC_COLUMNS = [*EPSTATS_METRIC_COLUMNS, "abs_diff", "abs_confidence_interval", "abs_p_value", "reason"]
CHECK_COLUMNS = ["exp_id", "check_id", "check_name", "variable_id", "value"]
EXPOSURE_COLUMNS = ["exp_id", "exp_variant_id", "exposures"]


@dataclass(frozen=True)
class Evaluation:
    """Metrics, checks and exposures frames of one evaluated experiment."""

    exp_id: str
    unit_type: str
    metrics: pd.DataFrame
    checks: pd.DataFrame
    exposures: pd.DataFrame


def goal_refs_needed(experiment: ExperimentDefinition) -> list[GoalRef]:
    """Every goal reference the evaluation reads: metrics, checks and the exposures."""
    found: dict[str, GoalRef] = {}
    exprs = [e for m in experiment.metrics for e in m.expressions(experiment.unit_type)]
    exprs += [e for c in experiment.checks for e in experiment.check_expressions(c) if e is not None]
    for expr in exprs:
        for ref in goal_refs(expr):
            found.setdefault(ref.key, ref)
    found.setdefault(experiment.exposure_ref().key, experiment.exposure_ref())
    return list(found.values())


def srm_p_values(checks: pd.DataFrame, experiment: ExperimentDefinition) -> dict[str, float]:
    """Each SRM check's p-value by name. `checks`: an evaluation's check rows (CHECK_COLUMNS)."""
    by_id = {c.id: c for c in experiment.checks if c.type == "SRM"}
    rows = checks[checks.check_id.isin(by_id) & (checks.variable_id == "p_value")]
    return {by_id[int(i)].name: float(p) for i, p in zip(rows.check_id, rows.value, strict=True)}


def failed_srm_checks(checks: pd.DataFrame, experiment: ExperimentDefinition) -> dict[str, float]:
    """The SRM checks that reject the expected split (p-value < 1 - the check's confidence level): name ->
    p-value."""
    level = {c.name: c.confidence_level for c in experiment.checks if c.type == "SRM"}
    return {n: p for n, p in srm_p_values(checks, experiment).items() if np.isfinite(p) and p < 1 - level[n]}


def srm_warnings(checks: pd.DataFrame, experiment: ExperimentDefinition) -> list[str]:
    """One line per failed SRM check, for the commands' stderr (the metrics are printed all the same)."""
    return [
        f"SRM check {name!r} failed (p-value {p:.3g}): the variants' exposures do not follow the expected "
        "split, so the metrics may be biased"
        for name, p in failed_srm_checks(checks, experiment).items()
    ]


def per_unit_variance_warnings(experiment: ExperimentDefinition) -> list[str]:
    """Metrics whose denominator is not the exposures: without cross products their variance takes each
    denominator unit (a view, say) as an observation, ep-stats' treatment, which is right only when that
    is the unit; a simulation found 23% false positives at 5% for clicks per view (docs/experiments.md)."""
    exposures = [(experiment.exposure_ref().key, 1.0)]
    out = []
    for metric, compiled in zip(experiment.metrics, compile_metrics(experiment), strict=True):
        form = compiled.denominator_form
        if form is None or form.constant != 0 or [(g.key, c) for g, c in form.terms] != exposures:
            out.append(
                f"metric {metric.id} ({metric.name}): its denominator is not the exposures; without cross "
                "products its variance is ep-stats' (each denominator unit an observation) and its p-value "
                "can be far too small or too large: give --cross for the delta method"
            )
    return out


def cross_products_needed(experiment: ExperimentDefinition) -> list[tuple[GoalRef, GoalRef]]:
    """Goal pairs (left.key < right.key) whose Σ_units left·right the delta method needs (see docs)."""
    # every metric with linear nominator and denominator: nominator x denominator, denominator x
    # denominator and nominator x nominator goals (a goal with itself is read from the goals' squares)
    pairs: dict[tuple[str, str], tuple[GoalRef, GoalRef]] = {}
    for metric in compile_metrics(experiment):
        for a, b in cross_pairs(metric):
            pairs.setdefault((a.key, b.key), (a, b))
    return [pairs[k] for k in sorted(pairs)]


def _moments_and_sizes(
    experiment: ExperimentDefinition, table: GoalTable, cross: pd.DataFrame | None, compat: bool
) -> tuple[np.ndarray, np.ndarray, MetricMoments, np.ndarray]:
    """Denominator and nominator totals, moments and sample sizes of every metric and variant."""
    metrics = compile_metrics(experiment)
    sums = metric_sums(metrics, table, compat)
    moments = mean_moments(sums.count, sums.sum_value, sums.sum_sqr_value)
    counts_units = np.array([m.counts_units for m in metrics], dtype=bool)[:, None]
    sample_size = np.where(counts_units, sums.count, np.nan)
    if cross is not None and metrics:
        cross_table = build_cross_table(cross, table.variants)
        with_goals = np.asarray(sums.count, dtype=float).reshape(len(metrics), -1).max(axis=0) > 0
        if absent := [
            v for v, u, g in zip(table.variants, cross_table.units, with_goals, strict=True) if np.isnan(u) and g
        ]:
            raise AggassetsError(f"cross products: no rows for variant(s) {', '.join(absent)}, which have goals")
        ready, ratio_sums = delta_sums(metrics, sums, table, cross_table)
        delta = delta_moments(ratio_sums)
        use = ready[:, None]
        moments = MetricMoments(*(np.where(use, getattr(delta, f), getattr(moments, f)) for f in vars(moments)))
        sample_size = np.where(use, ratio_sums.units, sample_size)
    return sums.count, sums.sum_value, moments, sample_size


def _metrics_frame(
    experiment: ExperimentDefinition, table: GoalTable, cross: pd.DataFrame | None, level: float, compat: bool
) -> pd.DataFrame:
    """The metrics frame, one row per metric and variant, in definition then variant order."""
    if not experiment.metrics:
        return pd.DataFrame(columns=METRIC_COLUMNS)
    count, sum_value, moments, sample_size = _moments_and_sizes(experiment, table, cross, compat)
    effects = np.array([m.minimum_effect or np.nan for m in experiment.metrics], dtype=float)
    control = table.variants.index(experiment.control_variant)
    x = ComparisonInput(
        count, sum_value, moments, sample_size, effects, control, level, experiment.null_hypothesis_rate
    )
    columns = compare(x, compat)
    n_metrics, n_variants = count.shape
    frame = pd.DataFrame(
        {
            "exp_id": experiment.id,
            "metric_id": np.repeat([m.id for m in experiment.metrics], n_variants),
            "metric_name": np.repeat([m.name for m in experiment.metrics], n_variants),
            "exp_variant_id": np.tile(table.variants, n_metrics),
            "count": count.ravel(),
            "sum_value": sum_value.ravel(),
            "confidence_level": level,
            **{k: np.ravel(v) for k, v in columns.items()},
        }
    )
    return frame[METRIC_COLUMNS]


def _checks_frame(experiment: ExperimentDefinition, table: GoalTable) -> pd.DataFrame:
    """SRM and SumRatio checks in ep-stats' long layout (variable_id, value)."""
    rows: list[tuple[object, ...]] = []
    for check in experiment.checks:
        nominator, denominator = experiment.check_expressions(check)
        den = evaluate(denominator, table.sums)
        if check.type == "SRM":
            weights = _weights(experiment, table.variants)
            test = srm_test(den, weights)
            values = {"p_value": test.p_value, "test_stat": test.test_stat}
        else:
            ratio = sum_ratio_test(evaluate(nominator, table.sums), den)  # type: ignore[arg-type]
            values = {"sum_ratio": ratio.sum_ratio, "max_sum_ratio": check.max_sum_ratio}
            values |= {"p_value": ratio.p_value, "test_stat": ratio.test_stat}
        values["confidence_level"] = check.confidence_level
        rows += [(experiment.id, check.id, check.name, k, float(v)) for k, v in values.items()]
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)


def _weights(experiment: ExperimentDefinition, variants: tuple[str, ...]) -> np.ndarray | None:
    """The configured traffic weights in variant order (None: equal split)."""
    if experiment.traffic_weights is None:
        return None
    missing = [v for v in variants if v not in experiment.traffic_weights]
    if missing:
        raise AggassetsError(f"traffic_weights has no weight for variant(s): {', '.join(missing)}")
    return np.array([experiment.traffic_weights[v] for v in variants], dtype=float)


def evaluate_goals(
    experiment: ExperimentDefinition,
    goals: pd.DataFrame,
    cross: pd.DataFrame | None = None,
    as_of: datetime.date | None = None,
    compat: bool = False,
) -> Evaluation:
    """Evaluate metrics, checks and exposures from aggregated goals (see docs/experiments.md)."""
    # as_of (default: the definition's date_for, else today) sets the sequential confidence level and
    # the last day of data read; cross switches ratio metrics to the delta method with covariance;
    # compat reproduces ep-stats 2.5.10 exactly, faults included
    as_of = as_of or experiment.date_for or datetime.datetime.now(datetime.UTC).date()
    refs = goal_refs_needed(experiment)
    table = build_goal_table(experiment, goals, refs, as_of, literal_dimensions=compat)
    level = sequential_confidence_level(experiment.confidence_level, experiment.date_from, experiment.date_to, as_of)
    exposures = table.sums(experiment.exposure_ref())
    exposures_frame = pd.DataFrame(
        {
            "exp_id": experiment.id,
            "exp_variant_id": list(table.variants),
            "exposures": np.rint(exposures).astype(np.int64),
        }
    )
    # figures beyond float64's range come out NaN or infinite and are reported with a reason (no numpy warning)
    with np.errstate(all="ignore"):
        metrics, checks = _metrics_frame(experiment, table, cross, level, compat), _checks_frame(experiment, table)
    return Evaluation(experiment.id, experiment.unit_type, metrics, checks, exposures_frame[EXPOSURE_COLUMNS])


def _json_number(value: object) -> object:
    """A JSON-safe scalar: NaN and infinities become None, numpy scalars plain Python."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


_REST_STATS = [
    "exp_variant_id", "diff", "mean", "std", "sum_value", "p_value", "confidence_interval", "confidence_level",
    "sample_size", "required_sample_size", "power", "false_positive_risk", "count", "test_stat",
    "standard_error", "degrees_of_freedom", "minimum_effect", "abs_diff", "abs_confidence_interval",
    "abs_p_value", "reason",
]  # fmt: skip


def to_rest_json(evaluation: Evaluation) -> dict[str, object]:
    """ep-stats' REST result shape (id, metrics, checks, exposure), null instead of NaN."""
    metrics = []
    for metric_id, rows in evaluation.metrics.groupby("metric_id", sort=False):
        stats = [{k: _json_number(r[k]) for k in _REST_STATS} for r in rows.to_dict("records")]
        metrics.append({"id": _json_number(metric_id), "name": rows["metric_name"].iloc[0], "stats": stats})
    checks = []
    for check_id, rows in evaluation.checks.groupby("check_id", sort=False):
        stats = [{"variable_id": r["variable_id"], "value": _json_number(r["value"])} for r in rows.to_dict("records")]
        checks.append({"id": _json_number(check_id), "name": rows["check_name"].iloc[0], "stats": stats})
    exposure = [
        {"exp_variant_id": r["exp_variant_id"], "count": _json_number(r["exposures"])}
        for r in evaluation.exposures.to_dict("records")
    ]
    return {
        "id": evaluation.exp_id,
        "metrics": metrics,
        "checks": checks,
        "exposure": {"unit_type": evaluation.unit_type, "stats": exposure},
    }
