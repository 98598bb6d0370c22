"""Definition and goal-matching edge cases the main tests leave open (ep-stats live, docs, by hand)."""

import datetime

import numpy as np
import pandas as pd
import pytest
from epstats.toolkit import Experiment, Metric

from aggassets.errors import AggassetsError
from aggassets.experiments.definition import parse_experiment
from aggassets.experiments.evaluate import evaluate_goals
from aggassets.stats.power import required_sample_size

TODAY = datetime.date(2026, 11, 1)
CLICKS = ("count(test_unit_type.unit.click)", "count(test_unit_type.global.exposure)")
COLUMNS = ["exp_id", "exp_variant_id", "unit_type", "agg_type", "goal", "count", "sum_sqr_count", "sum_value"]


def _goals(exposures: dict[str, int]) -> pd.DataFrame:
    """Exposures and 30 clicks per variant in ep-stats' aggregated layout."""
    rows = []
    for variant, n in exposures.items():
        rows.append(("e", variant, "test_unit_type", "global", "exposure", n, n, 0.0, 0.0, n))
        rows.append(("e", variant, "test_unit_type", "unit", "click", 30, 50, 0.0, 0.0, 20))
    return pd.DataFrame(rows, columns=[*COLUMNS, "sum_sqr_value", "count_unique"])


def test_listed_variants_are_sorted_as_epstats() -> None:
    """variants listed as c, a, b: every frame is in sorted order, as ep-stats' evaluate_agg."""
    goals = _goals({"a": 120, "b": 90, "c": 100})
    metric = {"id": 1, "name": "ctr", "nominator": CLICKS[0], "denominator": CLICKS[1]}
    raw = {"id": "e", "control_variant": "a", "unit_type": "test_unit_type", "variants": ["c", "a", "b"]}
    ours = evaluate_goals(parse_experiment({**raw, "metrics": [metric]}), goals, as_of=TODAY)
    experiment = Experiment(
        "e", "a", [Metric(1, "ctr", *CLICKS)], [], unit_type="test_unit_type", variants=["c", "a", "b"]
    )
    theirs = experiment.evaluate_agg(goals)
    assert ours.exposures["exp_variant_id"].tolist() == theirs.exposures["exp_variant_id"].tolist() == ["a", "b", "c"]
    assert ours.exposures["exposures"].tolist() == [120, 90, 100]
    np.testing.assert_allclose(ours.metrics["mean"].to_numpy(float), theirs.metrics["mean"].to_numpy(float))


@pytest.mark.parametrize(
    ("cell", "matched"), [("2.0", True), ("2e0", True), ("02", True), ("2.5", False), ("x2", False)]
)
def test_text_cells_equal_a_number_numerically(cell: str, matched: bool) -> None:
    """docs: `=` also compares numerically, so a text cell `2.0` equals the condition value `2`."""
    goals = pd.DataFrame(
        [("e", "a", "user", "global", "exposure", "", 100), ("e", "a", "user", "unit", "view", cell, 7)],
        columns=["exp_id", "exp_variant_id", "unit_type", "agg_type", "goal", "product", "count"],
    )
    for col in ("sum_sqr_count", "sum_value", "sum_sqr_value", "count_unique"):
        goals[col] = goals["count"]
    metric = {
        "id": 1,
        "name": "m",
        "nominator": "count(user.unit.view(product=2))",
        "denominator": "count(user.global.exposure)",
    }
    experiment = parse_experiment({"id": "e", "control_variant": "a", "unit_type": "user", "metrics": [metric]})
    assert evaluate_goals(experiment, goals, as_of=TODAY).metrics["sum_value"].tolist() == [7.0 if matched else 0.0]
    metric["nominator"] = "count(user.unit.view(product!=2))"
    experiment = parse_experiment({"id": "e", "control_variant": "a", "unit_type": "user", "metrics": [metric]})
    assert evaluate_goals(experiment, goals, as_of=TODAY).metrics["sum_value"].tolist() == [0.0 if matched else 7.0]


def test_a_zero_minimum_effect_is_refused() -> None:
    """No sample size detects an effect of 0 (the required size is infinite): the definition refuses it."""
    with np.errstate(divide="ignore"):
        assert np.isinf(required_sample_size(2, 0.0, 1.0, 1.0))
    metric = {"id": 1, "name": "m", "nominator": CLICKS[0], "denominator": CLICKS[1], "minimum_effect": 0.0}
    with pytest.raises(AggassetsError, match="minimum_effect"):
        parse_experiment({"id": "e", "control_variant": "a", "unit_type": "test_unit_type", "metrics": [metric]})
