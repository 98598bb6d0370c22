"""Data-quality checks: sample ratio mismatch (chi-square, equal or configured split) and SumRatio."""

from dataclasses import dataclass

import numpy as np
from scipy import stats as st


@dataclass(frozen=True)
class ChiSquareTest:
    """Pearson's chi-square goodness of fit."""

    test_stat: float
    p_value: float


@dataclass(frozen=True)
class SumRatioTest:
    """Share of the nominator in nominator + denominator, with ep-stats' chi-square."""

    sum_ratio: float
    test_stat: float
    p_value: float


def chi_square(observed: np.ndarray, weights: np.ndarray | None = None) -> ChiSquareTest:
    """Chi-square of counts against shares proportional to `weights` (equal shares when None)."""
    observed = np.asarray(observed, dtype=float)
    w = np.ones_like(observed) if weights is None else np.asarray(weights, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = observed.sum() * w / w.sum()
        stat = float(np.sum(np.square(observed - expected) / expected))
    df = observed.size - 1
    p = float(st.chi2.sf(stat, df)) if df > 0 else float("nan")
    return ChiSquareTest(stat, p)


def srm_test(exposures: np.ndarray, weights: np.ndarray | None = None) -> ChiSquareTest:
    """Sample ratio mismatch: exposures per variant against the configured traffic split."""
    if weights is not None and (np.any(np.asarray(weights) <= 0) or len(weights) != len(exposures)):
        raise ValueError("traffic weights must be positive, one per variant")
    return chi_square(exposures, weights)


def sum_ratio_test(nominator: np.ndarray, denominator: np.ndarray) -> SumRatioTest:
    """ep-stats' SumRatio: N / (D + N) over all variants, chi-square of [D, |D - N|]; NaN without data."""
    n, d = np.sum(nominator, dtype=float), np.sum(denominator, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = n / (d + n)  # numpy floats: 0 / 0 is NaN, not ZeroDivisionError
    test = chi_square(np.array([d, abs(d - n)]))
    return SumRatioTest(float(ratio), test.test_stat, test.p_value)
