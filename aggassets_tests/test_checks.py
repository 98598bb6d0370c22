"""Asset check results from what an asset computed: each passes on good input and fails on bad."""

import numpy as np
import pandas as pd
from dagster import AssetCheckSeverity

from aggassets.checks import (
    AGGREGATE_CHECKS,
    aggregate_check_results,
    aggregate_check_specs,
    finite_result,
    no_loss_result,
    srm_result,
)
from aggassets.experiments.definition import parse_experiment
from aggassets.experiments.evaluate import CHECK_COLUMNS, METRIC_COLUMNS, Evaluation

EXPERIMENT = parse_experiment({
    "id": "e", "control_variant": "a", "variants": ["a", "b"], "unit_type": "user",
    "metrics": [{"id": 1, "name": "conversion", "nominator": "count(user.unit.buy)",
                 "denominator": "count(user.global.exposure)"}],
    "checks": [{"id": 7, "name": "SRM", "type": "SRM", "denominator": "count(user.global.exposure)",
                "confidence_level": 0.999}],
})  # fmt: skip


def metric_row(variant: str, p_value: float, reason: str = "") -> dict[str, object]:
    """A metrics row with finite statistics but the given p-value (both p-values) and reason."""
    row: dict[str, object] = dict.fromkeys(METRIC_COLUMNS, 0.5)
    row.update(exp_id="e", metric_id=1, metric_name="conversion", exp_variant_id=variant, reason=reason)
    row.update(p_value=p_value, abs_p_value=p_value)
    return row


def evaluation(metrics: list[dict[str, object]], srm_p: float = 0.5) -> Evaluation:
    """An evaluation of EXPERIMENT with these metric rows and one SRM p-value."""
    checks = pd.DataFrame([("e", 7, "SRM", "p_value", srm_p), ("e", 7, "SRM", "statistic", 1.0)], columns=CHECK_COLUMNS)
    return Evaluation("e", "user", pd.DataFrame(metrics, columns=METRIC_COLUMNS), checks, pd.DataFrame())


def test_no_loss_passes_only_when_received_is_accepted_plus_rejected() -> None:
    assert no_loss_result(10, 7, 3).passed
    failed = no_loss_result(10, 7, 2)
    assert not failed.passed and failed.metadata["received"].value == 10


def test_aggregate_checks_fail_with_their_violation_counts() -> None:
    assert [s.name for s in aggregate_check_specs("daily_aggregates")] == list(AGGREGATE_CHECKS)
    results = {
        r.check_name: r
        for r in aggregate_check_results(
            dict.fromkeys(AGGREGATE_CHECKS, 0) | {"unique_keys": 2}, "2026-01-05 .. 2026-01-12"
        )
    }
    assert not results["unique_keys"].passed and results["unique_keys"].metadata["violating_rows"].value == 2
    assert all(r.passed for name, r in results.items() if name != "unique_keys")
    assert results["unique_keys"].severity == AssetCheckSeverity.ERROR
    assert results["unique_keys"].metadata["window"].value == "2026-01-05 .. 2026-01-12"
    (one,) = [r for r in aggregate_check_results({"std_non_negative": 1}, "w") if not r.passed]  # one row fails
    assert one.check_name == "std_non_negative"


def test_finite_statistics_flags_a_p_value_outside_0_1_and_a_nan_without_reason() -> None:
    assert finite_result(evaluation([metric_row("a", np.nan), metric_row("b", 0.03)]), EXPERIMENT).passed
    assert not finite_result(evaluation([metric_row("a", np.nan), metric_row("b", 1.2)]), EXPERIMENT).passed
    nan_row = metric_row("b", np.nan)
    assert not finite_result(evaluation([metric_row("a", np.nan), nan_row]), EXPERIMENT).passed
    explained = metric_row("b", np.nan, reason="zero variance")
    result = finite_result(evaluation([metric_row("a", np.nan), explained]), EXPERIMENT)
    assert result.passed and result.metadata["rows_with_reason"].value == 1


def test_srm_warns_below_one_minus_the_checks_confidence_level() -> None:
    rows = [metric_row("a", np.nan), metric_row("b", 0.5)]
    assert srm_result(evaluation(rows, srm_p=0.002), EXPERIMENT).passed  # 0.002 >= 1 - 0.999
    warned = srm_result(evaluation(rows, srm_p=0.0005), EXPERIMENT)
    assert not warned.passed and warned.severity == AssetCheckSeverity.WARN
    assert warned.metadata["failed"].value == "SRM"
