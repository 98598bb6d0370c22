"""Ratio metrics (clicks per view) by the delta method, checked against unit-level numpy computations."""

import datetime

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from aggassets.errors import AggassetsError
from aggassets.experiments.definition import ExperimentDefinition, parse_experiment
from aggassets.experiments.evaluate import cross_products_needed, evaluate_goals
from aggassets.stats.ratio import RatioSums, delta_moments, mean_moments
from aggassets.stats.ttest import absolute_welch

TODAY = datetime.date(2026, 11, 1)
CLICK, VIEW, EXPOSURE = "count(user.unit.click)", "count(user.unit.view)", "count(user.global.exposure)"


def _experiment(nominator: str, denominator: str) -> ExperimentDefinition:
    """One metric, control a."""
    metric = {"id": 1, "name": "ratio", "nominator": nominator, "denominator": denominator}
    return parse_experiment({"id": "e", "control_variant": "a", "unit_type": "user", "metrics": [metric]})


def _units(rng: np.random.Generator, n: int, ctr: float) -> dict[str, np.ndarray]:
    """Per-unit views and clicks with unit-level heterogeneity (clicks correlate with views)."""
    views = 1 + rng.poisson(4, n)
    clicks = rng.binomial(views, rng.beta(ctr * 4, (1 - ctr) * 4, n))
    return {"view": views.astype(float), "click": clicks.astype(float), "exposure": np.ones(n)}


def _frames(units: dict[str, dict[str, np.ndarray]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Aggregated goals (goal_key layout) and the cross products of every goal pair, per variant."""
    goals, cross = [], []
    for variant, u in units.items():
        for goal, x in u.items():
            agg = "global" if goal == "exposure" else "unit"
            sums = {"count": x.sum(), "sum_sqr_count": (x * x).sum(), "sum_value": 0.0, "sum_sqr_value": 0.0}
            goals.append({"exp_variant_id": variant, "goal_key": f"count(user.{agg}.{goal})", **sums})
            goals[-1]["count_unique"] = float((x > 0).sum())
        for left in u:
            for right in u:
                la, ra = ("global" if g == "exposure" else "unit" for g in (left, right))
                cross.append({"exp_variant_id": variant, "left_key": f"count(user.{la}.{left})",
                              "right_key": f"count(user.{ra}.{right})", "sum_product": (u[left] * u[right]).sum(),
                              "units": len(u[left])})  # fmt: skip
    return pd.DataFrame(goals), pd.DataFrame(cross)


def _delta_by_hand(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Ratio and its delta-method variance from unit-level data: g' Cov g / n with g = (1/ȳ, -R/ȳ)."""
    ratio, y_bar = x.sum() / y.sum(), y.mean()
    gradient = np.array([1 / y_bar, -ratio / y_bar])
    return ratio, float(gradient @ np.cov(x, y, ddof=1) @ gradient / len(x))


def test_clicks_per_view_match_unit_level_delta_method() -> None:
    rng = np.random.default_rng(11)
    units = {"a": _units(rng, 800, 0.10), "b": _units(rng, 900, 0.12)}
    goals, cross = _frames(units)
    m = evaluate_goals(_experiment(CLICK, VIEW), goals, cross, TODAY).metrics.set_index("exp_variant_id")
    variances = {}
    for v, u in units.items():
        ratio, variances[v] = _delta_by_hand(u["click"], u["view"])
        assert m.loc[v, "mean"] == pytest.approx(ratio, rel=1e-12)
        assert m.loc[v, "std"] ** 2 / m.loc[v, "sample_size"] == pytest.approx(variances[v], rel=1e-9)
        assert m.loc[v, "sample_size"] == len(u["view"]) and m.loc[v, "count"] == u["view"].sum()
    se = np.sqrt(variances["a"] + variances["b"])
    a, b = variances["a"], variances["b"]
    df = np.trunc((a + b) ** 2 / (a * a / 799 + b * b / 899))
    diff = m.loc["b", "mean"] - m.loc["a", "mean"]
    assert m.loc["b", "abs_p_value"] == pytest.approx(2 * st.t.sf(abs(diff / se), df), rel=1e-9)
    assert m.loc["b", "abs_confidence_interval"] == pytest.approx(se * st.t.ppf(0.975, df), rel=1e-9)


def test_delta_reduces_to_the_ordinary_result_when_denominators_are_one() -> None:
    rng = np.random.default_rng(5)
    goals, cross = _frames({"a": _units(rng, 300, 0.1), "b": _units(rng, 320, 0.1), "c": _units(rng, 310, 0.13)})
    experiment = _experiment(CLICK, EXPOSURE)
    with_cross = evaluate_goals(experiment, goals, cross, TODAY).metrics
    without = evaluate_goals(experiment, goals, None, TODAY).metrics
    numeric = without.select_dtypes("number").columns
    pd.testing.assert_frame_equal(with_cross[numeric], without[numeric], rtol=1e-9)


def test_cross_products_needed_pairs() -> None:
    experiment = _experiment(f"{CLICK} + 2 * count(user.unit.purchase)", VIEW)
    pairs = [(a.key, b.key) for a, b in cross_products_needed(experiment)]
    assert pairs == [
        (CLICK, "count(user.unit.purchase)"),
        (CLICK, VIEW),
        ("count(user.unit.purchase)", VIEW),
    ]
    assert cross_products_needed(_experiment(f"{CLICK} * {VIEW}", EXPOSURE)) == []


def test_missing_cross_pair_is_refused() -> None:
    rng = np.random.default_rng(3)
    goals, cross = _frames({"a": _units(rng, 50, 0.1), "b": _units(rng, 50, 0.1)})
    cross = cross[~cross.left_key.eq(CLICK) | ~cross.right_key.eq(VIEW)]
    cross = cross[~cross.left_key.eq(VIEW) | ~cross.right_key.eq(CLICK)]
    with pytest.raises(AggassetsError, match="cross products lack"):
        evaluate_goals(_experiment(CLICK, VIEW), goals, cross, TODAY)


def test_cross_products_missing_a_variant_with_goals_are_refused() -> None:
    rng = np.random.default_rng(4)
    goals, cross = _frames({"a": _units(rng, 50, 0.1), "b": _units(rng, 50, 0.1), "c": _units(rng, 50, 0.1)})
    with pytest.raises(AggassetsError, match=r"no rows for variant\(s\) c, which have goals"):
        evaluate_goals(_experiment(CLICK, VIEW), goals, cross[cross.exp_variant_id != "c"], TODAY)


def test_confidence_interval_coverage_by_simulation() -> None:
    rng = np.random.default_rng(2026)
    sims, n = 600, 400
    sums = []
    for _ in range(2):
        views = 1 + rng.poisson(9, (sims, n))
        clicks = rng.binomial(views, rng.beta(0.5, 2.0, (sims, n))).astype(float)
        views = views.astype(float)
        sums.append((clicks, views))
    delta, naive = [], []
    for x, y in sums:
        ratio_sums = RatioSums(
            np.full(sims, float(n)), x.sum(1), (x * x).sum(1), y.sum(1), (y * y).sum(1), (x * y).sum(1)
        )
        delta.append(delta_moments(ratio_sums))
        naive.append(mean_moments(y.sum(1), x.sum(1), (x * x).sum(1)))  # ep-stats: each view a unit
    # ep-stats' treatment mixes per-user squares with a per-view count: its intervals are far too wide here
    for moments, low, high in ((delta, 0.93, 0.97), (naive, 0.975, 1.0)):
        c, t = moments
        test = absolute_welch(c.mean, c.std, c.n, t.mean, t.std, t.n, 0.95)
        coverage = np.mean(np.abs(test.diff) <= test.confidence_interval)
        assert low <= coverage <= high
