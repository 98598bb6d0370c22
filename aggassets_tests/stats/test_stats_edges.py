"""Edge cases of the statistics the main tests leave open, against scipy, statsmodels and ep-stats."""

import numpy as np
import pandas as pd
import pytest
from epstats.toolkit import Experiment
from epstats.toolkit.check import SumRatioCheck
from scipy import stats as st
from statsmodels.stats.multitest import multipletests

from aggassets.experiments.definition import parse_experiment
from aggassets.experiments.evaluate import evaluate_goals
from aggassets.stats.multiple import holm_adjust, holm_confidence_interval


def test_zero_p_value_beside_a_nan_uses_the_factor_of_the_non_nan_family() -> None:
    """p = [0, NaN, 0.01]: the family is the two finite p-values, so p = 0 gets Holm's factor 1/2."""
    p = np.array([[0.0, np.nan, 0.01]])
    adjusted = holm_adjust(p)
    np.testing.assert_allclose(adjusted[0, [0, 2]], multipletests([0.0, 0.01], method="holm")[1])
    ci = holm_confidence_interval(p, adjusted, np.ones((1, 3)), np.full((1, 3), 50.0), 0.95)
    assert ci[0, 0] == pytest.approx(st.t.ppf(1 - 0.05 / 2 / 2, 50))
    assert np.isnan(ci[0, 1])


def _sum_ratio_goals(exposures: int, inconsistent: int) -> pd.DataFrame:
    """ep-stats' aggregated goals: exposures and inconsistent exposures in each of two variants."""
    rows = []
    for variant in ("a", "b"):
        for goal, n in (("exposure", exposures), ("inconsistent_exposure", inconsistent)):
            rows.append(("sr", variant, "test_unit_type", "global", goal, n, n, 0.0, 0.0, n))
    columns = ["exp_id", "exp_variant_id", "unit_type", "agg_type", "goal", "count", "sum_sqr_count"]
    return pd.DataFrame(rows, columns=[*columns, "sum_value", "sum_sqr_value", "count_unique"])


def test_sum_ratio_with_a_nominator_larger_than_the_denominator_is_epstats() -> None:
    """N > D: ep-stats tests [D, |D - N|]; compared with its own evaluate_agg."""
    nominator, denominator = (
        "count(test_unit_type.global.inconsistent_exposure)",
        "count(test_unit_type.global.exposure)",
    )
    goals = _sum_ratio_goals(exposures=300, inconsistent=500)
    check = {"id": 1, "name": "EVA", "type": "SumRatio", "nominator": nominator, "denominator": denominator}
    raw = {"id": "sr", "control_variant": "a", "unit_type": "test_unit_type", "metrics": [], "checks": [check]}
    ours = evaluate_goals(parse_experiment(raw), goals).checks.set_index("variable_id")["value"]
    theirs_check = SumRatioCheck(1, "EVA", nominator, denominator)
    theirs = Experiment("sr", "a", [], [theirs_check], unit_type="test_unit_type").evaluate_agg(goals).checks
    theirs = theirs.set_index("variable_id")["value"].astype(float)
    for variable in ("sum_ratio", "p_value", "test_stat"):
        assert ours[variable] == pytest.approx(theirs[variable], rel=1e-9), variable
    assert ours["test_stat"] == pytest.approx(st.chisquare([600.0, 400.0]).statistic)
