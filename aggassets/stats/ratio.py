"""Per-variant mean, standard deviation and sample size of a metric, plain or by the delta method."""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MetricMoments:
    """Mean, the per-unit standard deviation and the sample size n, so that se = std / sqrt(n)."""

    mean: np.ndarray
    std: np.ndarray
    n: np.ndarray
    variance: np.ndarray


@dataclass(frozen=True)
class RatioSums:
    """Sums over the units of a variant for the ratio Σx / Σy (x nominator, y denominator)."""

    units: np.ndarray
    sum_x: np.ndarray
    sum_x2: np.ndarray
    sum_y: np.ndarray
    sum_y2: np.ndarray
    sum_xy: np.ndarray


def _clean_variance(var: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Clamp rounding noise below zero to zero; keep real negative estimates (reported as faults).
    `scale`: the size of the terms whose difference gave `var`, on var's own scale (divided by n - 1 too)."""
    noise = np.abs(var) <= 1e-12 * np.maximum(np.abs(scale), 1.0)
    return np.where(noise & (var < 0), 0.0, var)


def mean_moments(count: np.ndarray, total: np.ndarray, total_sqr: np.ndarray) -> MetricMoments:
    """ep-stats' moments: mean = total / count, sample variance from Σx and Σx² with n = count."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = total / count
        var = (total_sqr - total * total / count) / (count - 1)
        scale = total_sqr / (count - 1)
    var = _clean_variance(var, scale)
    with np.errstate(invalid="ignore"):
        return MetricMoments(mean, np.sqrt(var), np.asarray(count, dtype=float), var)


def delta_moments(s: RatioSums) -> MetricMoments:
    """Delta method for Σx / Σy over N units: std of z = (x - R·y) / ȳ, so Var(R) ≈ std² / N."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = s.sum_x / s.sum_y
        y_bar = s.sum_y / s.units
        centred = s.sum_x2 - 2 * ratio * s.sum_xy + ratio * ratio * s.sum_y2
        var = centred / (s.units - 1) / (y_bar * y_bar)
        scale = (s.sum_x2 + ratio * ratio * s.sum_y2) / (s.units - 1) / np.where(y_bar == 0, 1.0, y_bar * y_bar)
    var = _clean_variance(var, scale)
    with np.errstate(invalid="ignore"):
        return MetricMoments(ratio, np.sqrt(var), np.asarray(s.units, dtype=float), var)
