"""Welch t-tests on the absolute and relative difference of means, vectorised over metrics x variants."""

# Arrays broadcast: control arguments shaped (metrics, 1) against treatments (metrics, variants).

from dataclasses import dataclass

import numpy as np
from scipy import stats as st


@dataclass(frozen=True)
class WelchTest:
    """A two-sided Welch test of `diff`; confidence_interval is the half-width."""

    diff: np.ndarray
    standard_error: np.ndarray
    test_stat: np.ndarray
    p_value: np.ndarray
    confidence_interval: np.ndarray
    degrees_of_freedom: np.ndarray


def welch_degrees_of_freedom(
    std_a: np.ndarray, n_a: np.ndarray, std_b: np.ndarray, n_b: np.ndarray, truncate: bool = True
) -> np.ndarray:
    """Welch-Satterthwaite degrees of freedom; truncated after rounding to 5 decimals as ep-stats."""
    with np.errstate(divide="ignore", invalid="ignore"):
        va, vb = np.square(std_a) / n_a, np.square(std_b) / n_b
        df = np.square(va + vb) / (np.square(va) / (n_a - 1) + np.square(vb) / (n_b - 1))
    return np.trunc(np.round(df, 5)) if truncate else df


def t_quantile(confidence_level: np.ndarray | float, df: np.ndarray) -> np.ndarray:
    """Right t quantile of a two-sided interval at `confidence_level`."""
    with np.errstate(invalid="ignore"):
        return st.t.ppf(1 - (1 - np.asarray(confidence_level, dtype=float)) / 2, df)


def two_sided_p(test_stat: np.ndarray, df: np.ndarray, epstats: bool = False) -> np.ndarray:
    """Two-sided p-value of a t statistic (`epstats`: as 2·(1 - cdf), which is 0 below ~1e-16)."""
    with np.errstate(invalid="ignore"):
        if epstats:
            return 2 * (1 - st.t.cdf(np.abs(test_stat), df))
        return 2 * st.t.sf(np.abs(test_stat), df)


def _finish(diff: np.ndarray, se: np.ndarray, df: np.ndarray, level: float) -> WelchTest:
    """Test statistic, p-value and interval from a difference and its standard error."""
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = diff / se
    p = two_sided_p(stat, df)
    return WelchTest(diff, se, stat, p, se * t_quantile(level, df), df)


def absolute_welch(
    mean_c: np.ndarray,
    std_c: np.ndarray,
    n_c: np.ndarray,
    mean_t: np.ndarray,
    std_t: np.ndarray,
    n_t: np.ndarray,
    confidence_level: float,
    truncate: bool = True,
) -> WelchTest:
    """Welch test of mean_t - mean_c (scipy's ttest_ind_from_stats(equal_var=False) when not truncated)."""
    df = welch_degrees_of_freedom(std_c, n_c, std_t, n_t, truncate)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(np.square(std_c) / n_c + np.square(std_t) / n_t)
        diff = np.asarray(mean_t - mean_c, dtype=float)
    return _finish(diff, se, df, confidence_level)


def relative_welch(
    mean_c: np.ndarray,
    std_c: np.ndarray,
    n_c: np.ndarray,
    mean_t: np.ndarray,
    std_t: np.ndarray,
    n_t: np.ndarray,
    confidence_level: float,
    signed_control: bool = False,
    truncate: bool = True,
) -> WelchTest:
    """Welch test of (mean_t - mean_c) / |mean_c| with the delta-method standard error."""
    # signed_control divides the standard error by mean_c instead of |mean_c| (ep-stats' sign fault)
    df = welch_degrees_of_freedom(std_c, n_c, std_t, n_t, truncate)
    scale = mean_c if signed_control else np.abs(mean_c)
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = (mean_t - mean_c) / np.abs(mean_c)
        inner = np.square(mean_t * std_c) / (np.square(mean_c) * n_c) + np.square(std_t) / n_t
        se = np.sqrt(inner) / scale
    return _finish(np.asarray(diff, dtype=float), se, df, confidence_level)
