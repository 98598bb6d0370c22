"""O'Brien-Fleming alpha spending: the confidence level to use on a day of a running experiment."""

import datetime

import numpy as np
from scipy import stats as st

MAX_SEQUENTIAL_CONFIDENCE_LEVEL = 0.9999


def obrien_fleming_level(confidence_level: float, total_days: int, actual_day: int) -> float:
    """1 - alpha spent by day `actual_day` of `total_days`, rounded to 4 decimals and capped at 0.9999."""
    alpha = 1 - confidence_level
    fraction = actual_day / total_days
    z = st.norm.ppf(1 - alpha / 2)
    spent = 2 - 2 * st.norm.cdf(z / np.sqrt(fraction))
    return float(min(np.round(1 - spent, 4), MAX_SEQUENTIAL_CONFIDENCE_LEVEL))


def sequential_confidence_level(
    confidence_level: float,
    date_from: datetime.date | None,
    date_to: datetime.date | None,
    as_of: datetime.date,
) -> float:
    """The level on `as_of`; unchanged without both dates. Days before the start count as day 1."""
    if date_from is None or date_to is None:
        return confidence_level
    total = (date_to - date_from).days + 1
    day = min(max((as_of - date_from).days + 1, 1), total)
    return obrien_fleming_level(confidence_level, total, day)
