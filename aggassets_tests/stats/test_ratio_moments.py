"""Per-variant moments from sums, plain and by the delta method, against numpy on unit values."""

import numpy as np
import pytest

from aggassets.stats.ratio import RatioSums, delta_moments, mean_moments


def test_mean_moments_are_numpy_sample_statistics() -> None:
    x = np.array([0.0, 3.0, 1.0, 7.5, 2.0])
    m = mean_moments(np.array(5.0), np.array(x.sum()), np.array((x * x).sum()))
    assert float(m.mean) == pytest.approx(x.mean()) and float(m.std) == pytest.approx(x.std(ddof=1))


def test_delta_moments_against_numpy_linearisation() -> None:
    rng = np.random.default_rng(0)
    y = 1.0 + rng.poisson(3, 200)
    x = rng.binomial(y.astype(int), 0.3).astype(float)
    s = RatioSums(np.array(200.0), np.array(x.sum()), np.array((x * x).sum()), np.array(y.sum()),
                  np.array((y * y).sum()), np.array((x * y).sum()))  # fmt: skip
    m = delta_moments(s)
    ratio = x.sum() / y.sum()
    z = (x - ratio * y) / y.mean()
    assert float(m.mean) == pytest.approx(ratio) and float(m.std) == pytest.approx(z.std(ddof=1))


def test_negative_variance_is_kept_for_reporting_and_rounding_noise_is_zero() -> None:
    bad = mean_moments(np.array(10.0), np.array(10.0), np.array(5.0))
    assert float(bad.variance) < 0 and np.isnan(bad.std)
    noise = mean_moments(np.array(3.0), np.array(0.3), np.array(0.03))
    assert float(noise.variance) == 0.0


@pytest.mark.parametrize("n", [10.0, 1e6, 2e12])
def test_negative_variance_is_kept_whatever_the_count(n: float) -> None:
    """Σx² = half of (Σx)²/n is impossible at any n (variance -0.5·n/(n-1)), not rounding noise."""
    bad = mean_moments(np.array(n), np.array(n), np.array(n / 2))
    assert float(bad.variance) == pytest.approx(-0.5 * n / (n - 1)) and np.isnan(bad.std)
    constant = np.full(1_000_000, 0.1)  # one value repeated: the sums leave only rounding noise
    noise = mean_moments(np.array(1e6), np.array(constant.sum()), np.array((constant * constant).sum()))
    assert float(noise.variance) == 0.0
    s = RatioSums(np.array(n), np.array(n), np.array(n / 2), np.array(n), np.array(n), np.array(n))
    assert np.isnan(delta_moments(s).std)  # Σx² < 2RΣxy - R²Σy² the same way
