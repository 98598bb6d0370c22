"""Holm-Bonferroni against statsmodels, NaN handling and the widened intervals."""

import numpy as np
import pytest
from scipy import stats as st
from statsmodels.stats.multitest import multipletests

from aggassets.stats.multiple import holm_adjust, holm_confidence_interval


def test_holm_matches_statsmodels_row_by_row() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 0.2, (12, 4)) ** 2
    ours = holm_adjust(p)
    for row, adjusted in zip(p, ours, strict=True):
        np.testing.assert_allclose(adjusted, multipletests(row, method="holm")[1], rtol=1e-12)


def test_nan_p_values_stay_out_of_the_family() -> None:
    ours = holm_adjust(np.array([[0.01, np.nan, 0.04]]))
    np.testing.assert_allclose(ours[0, [0, 2]], multipletests([0.01, 0.04], method="holm")[1])
    assert np.isnan(ours[0, 1])


def test_widened_interval_uses_alpha_times_p_over_adjusted() -> None:
    p = np.array([[0.3620929979, 0.693112929]])  # ep-stats test-multiple, metric 1
    adjusted = holm_adjust(p)
    np.testing.assert_allclose(adjusted, [[0.724186, 0.724186]], atol=1e-6)
    se, df = np.array([[0.0623588547, 0.0636844997]]), np.array([[6007.0, 6021.0]])
    ci = holm_confidence_interval(p, adjusted, se, df, 0.95)
    expected = se * st.t.ppf(1 - 0.05 * (p / adjusted) / 2, df)
    np.testing.assert_allclose(ci, expected)
    np.testing.assert_allclose(ci, [[0.1398063567, 0.1260355118]], atol=1e-6)  # ep-stats' bundled values


def test_zero_p_values_use_holms_factor() -> None:
    p = np.array([[0.0, 0.01]])
    adjusted = holm_adjust(p)
    ci = holm_confidence_interval(p, adjusted, np.ones((1, 2)), np.full((1, 2), 100.0), 0.95)
    assert ci[0, 0] == pytest.approx(st.t.ppf(1 - 0.05 / 2 / 2, 100))
    epstats = holm_confidence_interval(p, adjusted, np.ones((1, 2)), np.full((1, 2), 100.0), 0.95, True)
    assert epstats[0, 0] == pytest.approx(st.t.ppf(0.975, 100))
