"""Required sample size, power from the sample size, and false positive risk (vectorised)."""

import numpy as np
from scipy import stats as st

DEFAULT_POWER = 0.8


def _bonferroni_z(n_variants: np.ndarray | int, confidence_level: np.ndarray | float) -> np.ndarray:
    """z_{1-alpha/2} with alpha split over the n_variants - 1 comparisons."""
    alpha = (1 - np.asarray(confidence_level, dtype=float)) / (np.asarray(n_variants) - 1)
    return st.norm.ppf(1 - alpha / 2)


def required_sample_size(
    n_variants: int,
    minimum_effect: np.ndarray | float,
    mean: np.ndarray | float,
    std: np.ndarray | float,
    std_2: np.ndarray | float | None = None,
    confidence_level: np.ndarray | float = 0.95,
    power: float = DEFAULT_POWER,
) -> np.ndarray:
    """Units per variant to detect a relative `minimum_effect` on `mean` (z-test, Bonferroni), rounded."""
    if np.any(np.asarray(minimum_effect) < 0):
        raise ValueError("minimum_effect must be greater than zero")
    if n_variants < 2:
        raise ValueError("there must be at least two variants")
    std = np.asarray(std, dtype=float)
    z = _bonferroni_z(n_variants, confidence_level) + st.norm.ppf(power)
    # IEEE results beyond float64's range (an effect of 1e308 needs 0 units, a std of 1e200 inf), no warning
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        variances = 2 * np.square(std) if std_2 is None else np.square(std) + np.square(std_2)
        delta = np.asarray(mean, dtype=float) * minimum_effect
        return np.round(np.square(z) * variances / np.square(delta))


def required_sample_size_bernoulli(
    n_variants: int,
    minimum_effect: float,
    mean: float,
    confidence_level: float = 0.95,
    power: float = DEFAULT_POWER,
) -> np.ndarray:
    """required_sample_size for a rate: std sqrt(p(1-p)) in control, at p(1+effect) in treatment."""
    if not 0 <= mean <= 1:
        raise ValueError(f"mean must be between zero and one, received {mean}")
    treated = mean * (1 + minimum_effect)
    with np.errstate(invalid="ignore"):  # a treated rate outside [0, 1]: NaN, as ep-stats
        treated_std = np.sqrt(treated * (1 - treated))
    return required_sample_size(
        n_variants, minimum_effect, mean, np.sqrt(mean * (1 - mean)), treated_std, confidence_level, power
    )


def power_from_sample_size(
    n_variants: int,
    sample_size: np.ndarray,
    required: np.ndarray,
    confidence_level: np.ndarray | float = 0.95,
    required_power: float = DEFAULT_POWER,
) -> np.ndarray:
    """Power reached with `sample_size` units when `required` units give `required_power`."""
    shape = np.broadcast(np.asarray(sample_size), np.asarray(required)).shape
    if n_variants < 2:
        return np.full(shape, np.nan)
    z = _bonferroni_z(n_variants, confidence_level)
    required = np.asarray(required, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(required == 0, np.nan, np.asarray(sample_size) / required)
        return st.norm.cdf(np.sqrt(ratio) * (z + st.norm.ppf(required_power)) - z)


def false_positive_risk(
    null_hypothesis_rate: float | None,
    power: np.ndarray,
    p_value: np.ndarray,
    confidence_level: np.ndarray | float,
) -> np.ndarray:
    """P(H0 | significant) = p·pi / (p·pi + power·(1-pi)); NaN when not significant or pi unknown."""
    p_value = np.asarray(p_value, dtype=float)
    if null_hypothesis_rate is None:
        return np.full(p_value.shape, np.nan)
    pi = null_hypothesis_rate
    with np.errstate(divide="ignore", invalid="ignore"):
        risk = p_value * pi / (p_value * pi + np.asarray(power) * (1 - pi))
    significant = p_value < 1 - np.asarray(confidence_level)
    return np.where(significant, risk, np.nan)
