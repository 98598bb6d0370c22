"""SRM chi-square (equal and configured split) and the SumRatio check against scipy."""

import numpy as np
import pytest
from scipy import stats as st

from aggassets.stats.checks import srm_test, sum_ratio_test


def test_equal_split_is_scipy_chisquare() -> None:
    observed = np.array([5000.0, 5100.0, 5200.0])
    ours, theirs = srm_test(observed), st.chisquare(observed)
    assert ours.test_stat == pytest.approx(theirs.statistic) and ours.p_value == pytest.approx(theirs.pvalue)


def test_configured_weights_are_scipy_with_expected_counts() -> None:
    observed, weights = np.array([5100.0, 2400.0, 2500.0]), np.array([0.5, 0.25, 0.25])
    ours = srm_test(observed, weights)
    theirs = st.chisquare(observed, observed.sum() * weights)
    assert ours.test_stat == pytest.approx(theirs.statistic) and ours.p_value == pytest.approx(theirs.pvalue)
    assert srm_test(observed).p_value < 1e-100 < ours.p_value  # the 50/25/25 split fits, an equal one does not


def test_bad_weights_and_degenerate_counts() -> None:
    with pytest.raises(ValueError, match="positive"):
        srm_test(np.array([1.0, 2.0]), np.array([1.0, 0.0]))
    assert np.isnan(srm_test(np.array([0.0, 0.0])).p_value)
    assert np.isnan(srm_test(np.array([10.0])).p_value)


def test_sum_ratio_by_hand() -> None:
    ours = sum_ratio_test(np.array([1000.0, 1100.0, 900.0]), np.array([5000.0, 5100.0, 5200.0]))
    assert ours.sum_ratio == pytest.approx(3000 / 18300)
    theirs = st.chisquare([15300.0, 12300.0])
    assert ours.test_stat == pytest.approx(theirs.statistic) and ours.p_value == pytest.approx(theirs.pvalue)


def test_sum_ratio_without_data_is_nan_not_an_error() -> None:
    """No events at all (an experiment run before its data): the ratio 0 / 0 and its test are undefined."""
    result = sum_ratio_test(np.zeros(3), np.zeros(3))
    assert np.isnan(result.sum_ratio) and np.isnan(result.p_value)
