"""Evaluation edge cases the main tests leave open, against scipy, numpy and ep-stats' own evaluate_agg."""

import numpy as np
import pandas as pd
import pytest
from epstats.toolkit import Experiment, Metric
from scipy import stats as st
from statsmodels.stats.multitest import multipletests

from aggassets.experiments.comparison import EMPTY, FEW_UNITS
from aggassets.experiments.definition import parse_experiment
from aggassets.experiments.evaluate import evaluate_goals, per_unit_variance_warnings

EXPOSURE = "count(test_unit_type.global.exposure)"
REVENUE = "value(test_unit_type.unit.purchase)"


def _goals(units: dict[str, np.ndarray]) -> pd.DataFrame:
    """ep-stats' aggregated goals (exposure, purchase value) from per-unit purchase values."""
    rows = []
    for variant, x in units.items():
        n, buyers = len(x), int((x != 0).sum())
        rows.append((variant, "global", "exposure", n, n, 0.0, 0.0, n))
        rows.append((variant, "unit", "purchase", buyers, buyers, x.sum(), (x * x).sum(), buyers))
    columns = ["exp_variant_id", "agg_type", "goal", "count", "sum_sqr_count", "sum_value", "sum_sqr_value"]
    return pd.DataFrame(rows, columns=[*columns, "count_unique"]).assign(exp_id="edge", unit_type="test_unit_type")


def _welch(control: np.ndarray, treatment: np.ndarray) -> tuple[float, float]:
    """Relative and absolute two-sided Welch p-values (ep-stats' truncated df), by hand on unit values."""
    m_c, m_t = control.mean(), treatment.mean()
    a, b = control.var(ddof=1) / len(control), treatment.var(ddof=1) / len(treatment)
    df = np.trunc((a + b) ** 2 / (a * a / (len(control) - 1) + b * b / (len(treatment) - 1)))
    se_rel = np.sqrt(m_t**2 * a / m_c**2 + b) / abs(m_c)
    rel = 2 * st.t.sf(abs((m_t - m_c) / abs(m_c) / se_rel), df)
    return float(rel), float(2 * st.t.sf(abs((m_t - m_c) / np.sqrt(a + b)), df))


def test_a_broken_first_variant_does_not_invalidate_a_later_control() -> None:
    """Control b (not first); variant a has a single unit: only a is NaN, c is compared with b as usual
    (a's NaN p-value stays out of the Holm family, so c's p-value is its own)."""
    rng = np.random.default_rng(21)
    units = {"a": np.array([12.0]), "b": rng.lognormal(3, 1, 400), "c": rng.lognormal(3.2, 1, 420)}
    raw = {"id": "edge", "control_variant": "b", "unit_type": "test_unit_type"}
    raw["metrics"] = [{"id": 1, "name": "revenue", "nominator": REVENUE, "denominator": EXPOSURE}]
    m = evaluate_goals(parse_experiment(raw), _goals(units)).metrics.set_index("exp_variant_id")
    assert FEW_UNITS in m.loc["a", "reason"] and np.isnan(m.loc["a", "p_value"])
    assert m.loc["c", "reason"] == ""
    rel, absolute = _welch(units["b"], units["c"])
    assert m.loc["c", "p_value"] == pytest.approx(rel, rel=1e-9)
    assert m.loc["c", "abs_p_value"] == pytest.approx(absolute, rel=1e-9)


def test_power_needs_a_sample_size_as_epstats() -> None:
    """A denominator summing value() goals has no sample size (NaN in ep-stats): no power either."""
    rng = np.random.default_rng(8)
    units = {"a": rng.lognormal(3, 1, 300), "b": rng.lognormal(3.1, 1, 310)}
    goals = _goals(units)
    spend = goals[goals.goal == "purchase"].assign(goal="spend", sum_value=lambda f: 2.0 * f["count"])
    goals = pd.concat([goals, spend.assign(sum_sqr_value=lambda f: 4.0 * f["count"])], ignore_index=True)
    metric = (1, "revenue per spend", REVENUE, "value(test_unit_type.unit.spend)")
    raw = {"id": "edge", "control_variant": "a", "unit_type": "test_unit_type"}
    raw["metrics"] = [{"id": 1, "name": metric[1], "nominator": metric[2], "denominator": metric[3],
                       "minimum_effect": 0.1}]  # fmt: skip
    ours = evaluate_goals(parse_experiment(raw), goals).metrics.set_index("exp_variant_id")
    theirs = Experiment("edge", "a", [Metric(*metric, minimum_effect=0.1)], [], unit_type="test_unit_type")
    theirs_m = theirs.evaluate_agg(goals).metrics.set_index("exp_variant_id")
    for column in ("sample_size", "required_sample_size", "power"):
        np.testing.assert_allclose(
            ours[column].to_numpy(float), theirs_m[column].to_numpy(float), rtol=1e-9, equal_nan=True, err_msg=column
        )
    assert np.isnan(ours.loc["b", "sample_size"]) and np.isnan(ours.loc["b", "power"])
    assert ours.loc["b", "required_sample_size"] > 0


def _click_goals(rows: list[tuple[str, int, int, int]]) -> pd.DataFrame:
    """ep-stats' aggregated goals from (variant, exposures, Σ clicks, Σ clicks² over the units)."""
    out = []
    for variant, n, clicks, squares in rows:
        out.append((variant, "global", "exposure", n, n, 0.0, 0.0, n))
        out.append((variant, "unit", "click", clicks, squares, 0.0, 0.0, n))
    columns = ["exp_variant_id", "agg_type", "goal", "count", "sum_sqr_count", "sum_value", "sum_sqr_value"]
    return pd.DataFrame(out, columns=[*columns, "count_unique"]).assign(exp_id="edge", unit_type="test_unit_type")


CLICKS = (1, "clicks", "count(test_unit_type.unit.click)", EXPOSURE)


def _clicks_definition(**extra: object) -> dict[str, object]:
    raw: dict[str, object] = {"id": "edge", "control_variant": "a", "unit_type": "test_unit_type", **extra}
    metric = {"id": 1, "name": CLICKS[1], "nominator": CLICKS[2], "denominator": CLICKS[3]}
    raw["metrics"] = [{**metric, "minimum_effect": 0.1}] if "null_hypothesis_rate" in extra else [metric]
    return raw


def test_compat_infinite_statistic_with_a_sum_of_ten_is_epstats() -> None:
    """ep-stats sets an infinite test statistic to 0 when the treatment's sum_value is at most 10."""
    goals = _click_goals([("a", 20, 20, 20), ("b", 5, 10, 20)])  # b: 5 units with 2 clicks each, sum 10
    ours = evaluate_goals(parse_experiment(_clicks_definition()), goals, compat=True).metrics
    theirs = Experiment("edge", "a", [Metric(*CLICKS)], [], unit_type="test_unit_type").evaluate_agg(goals).metrics
    np.testing.assert_array_equal(ours["test_stat"].to_numpy(float), theirs["test_stat"].to_numpy(float))
    assert ours["test_stat"].iloc[1] == 0.0  # the control, compared with itself, is 0 / 0


def test_false_positive_risk_uses_the_relative_p_value_as_epstats() -> None:
    """Treatment mean 30% above the control: relative and absolute p-values differ; ep-stats' risk is
    computed from the relative one (the p_value column)."""
    goals = _click_goals([("a", 900, 900, 2700), ("b", 900, 1170, 3900)])
    raw = _clicks_definition(null_hypothesis_rate=0.3)
    ours = evaluate_goals(parse_experiment(raw), goals).metrics.set_index("exp_variant_id")
    metric = Metric(*CLICKS, minimum_effect=0.1)
    experiment = Experiment("edge", "a", [metric], [], unit_type="test_unit_type", null_hypothesis_rate=0.3)
    theirs = experiment.evaluate_agg(goals).metrics.set_index("exp_variant_id")
    assert ours.loc["b", "p_value"] == pytest.approx(theirs.loc["b", "p_value"], rel=1e-6)
    assert ours.loc["b", "p_value"] < 0.05 and abs(ours.loc["b", "abs_p_value"] / ours.loc["b", "p_value"] - 1) > 0.1
    assert ours.loc["b", "false_positive_risk"] == pytest.approx(theirs.loc["b", "false_positive_risk"], rel=1e-6)
    p, power = ours.loc["b", "p_value"], ours.loc["b", "power"]
    assert ours.loc["b", "false_positive_risk"] == pytest.approx(p * 0.3 / (p * 0.3 + power * 0.7), rel=1e-9)


def test_an_empty_treatment_has_no_power() -> None:
    """b has clicks but no exposure (denominator 0): every comparison of the row is NaN (docs), power and
    required sample size included."""
    goals = _click_goals([("a", 900, 900, 2700), ("b", 0, 5, 5)])
    m = evaluate_goals(parse_experiment(_clicks_definition(null_hypothesis_rate=0.3)), goals).metrics
    b = m.set_index("exp_variant_id").loc["b"]
    assert EMPTY in b["reason"]
    for column in ("mean", "diff", "p_value", "required_sample_size", "power", "false_positive_risk"):
        assert np.isnan(b[column]), column


@pytest.mark.parametrize(
    ("denominator", "warned"),
    [
        ("count(u.global.exposure)", False),
        ("count(u.global.exposure) + 1", True),
        ("2 * count(u.global.exposure)", True),
    ],
)
def test_the_per_unit_variance_warning_names_every_denominator_but_the_exposures(
    denominator: str, warned: bool
) -> None:
    """Only the bare exposures are the units; a shifted or scaled count is not (docs: warns for each such metric)."""
    metric = {"id": 1, "name": "m", "nominator": "count(u.unit.click)", "denominator": denominator}
    experiment = parse_experiment({"id": "w", "control_variant": "a", "unit_type": "u", "metrics": [metric]})
    assert len(per_unit_variance_warnings(experiment)) == int(warned)


def test_absolute_p_values_get_the_holm_correction_too() -> None:
    """Three variants: the absolute p-values of b and c are Holm-adjusted like the relative ones (docs),
    checked against statsmodels on Welch tests of the unit values."""
    rng = np.random.default_rng(33)
    units = {"a": rng.lognormal(3, 1, 500), "b": rng.lognormal(3.12, 1, 480), "c": rng.lognormal(3.05, 1, 510)}
    raw = {"id": "edge", "control_variant": "a", "unit_type": "test_unit_type"}
    raw["metrics"] = [{"id": 1, "name": "revenue", "nominator": REVENUE, "denominator": EXPOSURE}]
    m = evaluate_goals(parse_experiment(raw), _goals(units)).metrics.set_index("exp_variant_id")
    tests = [_welch(units["a"], units[v]) for v in ("b", "c")]
    for column, raw_p in (("p_value", [r for r, _ in tests]), ("abs_p_value", [a for _, a in tests])):
        expected = multipletests(raw_p, method="holm")[1]
        assert expected[0] != pytest.approx(raw_p[0])  # the correction changes something
        np.testing.assert_allclose(m.loc[["b", "c"], column].to_numpy(float), expected, rtol=1e-9, err_msg=column)


def test_exposures_are_the_exposure_count_not_the_exposed_units() -> None:
    """A unit exposed twice counts twice (count 120 from 100 units in a): ep-stats' exposures frame."""
    goals = _click_goals([("a", 120, 30, 50), ("b", 90, 30, 50)])
    goals.loc[(goals.goal == "exposure") & (goals.exp_variant_id == "a"), "count_unique"] = 100
    ours = evaluate_goals(parse_experiment(_clicks_definition()), goals).exposures
    theirs = Experiment("edge", "a", [Metric(*CLICKS)], [], unit_type="test_unit_type").evaluate_agg(goals).exposures
    assert ours["exposures"].tolist() == theirs["exposures"].tolist() == [120, 90]


def _views_goals(units: dict[str, dict[str, np.ndarray]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Aggregated goals (goal_key layout) and the cross products of every goal pair from unit counts."""
    goals, cross = [], []
    key = {
        g: f"count(user.{'global' if g == 'exposure' else 'unit'}.{g})" for g in ("exposure", "view", "click", "buy")
    }
    for variant, u in units.items():
        for goal, x in u.items():
            goals.append({"exp_variant_id": variant, "goal_key": key[goal], "count": x.sum(),
                          "sum_sqr_count": (x * x).sum(), "sum_value": 0.0, "sum_sqr_value": 0.0,
                          "count_unique": float((x > 0).sum())})  # fmt: skip
        cross += [{"exp_variant_id": variant, "left_key": key[a], "right_key": key[b],
                   "sum_product": (u[a] * u[b]).sum(), "units": len(u[a])} for a in u for b in u if a < b]  # fmt: skip
    return pd.DataFrame(goals), pd.DataFrame(cross)


def _view_units(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    views = (1 + rng.poisson(4, n)).astype(float)
    clicks = rng.binomial(views.astype(int), 0.3).astype(float)
    return {"exposure": np.ones(n), "view": views, "click": clicks, "buy": rng.binomial(clicks.astype(int), 0.4) * 1.0}


def _user_definition(nominator: str, denominator: str) -> dict[str, object]:
    metric = {"id": 1, "name": "m", "nominator": nominator, "denominator": denominator}
    return {"id": "e", "control_variant": "a", "unit_type": "user", "metrics": [metric]}


def test_delta_method_with_coefficients_matches_unit_level_numpy() -> None:
    """(clicks + 2·buys) per view: the coefficients enter the squares and the cross products."""
    rng = np.random.default_rng(17)
    units = {"a": _view_units(rng, 600), "b": _view_units(rng, 650)}
    goals, cross = _views_goals(units)
    raw = _user_definition("count(user.unit.click) + 2 * count(user.unit.buy)", "count(user.unit.view)")
    m = evaluate_goals(parse_experiment(raw), goals, cross).metrics.set_index("exp_variant_id")
    for variant, u in units.items():
        x, y = u["click"] + 2 * u["buy"], u["view"]
        ratio, y_bar = x.sum() / y.sum(), y.mean()
        gradient = np.array([1 / y_bar, -ratio / y_bar])
        variance = gradient @ np.cov(x, y, ddof=1) @ gradient / len(x)
        assert m.loc[variant, "mean"] == pytest.approx(ratio, rel=1e-12)
        assert m.loc[variant, "std"] ** 2 / m.loc[variant, "sample_size"] == pytest.approx(variance, rel=1e-9)


def test_a_constant_term_keeps_epstats_treatment_even_with_cross_products() -> None:
    """(clicks - 5) per view is not Σ c·goal: no delta method; sums and moments as ep-stats' evaluate_agg."""
    rng = np.random.default_rng(19)
    units = {"a": _view_units(rng, 300), "b": _view_units(rng, 320)}
    goals, cross = _views_goals(units)
    nominator, denominator = "count(user.unit.click) - 5", "count(user.unit.view)"
    ours = evaluate_goals(parse_experiment(_user_definition(nominator, denominator)), goals, cross).metrics
    agg = goals.assign(
        exp_id="e", unit_type="user", goal=goals.goal_key.str.extract(r"\.(\w+)\)$")[0],
        agg_type=np.where(goals.goal_key.str.contains("global"), "global", "unit"),
    )  # fmt: skip
    theirs = Experiment("e", "a", [Metric(1, "m", nominator, denominator)], [], unit_type="user").evaluate_agg(agg)
    for column in ("sum_value", "mean", "std", "sample_size", "p_value"):
        np.testing.assert_allclose(
            ours[column].to_numpy(float), theirs.metrics[column].to_numpy(float), rtol=1e-9, err_msg=column
        )
    clicks = {v: u["click"].sum() for v, u in units.items()}
    assert ours["sum_value"].tolist() == [clicks["a"] - 5, clicks["b"] - 5]


def test_a_denominator_with_a_value_goal_has_no_sample_size() -> None:
    """docs: sample_size is NaN when the denominator sums value() goals, whatever else it sums."""
    goals = _click_goals([("a", 900, 900, 2700), ("b", 900, 1000, 3000)])
    raw = _clicks_definition()
    raw["metrics"][0]["denominator"] = f"{EXPOSURE} + value(test_unit_type.unit.click)"  # type: ignore[index]
    m = evaluate_goals(parse_experiment(raw), goals).metrics
    assert m["sample_size"].isna().all() and m["count"].tolist() == [900.0, 900.0]
