"""Required sample size, power and false positive risk."""

import warnings

import numpy as np
import pytest
from scipy import stats as st
from statsmodels.stats.power import NormalIndPower

from aggassets.stats.power import (
    false_positive_risk,
    power_from_sample_size,
    required_sample_size,
    required_sample_size_bernoulli,
)


def test_equal_variance_matches_statsmodels() -> None:
    mean, std, effect = 0.2, 1.2, 0.1
    ours = required_sample_size(2, effect, mean, std)
    theirs = NormalIndPower().solve_power(effect_size=mean * effect / std, alpha=0.05, power=0.8, ratio=1.0)
    assert float(ours) == round(theirs)


def test_bonferroni_for_more_variants() -> None:
    ours = required_sample_size(4, 0.05, 10.0, 3.0)
    theirs = NormalIndPower().solve_power(effect_size=0.5 / 3.0, alpha=0.05 / 3, power=0.8, ratio=1.0)
    assert float(ours) == round(theirs)


def test_bernoulli_by_hand() -> None:
    p1, p2 = 0.2, 0.22
    z = st.norm.ppf(0.975) + st.norm.ppf(0.8)
    expected = round(z**2 * (p1 * (1 - p1) + p2 * (1 - p2)) / (p1 * 0.1) ** 2)
    assert float(required_sample_size_bernoulli(2, 0.1, 0.2)) == expected


def test_power_is_required_power_at_the_required_size_and_grows() -> None:
    power = power_from_sample_size(3, np.array([500.0, 1000.0, 4000.0]), np.array([1000.0, 1000.0, 1000.0]))
    assert power[1] == pytest.approx(0.8) and power[0] < 0.8 < power[2]
    assert np.isnan(power_from_sample_size(3, np.array([5.0]), np.array([0.0]))[0])


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="minimum_effect"):
        required_sample_size(2, -0.1, 1.0, 1.0)
    with pytest.raises(ValueError, match="two variants"):
        required_sample_size(1, 0.1, 1.0, 1.0)
    with pytest.raises(ValueError, match="between zero and one"):
        required_sample_size_bernoulli(2, 0.1, 1.5)


def test_false_positive_risk_by_hand() -> None:
    risk = false_positive_risk(0.1, np.array([0.105139, 0.5]), np.array([5.95556e-05, 0.2]), 0.95)
    assert risk[0] == pytest.approx(5.95556e-05 * 0.1 / (5.95556e-05 * 0.1 + 0.105139 * 0.9))
    assert risk[0] == pytest.approx(0.000063, abs=1e-6)  # ep-stats' bundled value
    assert np.isnan(risk[1])  # not significant
    assert np.isnan(false_positive_risk(None, np.array([0.5]), np.array([0.01]), 0.95)[0])


def test_sample_sizes_beyond_float64s_range_are_ieee_values_without_warnings() -> None:
    """An effect of 1e308 on a mean of 1e308 needs 0 units, a std of 1e200 an infinite number (z² s² / δ²
    evaluated in float64), and numpy warns of nothing (the CLI prints nothing on stderr)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert required_sample_size(2, 1e308, 1e308, 1.0).tolist() == 0.0
        assert required_sample_size(2, 0.1, 1.0, 1e200).tolist() == np.inf
        assert required_sample_size(2, 0.1, 1.0, 1e-200, 1e-200).tolist() == 0.0
