"""Asset checks: their specs (names and UI texts) and their results, from what an asset just computed.

The checks run inside the asset that computes them (its window, in its transaction); see the README.
"""

import numpy as np
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, MetadataValue

from aggassets.experiments.definition import ExperimentDefinition
from aggassets.experiments.evaluate import Evaluation, failed_srm_checks, srm_p_values

AGGREGATE_CHECKS = {
    "unique_keys": "Every aggregate key (measure, period, createdBy, groups) appears once in the window.",
    "count_equals_raw": "Per measure, the window's counts equal its raw (and sealed) measure count.",
    "min_le_avg_le_max": "min <= avg <= max on every row of the window.",
    "quartiles_ordered": "first_quartile <= median <= third_quartile where quartiles are computed.",
    "std_non_negative": "std >= 0 on every row of the window.",
}
EXPERIMENT_CHECKS = {
    "srm": "Sample ratio mismatch: warns when an SRM check's p-value < 1 - its confidence level.",
    "finite_statistics": "Rows without a NaN reason have finite statistics and p-values in [0, 1].",
}
# The statistics of a treatment row that compare it with the control.
COMPARISON_COLUMNS = [
    "diff", "test_stat", "p_value", "confidence_interval", "standard_error", "degrees_of_freedom",
    "abs_diff", "abs_p_value", "abs_confidence_interval",
]  # fmt: skip


def no_loss_spec() -> AssetCheckSpec:
    """The raw_measures check: nothing received is lost."""
    return AssetCheckSpec(
        "no_loss", asset="raw_measures", description="received = accepted + rejected, over the whole inbox"
    )


def no_loss_result(received: int, accepted: int, rejected: int) -> AssetCheckResult:
    """Passes when received = accepted + rejected."""
    return AssetCheckResult(
        check_name="no_loss",
        passed=received == accepted + rejected,
        metadata={"received": received, "accepted": accepted, "rejected": rejected},
    )


def aggregate_check_specs(asset_name: str) -> list[AssetCheckSpec]:
    """The checks of one aggregate asset."""
    return [AssetCheckSpec(check, asset=asset_name, description=text) for check, text in AGGREGATE_CHECKS.items()]


def aggregate_check_results(violations: dict[str, int], window: str) -> list[AssetCheckResult]:
    """One result per check from its count of violating rows (passes at 0). A result covers the run's
    window (its partitions), named in the metadata: Dagster 1.13's partitioned checks are a preview."""
    return [
        AssetCheckResult(
            check_name=check,
            passed=n == 0,
            metadata={"violating_rows": n, "window": window},
            severity=AssetCheckSeverity.ERROR,
        )
        for check, n in violations.items()
    ]


STORED_CHECK = "stored_rows_valid"
STORED_CHECK_TEXT = (
    "The whole stored table as it is now (execute it on its own at any time): the checks above on every row, "
    "count_equals_raw on every partition refreshed since its last measure arrived."
)


def stored_check_result(violations: dict[str, int]) -> AssetCheckResult:
    """Passes when no check finds a violating row in the stored table; the counts per check as metadata."""
    return AssetCheckResult(
        check_name=STORED_CHECK,
        passed=not any(violations.values()),
        metadata={f"{check}_violations": n for check, n in violations.items()},
        severity=AssetCheckSeverity.ERROR,
    )


def experiment_check_specs() -> list[AssetCheckSpec]:
    """The checks of experiment_evaluations."""
    return [
        AssetCheckSpec(name, asset="experiment_evaluations", description=text)
        for name, text in EXPERIMENT_CHECKS.items()
    ]


def srm_result(evaluation: Evaluation, experiment: ExperimentDefinition) -> AssetCheckResult:
    """Warn when any SRM check rejects the expected split."""
    detail = srm_p_values(evaluation.checks, experiment)
    failed = list(failed_srm_checks(evaluation.checks, experiment))
    return AssetCheckResult(
        check_name="srm", passed=not failed, severity=AssetCheckSeverity.WARN,
        metadata={"p_values": MetadataValue.json(detail), "failed": ", ".join(failed) or "none",
                  "checks": sum(c.type == "SRM" for c in experiment.checks)},
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
