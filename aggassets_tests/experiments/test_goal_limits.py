"""Goal matching limits from docs/experiments.md: numbers and text in dimension cells, refused goal sums."""

import numpy as np
import pandas as pd
import pytest

from aggassets.errors import AggassetsError
from aggassets.experiments.definition import parse_experiment
from aggassets.experiments.evaluate import evaluate_goals
from aggassets.experiments.goals import matches, number_or_none
from aggassets_tests.experiments.test_evaluation_edges import _click_goals, _clicks_definition


def test_a_three_digit_exponent_is_text_not_a_number() -> None:
    """docs: a number is a decimal with an optional exponent of at most two digits (`1e2` included), so
    `1e100` is compared as text: `> 5` is numeric and holds only for the cells that are numbers above 5."""
    cells = pd.Series(["1e2", "1e100", "7", "1E99", "3"])
    assert number_or_none("1e2") == 100.0 and number_or_none("1E99") == 1e99
    assert number_or_none("1e100") is None
    assert number_or_none("5\n") is None  # as the SQL path reads it: a line end is not part of a number
    np.testing.assert_array_equal(matches(cells, ">", "5"), [True, False, True, True, False])
    np.testing.assert_array_equal(matches(pd.Series(["1.0e100", "1e100"]), "=", "1e100"), [False, True])


def test_a_text_condition_value_compares_as_text() -> None:
    """docs: the comparisons are text when the condition value is not a number: `< m` keeps `de` and `fr`
    (and the number `10`, whose text sorts before `m`), never an empty cell."""
    cells = pd.Series(["de", "us", "fr", "", "10", "zz"])
    np.testing.assert_array_equal(matches(cells, "<", "m"), [True, False, True, False, True, False])
    np.testing.assert_array_equal(matches(cells, ">=", "fr"), [False, True, True, False, False, True])


def test_a_negative_sum_of_squares_is_refused() -> None:
    """docs: a negative count or sum of squares in the goals is a one-line error (sum_value may be < 0)."""
    goals = _click_goals([("a", 20, 12, 20), ("b", 22, 15, 25)])
    experiment = parse_experiment(_clicks_definition())
    negative_sum = goals.assign(sum_value=np.where(goals.goal == "click", -3.0, goals.sum_value))
    assert len(evaluate_goals(experiment, negative_sum).metrics) == 2
    bad = goals.assign(sum_sqr_value=np.where(goals.goal == "click", -1.0, goals.sum_sqr_value))
    with pytest.raises(AggassetsError, match="sum_sqr_value holds a negative value"):
        evaluate_goals(experiment, bad)
