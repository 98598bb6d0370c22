"""O'Brien-Fleming sequential confidence levels."""

import datetime

import pytest
from scipy import stats as st

from aggassets.stats.sequential import obrien_fleming_level, sequential_confidence_level

START, END = datetime.date(2020, 1, 1), datetime.date(2020, 1, 14)


@pytest.mark.parametrize(("day", "expected"), [(1, 0.9999), (10, 0.9796082526), (14, 0.95)])
def test_levels_of_epstats_sequential_tests(day: int, expected: float) -> None:
    assert sequential_confidence_level(0.95, START, END, START + datetime.timedelta(days=day - 1)) == pytest.approx(
        expected, abs=1e-4
    )


def test_formula_by_hand() -> None:
    z = st.norm.ppf(0.975)
    spent = 2 * st.norm.sf(z / (15 / 20) ** 0.5)
    assert obrien_fleming_level(0.95, 20, 15) == pytest.approx(round(1 - spent, 4))
    assert 0.95 < obrien_fleming_level(0.95, 20, 15) < 0.9999


def test_bounds_and_no_dates() -> None:
    assert sequential_confidence_level(0.95, START, END, START - datetime.timedelta(days=3)) == 0.9999
    assert sequential_confidence_level(0.95, START, END, END + datetime.timedelta(days=30)) == pytest.approx(0.95)
    assert sequential_confidence_level(0.9, None, END, START) == 0.9
