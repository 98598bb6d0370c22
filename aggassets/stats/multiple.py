"""Holm-Bonferroni step-down correction, one family per row, and the matching wider intervals."""

import numpy as np

from aggassets.stats.ttest import t_quantile


def holm_adjust(p_values: np.ndarray, count_nan: bool = False) -> np.ndarray:
    """Holm-adjusted p-values of each row (a family); NaN p-values are left out of their family, unless
    `count_nan` (ep-stats counts every comparison, NaN ones too)."""
    p = np.atleast_2d(np.asarray(p_values, dtype=float))
    order = np.argsort(p, axis=1, kind="stable")  # NaN sort last
    sorted_p = np.take_along_axis(p, order, axis=1)
    m = np.full((p.shape[0], 1), p.shape[1]) if count_nan else np.sum(~np.isnan(p), axis=1, keepdims=True)
    factor = m - np.arange(p.shape[1])[None, :]
    stepped = np.minimum(1.0, np.maximum.accumulate(sorted_p * factor, axis=1))
    out = np.empty_like(p)
    np.put_along_axis(out, order, stepped, axis=1)
    return out.reshape(np.shape(p_values))


def holm_rank_factor(p_values: np.ndarray, test_stat: np.ndarray | None = None) -> np.ndarray:
    """Holm's Bonferroni factor 1 / (m - rank) for each p-value of each row; equal p-values (those that
    underflow to 0, say) ranked by the larger |test_stat| first when given, else in column order."""
    p = np.atleast_2d(np.asarray(p_values, dtype=float))
    if test_stat is None:
        order = np.argsort(p, axis=1, kind="stable")
    else:
        strength = -np.abs(np.atleast_2d(np.asarray(test_stat, dtype=float)))
        order = np.lexsort((strength, p), axis=1)
    m = np.sum(~np.isnan(p), axis=1, keepdims=True)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(p.shape[1]), p.shape), axis=1)
    with np.errstate(divide="ignore"):
        return (1.0 / (m - ranks)).reshape(np.shape(p_values))


def holm_confidence_interval(
    p_values: np.ndarray,
    adjusted: np.ndarray,
    standard_error: np.ndarray,
    df: np.ndarray,
    confidence_level: float,
    epstats_ratio: bool = False,
    test_stat: np.ndarray | None = None,
) -> np.ndarray:
    """Interval half-widths at the per-comparison level alpha · p / p_adjusted (ep-stats' widening)."""
    # when p and p_adjusted are both 0 the ratio is Holm's factor 1 / (m - rank), p-values that underflow
    # to 0 ranked by |test_stat| when given; epstats_ratio takes 1
    alpha = 1 - confidence_level
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.asarray(p_values / adjusted, dtype=float)
    both_zero = (np.asarray(adjusted) == 0) & (np.asarray(p_values) == 0)
    fallback = np.nan_to_num(ratio, nan=1.0) if epstats_ratio else holm_rank_factor(p_values, test_stat)
    ratio = fallback if epstats_ratio else np.where(both_zero, fallback, ratio)
    return standard_error * t_quantile(1 - ratio * alpha, df)
