"""Evaluation limits: small negative variances, variants without goals, infinite statistics in the JSON,
constants of non-linear metrics, SumRatio thresholds; against ep-stats' evaluate_agg and hand computation."""

import json

import numpy as np
import pytest
from epstats.toolkit import Experiment, Metric
from epstats.toolkit.check import SumRatioCheck

from aggassets.errors import AggassetsError
from aggassets.experiments.comparison import EMPTY
from aggassets.experiments.definition import parse_experiment
from aggassets.experiments.evaluate import cross_products_needed, evaluate_goals, to_rest_json
from aggassets_tests.experiments.test_evaluation_edges import (
    CLICKS,
    EXPOSURE,
    REVENUE,
    _click_goals,
    _clicks_definition,
    _goals,
    _user_definition,
    _view_units,
    _views_goals,
)


def test_a_tiny_negative_variance_is_still_a_negative_variance() -> None:
    """docs: Σx² < (Σx)²/n beyond rounding is a negative variance, however small: Σx = 2e-5 and Σx² = 1e-10
    over 2 units give (1e-10 - 2e-10) / 1 = -1e-10, far above the 1e-12 relative rounding noise."""
    rng = np.random.default_rng(3)
    goals = _goals({"a": rng.lognormal(3, 1, 200), "b": np.array([1e-5, 1e-5])})
    treated = (goals.exp_variant_id == "b") & (goals.goal == "purchase")
    goals.loc[treated, "sum_sqr_value"] = 1e-10
    raw = {"id": "edge", "control_variant": "a", "unit_type": "test_unit_type"}
    raw["metrics"] = [{"id": 1, "name": "revenue", "nominator": REVENUE, "denominator": EXPOSURE}]
    m = evaluate_goals(parse_experiment(raw), goals).metrics.set_index("exp_variant_id")
    assert m.loc["b", "reason"].startswith("negative variance estimate")
    assert np.isnan(m.loc["b", "std"]) and np.isnan(m.loc["b", "p_value"])
    assert m.loc["b", "mean"] == 1e-5  # the mean is kept: 2e-5 over 2 exposures


def test_a_declared_variant_without_goals_needs_no_cross_products() -> None:
    """docs: the error is for a variant *that has goals* without cross-product rows; c has none at all."""
    rng = np.random.default_rng(5)
    units = {"a": _view_units(rng, 300), "b": _view_units(rng, 320)}
    goals, cross = _views_goals(units)
    raw = _user_definition("count(user.unit.click)", "count(user.unit.view)") | {"variants": ["a", "b", "c"]}
    m = evaluate_goals(parse_experiment(raw), goals, cross).metrics.set_index("exp_variant_id")
    assert list(m.index) == ["a", "b", "c"]
    assert EMPTY in m.loc["c", "reason"] and m.loc["b", "reason"] == ""
    x, y = units["b"]["click"], units["b"]["view"]
    assert m.loc["b", "mean"] == x.sum() / y.sum()


def test_an_infinite_compat_statistic_is_null_in_the_rest_json() -> None:
    """ep-stats' evaluate_agg gives +inf for a zero-variance treatment with Σ = 12 > 10; JSON has no
    infinity, so the REST shape holds null and serializes as strict JSON."""
    goals = _click_goals([("a", 20, 20, 20), ("b", 6, 12, 24)])  # every unit: a 1 click, b 2 clicks
    theirs = Experiment("edge", "a", [Metric(*CLICKS)], [], unit_type="test_unit_type").evaluate_agg(goals).metrics
    assert np.isposinf(theirs["test_stat"].iloc[1])
    evaluation = evaluate_goals(parse_experiment(_clicks_definition()), goals, compat=True)
    assert np.isposinf(evaluation.metrics["test_stat"].iloc[1])
    rest = to_rest_json(evaluation)
    assert [s["test_stat"] for s in rest["metrics"][0]["stats"]] == [None, None]
    assert json.loads(json.dumps(rest, allow_nan=False)) == rest


CLICK = "count(test_unit_type.unit.click)"


def test_a_constant_of_a_non_linear_nominator_is_squared_in_the_squares_as_epstats() -> None:
    """3·c·c / c is not linear (a product of goals): its squares column takes 3² like ep-stats' evaluate_agg."""
    goals = _click_goals([("a", 200, 120, 300), ("b", 210, 150, 340)])
    nominator = f"3 * {CLICK} * {CLICK} / {CLICK}"
    raw = {"id": "edge", "control_variant": "a", "unit_type": "test_unit_type"}
    raw["metrics"] = [{"id": 1, "name": "m", "nominator": nominator, "denominator": EXPOSURE}]
    ours = evaluate_goals(parse_experiment(raw), goals).metrics
    metric = Metric(1, "m", nominator, EXPOSURE)
    theirs = Experiment("edge", "a", [metric], [], unit_type="test_unit_type").evaluate_agg(goals).metrics
    for column in ("mean", "std", "p_value"):
        np.testing.assert_allclose(
            ours[column].to_numpy(float), theirs[column].to_numpy(float), rtol=1e-9, err_msg=column
        )
    n, squares = 200, 9 * 300  # control: Σx = 3·120 = 360, Σx² = 3²·300
    assert ours["std"].iloc[0] == pytest.approx(np.sqrt((squares - 360**2 / n) / (n - 1)), rel=1e-12)


def test_a_sum_ratio_check_reports_its_own_max_sum_ratio_as_epstats() -> None:
    """max_sum_ratio 0.3 (not the 0.01 default) in the checks frame, as ep-stats' SumRatioCheck."""
    goals = _click_goals([("a", 200, 120, 300), ("b", 210, 150, 340)])
    raw = {"id": "edge", "control_variant": "a", "unit_type": "test_unit_type"}
    raw["metrics"] = [{"id": 1, "name": "m", "nominator": CLICK, "denominator": EXPOSURE}]
    raw["checks"] = [{"id": 2, "name": "clicks share", "type": "SumRatio", "nominator": CLICK,
                      "denominator": EXPOSURE, "max_sum_ratio": 0.3}]  # fmt: skip
    ours = evaluate_goals(parse_experiment(raw), goals).checks.set_index("variable_id")["value"]
    check = SumRatioCheck(2, "clicks share", CLICK, EXPOSURE, max_sum_ratio=0.3)
    theirs = Experiment("edge", "a", [Metric(1, "m", CLICK, EXPOSURE)], [check], unit_type="test_unit_type")
    expected = theirs.evaluate_agg(goals).checks.set_index("variable_id")["value"]
    assert ours["max_sum_ratio"] == expected["max_sum_ratio"] == 0.3
    assert ours["sum_ratio"] == pytest.approx(expected["sum_ratio"], rel=1e-12)
    assert ours["sum_ratio"] == pytest.approx(270 / (410 + 270), rel=1e-12)  # ΣN / (ΣD + ΣN)


def test_a_two_goal_denominator_needs_its_own_cross_product() -> None:
    """docs: the delta method needs nominator × denominator, denominator × denominator and nominator ×
    nominator pairs; (clicks + views) per unit needs click × view, and its absence from `cross` is an error."""
    rng = np.random.default_rng(23)
    units = {"a": _view_units(rng, 400), "b": _view_units(rng, 420)}
    goals, cross = _views_goals(units)
    raw = _user_definition("count(user.unit.buy)", "count(user.unit.click) + count(user.unit.view)")
    experiment = parse_experiment(raw)
    needed = {(a.key, b.key) for a, b in cross_products_needed(experiment)}
    click, view, buy = "count(user.unit.click)", "count(user.unit.view)", "count(user.unit.buy)"
    assert needed == {(buy, click), (buy, view), (click, view)}
    m = evaluate_goals(experiment, goals, cross).metrics.set_index("exp_variant_id")
    for variant, u in units.items():
        x, y = u["buy"], u["click"] + u["view"]
        ratio, y_bar = x.sum() / y.sum(), y.mean()
        gradient = np.array([1 / y_bar, -ratio / y_bar])
        variance = gradient @ np.cov(x, y, ddof=1) @ gradient / len(x)
        assert m.loc[variant, "std"] ** 2 / m.loc[variant, "sample_size"] == pytest.approx(variance, rel=1e-9)
    without = cross[~((cross.left_key == click) & (cross.right_key == view))]
    with pytest.raises(AggassetsError):
        evaluate_goals(experiment, goals, without)
