"""Welch tests against scipy and a hand-written delta-method formula."""

import numpy as np
import pytest
from scipy import stats as st

from aggassets.stats.ttest import absolute_welch, relative_welch, welch_degrees_of_freedom

CASES = [(0.2, 0.4, 21, 0.27, 0.45, 26), (4.0, 5.64, 23, 7.3, 5.78, 27), (10.0, 3.0, 5000, 10.1, 2.5, 5100)]


@pytest.mark.parametrize(("m1", "s1", "n1", "m2", "s2", "n2"), CASES)
def test_absolute_welch_is_scipy_without_truncation(
    m1: float, s1: float, n1: int, m2: float, s2: float, n2: int
) -> None:
    ours = absolute_welch(
        np.array(m1), np.array(s1), np.array(n1), np.array(m2), np.array(s2), np.array(n2), 0.95, False
    )
    theirs = st.ttest_ind_from_stats(m2, s2, n2, m1, s1, n1, equal_var=False)
    assert float(ours.test_stat) == pytest.approx(theirs.statistic, rel=1e-12)
    assert float(ours.p_value) == pytest.approx(theirs.pvalue, rel=1e-10)
    a, b = s1**2 / n1, s2**2 / n2
    df = (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n2 - 1))
    se = (m2 - m1) / theirs.statistic
    assert float(ours.confidence_interval) == pytest.approx(se * st.t.ppf(0.975, df), rel=1e-9)


def test_degrees_of_freedom_truncated_as_epstats() -> None:
    df = welch_degrees_of_freedom(np.array(0.8755950358), np.array(6.0), np.array(1.0), np.array(4.0))
    assert float(df) == 5.0  # ep-stats' test-degrees-of-freedom: 5.92 truncated
    exact = welch_degrees_of_freedom(np.array(0.8755950358), np.array(6.0), np.array(1.0), np.array(4.0), False)
    assert float(exact) == pytest.approx(5.9221311475, rel=1e-8)


def test_relative_welch_vectorised_against_hand_formula() -> None:
    mean_c, std_c, n_c = np.array([[0.2], [4.0]]), np.array([[0.4], [5.6]]), np.array([[100.0], [40.0]])
    mean_t, std_t, n_t = (
        np.array([[0.2, 0.25], [4.0, 3.0]]),
        np.array([[0.4, 0.43], [5.6, 5.0]]),
        np.array([[100.0, 90.0], [40.0, 45.0]]),
    )
    ours = relative_welch(mean_c, std_c, n_c, mean_t, std_t, n_t, 0.9)
    for i in range(2):
        for j in range(2):
            mc, sc, nc, mt, st_, nt = mean_c[i, 0], std_c[i, 0], n_c[i, 0], mean_t[i, j], std_t[i, j], n_t[i, j]
            se = np.sqrt(mt**2 * sc**2 / (mc**2 * nc) + st_**2 / nt) / abs(mc)
            df = np.trunc((sc**2 / nc + st_**2 / nt) ** 2 / (sc**4 / (nc**2 * (nc - 1)) + st_**4 / (nt**2 * (nt - 1))))
            assert ours.standard_error[i, j] == pytest.approx(se)
            assert ours.p_value[i, j] == pytest.approx(2 * st.t.sf(abs((mt - mc) / abs(mc) / se), df))
            assert ours.confidence_interval[i, j] == pytest.approx(se * st.t.ppf(0.95, df))


def test_negative_control_mean_sign() -> None:
    args = (np.array(-2.0), np.array(3.0), np.array(100.0), np.array(-1.0), np.array(2.0), np.array(120.0), 0.95)
    ours, epstats = relative_welch(*args), relative_welch(*args, signed_control=True)
    assert float(ours.diff) == 0.5 and float(ours.test_stat) > 0 and float(ours.confidence_interval) > 0
    assert float(epstats.test_stat) == -float(ours.test_stat) and float(epstats.confidence_interval) < 0
    assert float(epstats.p_value) == pytest.approx(float(ours.p_value))
