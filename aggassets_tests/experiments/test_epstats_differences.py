"""Where we deliberately differ from ep-stats: its value in compat mode, ours from an independent computation."""

import numpy as np
import pandas as pd
import pytest
from epstats.toolkit import Experiment, Metric
from epstats.toolkit.parser import Parser
from epstats.toolkit.testing import TestData
from scipy import stats as st

from aggassets.experiments.comparison import (
    EMPTY,
    FEW_UNITS,
    NEGATIVE_VARIANCE,
    ZERO_CONTROL_MEAN,
    ZERO_RELATIVE_SE,
    ZERO_VARIANCE,
)
from aggassets.experiments.definition import ExperimentDefinition, parse_experiment
from aggassets.experiments.evaluate import evaluate_goals
from aggassets.experiments.expressions import evaluate, parse_expression
from aggassets_tests.experiments.reference_data import REFERENCE_DIR, load_reference

MULTIPLE_METRICS = [
    (1, "CTR", "count(test_unit_type.unit.click)", "count(test_unit_type.global.exposure)"),
    (2, "Bookings", "value(test_unit_type.unit.conversion)", "count(test_unit_type.global.exposure)"),
    (3, "Conversion", "count(test_unit_type.unit.conversion)", "count(test_unit_type.global.exposure)"),
]
COMPARED = ["diff", "test_stat", "p_value", "confidence_interval", "standard_error", "degrees_of_freedom"]


def _definition(exp_id: str, control: str, metrics: list[tuple[int, str, str, str]]) -> ExperimentDefinition:
    """A definition with the given metrics and no checks."""
    raw = {"id": exp_id, "control_variant": control, "unit_type": "test_unit_type", "checks": []}
    raw["metrics"] = [{"id": i, "name": n, "nominator": a, "denominator": b} for i, n, a, b in metrics]
    return parse_experiment(raw)


def _epstats(exp_id: str, control: str, metrics: list[tuple[int, str, str, str]], goals: pd.DataFrame) -> pd.DataFrame:
    """ep-stats' own evaluate_agg."""
    experiment = Experiment(exp_id, control, [Metric(*m) for m in metrics], [], unit_type="test_unit_type")
    return experiment.evaluate_agg(goals).metrics


def _welch_relative(m_c: float, s_c: float, n_c: float, m_t: float, s_t: float, n_t: float) -> tuple[float, ...]:
    """Relative difference, its delta-method se, truncated Welch df and p-value, by hand."""
    se = np.sqrt((m_t * s_c) ** 2 / (m_c**2 * n_c) + s_t**2 / n_t) / abs(m_c)
    a, b = s_c**2 / n_c, s_t**2 / n_t
    df = np.trunc((a + b) ** 2 / (a**2 / (n_c - 1) + b**2 / (n_t - 1)))
    diff = (m_t - m_c) / abs(m_c)
    return diff, se, df, 2 * st.t.sf(abs(diff / se), df)


def _moments(goals: pd.DataFrame, variant: str, goal: str, column: str) -> tuple[float, float, float]:
    """Mean, std and n of value/count per exposure from the raw aggregated rows."""
    rows = goals[goals.exp_variant_id == variant]
    n = float(rows[rows.goal == "exposure"]["count"].sum())
    g = rows[(rows.goal == goal) & (rows.agg_type == "unit")]
    s = float(g[column].sum())
    q = float(g["sum_sqr_value" if column == "sum_value" else "sum_sqr_count"].sum())
    return s / n, np.sqrt((q - s * s / n) / (n - 1)), n


def test_holm_with_control_not_first_compat_is_epstats() -> None:
    goals = TestData.load_goals_agg("test-multiple")
    ours = evaluate_goals(_definition("test-multiple", "b", MULTIPLE_METRICS), goals, compat=True).metrics
    theirs = _epstats("test-multiple", "b", MULTIPLE_METRICS, goals)
    for col in COMPARED:
        np.testing.assert_allclose(ours[col].to_numpy(float), theirs[col].to_numpy(float), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("metric_id", "goal", "column"), [(1, "click", "count"), (2, "conversion", "sum_value")])
def test_holm_with_control_not_first_adjusts_the_treatments(metric_id: int, goal: str, column: str) -> None:
    goals = TestData.load_goals_agg("test-multiple")
    ours = evaluate_goals(_definition("test-multiple", "b", MULTIPLE_METRICS), goals).metrics
    ours = ours[ours.metric_id == metric_id].set_index("exp_variant_id")
    control = _moments(goals, "b", goal, column)
    raw = {v: _welch_relative(*control, *_moments(goals, v, goal, column))[3] for v in ("a", "c")}
    low, high = sorted(raw, key=raw.get)  # type: ignore[arg-type]
    holm = {low: min(1.0, 2 * raw[low]), high: min(1.0, max(2 * raw[low], raw[high]))}
    for v in ("a", "c"):
        assert ours.loc[v, "p_value"] == pytest.approx(holm[v], rel=1e-9)
    assert ours.loc["b", "p_value"] == 1.0
    theirs = _epstats("test-multiple", "b", MULTIPLE_METRICS, goals)
    theirs = theirs[theirs.metric_id == metric_id].set_index("exp_variant_id")
    assert theirs.loc["a", "p_value"] == pytest.approx(raw["a"], rel=1e-9)  # ep-stats leaves `a` unadjusted


def _negative_goals() -> pd.DataFrame:
    """Profit per user: control mean -2, treatment mean -1 (an improvement)."""
    rows = []
    for variant, n, s, var in (("a", 100, -200.0, 9.0), ("b", 120, -120.0, 4.0)):
        q = var * (n - 1) + s * s / n
        rows.append(("neg", variant, "test_unit_type", "global", "exposure", n, n, n, n, n))
        rows.append(("neg", variant, "test_unit_type", "unit", "profit", n, n, s, q, n))
    columns = ["exp_id", "exp_variant_id", "unit_type", "agg_type", "goal", "count", "sum_sqr_count"]
    return pd.DataFrame(rows, columns=[*columns, "sum_value", "sum_sqr_value", "count_unique"])


def test_negative_control_mean() -> None:
    metric = [(1, "Profit", "value(test_unit_type.unit.profit)", "count(test_unit_type.global.exposure)")]
    goals = _negative_goals()
    theirs = _epstats("neg", "a", metric, goals).set_index("exp_variant_id")
    compat = evaluate_goals(_definition("neg", "a", metric), goals, compat=True).metrics.set_index("exp_variant_id")
    ours = evaluate_goals(_definition("neg", "a", metric), goals).metrics.set_index("exp_variant_id")
    assert theirs.loc["b", "standard_error"] < 0 and theirs.loc["b", "confidence_interval"] < 0
    for col in COMPARED:
        assert compat.loc["b", col] == pytest.approx(theirs.loc["b", col], rel=1e-9)
    diff, se, df, p = _welch_relative(-2.0, 3.0, 100, -1.0, 2.0, 120)
    assert diff == pytest.approx(0.5)
    assert ours.loc["b", "diff"] == pytest.approx(diff)
    assert ours.loc["b", "standard_error"] == pytest.approx(se) and se > 0
    assert ours.loc["b", "test_stat"] == pytest.approx(diff / se) and ours.loc["b", "test_stat"] > 0
    assert ours.loc["b", "p_value"] == pytest.approx(p)
    assert ours.loc["b", "confidence_interval"] == pytest.approx(se * st.t.ppf(0.975, df))


def _three_goals() -> pd.DataFrame:
    """One variant: goals a = 6, b = 3, c = 2."""
    base = {"exp_id": "e", "exp_variant_id": "a", "unit_type": "u", "agg_type": "unit", "count_unique": 1}
    rows = [{**base, "goal": g, "count": v, "sum_sqr_count": v, "sum_value": float(v), "sum_sqr_value": float(v)}
            for g, v in (("a", 6), ("b", 3), ("c", 2))]  # fmt: skip
    return pd.DataFrame(rows)


def test_operator_precedence_is_left_associative_unlike_epstats() -> None:
    text = "count(u.unit.a) / count(u.unit.b) * count(u.unit.c)"
    ours = evaluate(parse_expression(text), {"count(u.unit.a)": 6.0, "count(u.unit.b)": 3.0, "count(u.unit.c)": 2.0})
    assert float(ours) == (6 / 3) * 2
    _, theirs, _ = Parser(text, "count(u.unit.a)").evaluate_agg(_three_goals())
    assert float(theirs[0]) == 6 / (3 * 2)


def test_decimal_constants_unlike_epstats_silent_truncation() -> None:
    ours = evaluate(parse_expression("0.5 * value(u.unit.a)"), {"value(u.unit.a)": np.array([6.0])})
    assert float(ours[0]) == 3.0
    _, theirs, _ = Parser("0.5 * value(u.unit.a)", "count(u.unit.a)").evaluate_agg(_three_goals())
    assert float(np.asarray(theirs).ravel()[0]) == 0.0  # ep-stats reads "0" and drops the rest


def _default(name: str) -> pd.DataFrame:
    """Our default evaluation of a reference experiment on ep-stats' goals."""
    _, experiment = load_reference(REFERENCE_DIR / name)
    return evaluate_goals(experiment, TestData.load_goals_agg()).metrics.set_index("exp_variant_id")


def test_zero_relative_standard_error_is_nan_with_reason() -> None:
    m = _default("test-missing-value.json")  # a: 30 of 50 clicked; b: 0 of 60
    assert np.isnan(m.loc["b", "p_value"]) and np.isnan(m.loc["b", "confidence_interval"])
    assert m.loc["b", "diff"] == pytest.approx(-1.0) and ZERO_RELATIVE_SE in m.loc["b", "reason"]
    s_a = np.sqrt((30 - 30 * 30 / 50) / 49)
    expected = st.ttest_ind_from_stats(0.0, 0.0, 60, 0.6, s_a, 50, equal_var=False).pvalue
    assert m.loc["b", "abs_p_value"] == pytest.approx(expected, rel=1e-9)


def test_zero_control_mean_is_nan_with_reason() -> None:
    m = _default("test-missing-default-value.json")  # a: 0 of 42; b: 10 of 40
    assert np.isnan(m.loc["b", "diff"]) and ZERO_CONTROL_MEAN in m.loc["b", "reason"]
    assert m.loc["b", "abs_diff"] == pytest.approx(0.25)


def _value_metric(a: tuple[float, float], b: tuple[float, float], units: tuple[int, int] = (50, 60)) -> pd.DataFrame:
    """Our evaluation of value(u.unit.x) per exposure, from (Σx, Σx²) of 50 units of a (the control) and 60
    units of b (or `units`)."""
    raw = {"id": "z", "control_variant": "a", "unit_type": "u"}
    raw["metrics"] = [{"id": 1, "name": "x", "nominator": "value(u.unit.x)", "denominator": "count(u.global.exposure)"}]
    (n_a, n_b) = units
    rows = [
        ("a", "exposure", n_a, 0.0, 0.0),
        ("a", "x", n_a, *a),
        ("b", "exposure", n_b, 0.0, 0.0),
        ("b", "x", n_b, *b),
    ]
    goals = pd.DataFrame(
        [("z", v, "u", "global" if g == "exposure" else "unit", g, n, n, sv, ssv, n) for v, g, n, sv, ssv in rows],
        columns=["exp_id", "exp_variant_id", "unit_type", "agg_type", "goal", "count", "sum_sqr_count", "sum_value",
                 "sum_sqr_value", "count_unique"],
    )  # fmt: skip
    return evaluate_goals(parse_experiment(raw), goals).metrics.set_index("exp_variant_id")


def test_zero_variance_in_both_variants_keeps_the_differences_and_a_zero_standard_error() -> None:
    """Every unit of a has 1, of b 2: no test (NaN p-value, reason), but the relative difference (2 - 1) / 1,
    the absolute one and their standard error sqrt(0/50 + 0/60) = 0 are kept."""
    m = _value_metric((50.0, 50.0), (120.0, 240.0))
    assert ZERO_VARIANCE in m.loc["b", "reason"] and np.isnan(m.loc["b", "p_value"])
    assert (m.loc["b", "diff"], m.loc["b", "abs_diff"], m.loc["b", "standard_error"]) == (1.0, 1.0, 0.0)


def test_zero_control_mean_with_a_variance_has_no_relative_standard_error() -> None:
    """Control values summing to 0 with a variance (their relative standard error would be inf): the
    relative difference and its standard error are NaN, the absolute test is Welch's (scipy)."""
    m = _value_metric((0.0, 450.0), (120.0, 600.0))
    assert ZERO_CONTROL_MEAN in m.loc["b", "reason"]
    assert np.isnan(m.loc["b", "diff"]) and np.isnan(m.loc["b", "standard_error"])
    v_a, v_b = 450.0 / 49 / 50, (600.0 - 120.0**2 / 60) / 59 / 60  # squared standard errors of the means
    df = np.trunc((v_a + v_b) ** 2 / (v_a**2 / 49 + v_b**2 / 59))  # Welch-Satterthwaite, truncated (ep-stats)
    expected = 2 * st.t.sf(2.0 / np.sqrt(v_a + v_b), df)
    assert m.loc["b", "abs_diff"] == pytest.approx(2.0) and m.loc["b", "abs_p_value"] == pytest.approx(expected)


def test_a_zero_control_mean_is_named_beside_the_rows_own_reason() -> None:
    """One unit of b (its diff is kept, docs) against a control of mean 0: the relative diff is NaN for the
    zero control mean, and the reason says so too, not only that b has fewer than 2 units."""
    m = _value_metric((0.0, 0.0), (5.0, 25.0), units=(50, 1))
    assert np.isnan(m.loc["b", "diff"]) and m.loc["b", "abs_diff"] == 5.0
    assert FEW_UNITS in m.loc["b", "reason"] and ZERO_CONTROL_MEAN in m.loc["b", "reason"]


@pytest.mark.parametrize(
    ("name", "variant"), [("test-missing-exposure.json", "b"), ("test-missing-default-exposure.json", "a")]
)
def test_empty_variant_is_nan_with_reason(name: str, variant: str) -> None:
    m = _default(name)
    assert np.isnan(m.loc[variant, "mean"]) and np.isnan(m.loc[variant, "diff"])
    assert EMPTY in m.loc[variant, "reason"]


def test_dimension_operators_are_evaluated_not_matched_as_text() -> None:
    m = _default("test-dim-operators.json")  # the bundled rows hold the texts "^button-1", ">1", "!=1"
    assert list(m["sum_value"]) == [0.0, 0.0, 0.0, 0.0]


def _conversion_goals(exp_id: str, rows: list[tuple[str, int, int]]) -> pd.DataFrame:
    """ep-stats' aggregated goals of a conversion test: (variant, exposures, buyers)."""
    out = []
    for variant, exposed, bought in rows:
        for agg, goal, n in (("global", "exposure", exposed), ("unit", "buy", bought)):
            out.append({"exp_id": exp_id, "exp_variant_id": variant, "unit_type": "test_unit_type", "agg_type": agg,
                        "goal": goal, "dimension": "", "dimension_value": "", "count": n, "sum_sqr_count": n,
                        "sum_value": 0, "sum_sqr_value": 0, "count_unique": n})  # fmt: skip
    return pd.DataFrame(out)


CONVERSION = [(1, "conv", "count(test_unit_type.unit.buy)", "count(test_unit_type.global.exposure)")]


@pytest.mark.parametrize(
    ("rows", "variants"),
    [
        ([("a", 10000, 1000), ("b", 10000, 2000), ("c", 10000, 1100)], None),  # b's p below 1e-16: 0 in ep-stats
        ([("a", 100, 20), ("b", 120, 30)], ["a", "b", "c"]),  # c listed, no rows: a NaN p in the Holm family
    ],
)
@pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")  # ep-stats 0/0
def test_compat_reproduces_epstats_p_rounding_and_holm_family(
    rows: list[tuple[str, int, int]], variants: list[str] | None
) -> None:
    goals = _conversion_goals("compat", rows)
    definition = _definition("compat", "a", CONVERSION)
    if variants is not None:
        definition = parse_experiment({**definition.model_dump(exclude_none=True), "variants": variants})
    ours = evaluate_goals(definition, goals, compat=True).metrics
    experiment = Experiment("compat", "a", [Metric(*CONVERSION[0])], [], unit_type="test_unit_type", variants=variants)
    theirs = experiment.evaluate_agg(goals).metrics
    for col in COMPARED:
        np.testing.assert_allclose(ours[col].to_numpy(float), theirs[col].to_numpy(float), rtol=1e-9, atol=1e-12)


def test_zero_control_mean_leaves_power_and_sample_size_undefined() -> None:
    goals = _conversion_goals("zero", [("a", 100, 0), ("b", 100, 10)])
    raw = {"id": "zero", "control_variant": "a", "unit_type": "test_unit_type"}
    raw["metrics"] = [{"id": 1, "name": "conv", "nominator": CONVERSION[0][2], "denominator": CONVERSION[0][3],
                       "minimum_effect": 0.1}]  # fmt: skip
    m = evaluate_goals(parse_experiment(raw), goals).metrics.set_index("exp_variant_id")
    for col in ("required_sample_size", "power", "false_positive_risk"):
        assert np.isnan(m.loc["b", col]), col
    assert ZERO_CONTROL_MEAN in m.loc["b", "reason"] and m.loc["b", "abs_diff"] == pytest.approx(0.1)


def _unit_goals(units: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """ep-stats' aggregated goals (per variant: exposure, purchase, refund) from unit-level values."""
    rows = []
    for variant, frame in units.items():
        rows.append((variant, "global", "exposure", len(frame), len(frame), 0.0, 0.0, len(frame)))
        for goal in ("purchase", "refund"):
            x = frame[goal].to_numpy()
            has = x != 0
            rows.append((variant, "unit", goal, int(has.sum()), int(has.sum()), x.sum(), (x * x).sum(), int(has.sum())))
    columns = ["exp_variant_id", "agg_type", "goal", "count", "sum_sqr_count", "sum_value", "sum_sqr_value"]
    goals = pd.DataFrame(rows, columns=[*columns, "count_unique"])
    return goals.assign(exp_id="refunds", unit_type="test_unit_type")


def test_a_difference_of_goals_no_unit_has_together_has_the_units_variance() -> None:
    """Purchases minus refunds, no unit with both: Σ(a - b)² = Σa² + Σb² (ep-stats takes Σa² - Σb², which
    shrinks the variance and the p-value). Checked against numpy and a Welch test (truncated df) on the unit values;
    `a - b` and `a + -b` now agree."""
    rng = np.random.default_rng(7)
    units = {}
    for variant, shift in (("a", 0.0), ("b", 3.0)):
        kind = rng.choice(3, size=800, p=[0.6, 0.3, 0.1])  # nothing, a purchase, a refund
        amount = rng.lognormal(3, 1, size=800) + shift
        units[variant] = pd.DataFrame(
            {"purchase": np.where(kind == 1, amount, 0.0), "refund": np.where(kind == 2, amount, 0.0)}
        )
    goals = _unit_goals(units)
    spellings = [
        "value(test_unit_type.unit.purchase) - value(test_unit_type.unit.refund)",
        "value(test_unit_type.unit.purchase) + -value(test_unit_type.unit.refund)",
    ]
    metrics = [(i + 1, "net", nom, "count(test_unit_type.global.exposure)") for i, nom in enumerate(spellings)]
    net = {v: (f["purchase"] - f["refund"]).to_numpy() for v, f in units.items()}
    va, vb = (np.var(net[v], ddof=1) / len(net[v]) for v in ("a", "b"))
    df = np.trunc((va + vb) ** 2 / (va**2 / (len(net["a"]) - 1) + vb**2 / (len(net["b"]) - 1)))  # ep-stats' df
    t_stat = (net["b"].mean() - net["a"].mean()) / np.sqrt(va + vb)
    result = evaluate_goals(_definition("refunds", "a", metrics), goals).metrics
    for metric_id in (1, 2):
        rows = result[result.metric_id == metric_id].set_index("exp_variant_id")
        for variant in ("a", "b"):
            assert rows.loc[variant, "std"] == pytest.approx(np.std(net[variant], ddof=1), rel=1e-12)
        assert rows.loc["b", "abs_p_value"] == pytest.approx(2 * st.t.sf(abs(t_stat), df), rel=1e-9)
    compat = evaluate_goals(_definition("refunds", "a", metrics[:1]), goals, compat=True).metrics.set_index(
        "exp_variant_id"
    )
    theirs = _epstats("refunds", "a", metrics[:1], goals).set_index("exp_variant_id")
    np.testing.assert_allclose(
        compat.loc[["a", "b"], "std"].astype(float), theirs.loc[["a", "b"], "std"].astype(float), rtol=1e-9
    )
    assert compat.loc["a", "std"] < np.std(net["a"], ddof=1)  # ep-stats' variance is too small here


@pytest.mark.filterwarnings("error::RuntimeWarning")  # NaN with a reason, and no numpy warning on stderr
@pytest.mark.parametrize("scale", [1e78, 1e150, 1e-150])
def test_values_beyond_what_float64_can_square_give_nan_with_a_reason(scale: float) -> None:
    """The same experiment at every scale is the same test (scale-invariant); where its squares overflow
    or underflow, the comparison is NaN with a reason, not p = 1 with an infinite interval (sums of squares
    beyond float64's range: a variance the sums contradict, or a test out of range); the control's row too
    (it showed NaN without a reason and an infinite standard error), and no standard error is infinite."""
    rng = np.random.default_rng(11)
    units = {v: pd.DataFrame({"purchase": rng.lognormal(3, 1, 500) + shift, "refund": 0.0}) for v, shift in
             (("a", 0.0), ("b", 3.0))}  # fmt: skip
    metrics = [(1, "revenue", "value(test_unit_type.unit.purchase)", "count(test_unit_type.global.exposure)")]
    plain = evaluate_goals(_definition("refunds", "a", metrics), _unit_goals(units)).metrics.set_index("exp_variant_id")
    assert plain.loc["b", "reason"] == "" and 0 < plain.loc["b", "p_value"] < 1
    scaled = {v: f.assign(purchase=f["purchase"] * scale) for v, f in units.items()}
    result = evaluate_goals(_definition("refunds", "a", metrics), _unit_goals(scaled)).metrics.set_index(
        "exp_variant_id"
    )
    row = result.loc["b"]
    assert "beyond float64's range" in row["reason"] or "negative variance estimate" in row["reason"]
    for column in ("p_value", "abs_p_value"):  # each test either right or NaN: never a wrong number
        assert np.isnan(row[column]) or row[column] == pytest.approx(plain.loc["b", column], rel=1e-6)
    assert np.isnan(row["p_value"]) or np.isnan(row["abs_p_value"])
    control = result.loc["a"]  # its comparison with itself: p = 1 when in range, else NaN with a reason
    stats = control[["test_stat", "p_value", "abs_p_value", "degrees_of_freedom"]].astype(float)
    in_range = (
        control["p_value"] == 1.0
        and np.isfinite(control[["confidence_interval", "standard_error"]].astype(float)).all()
    )
    assert in_range != (control["reason"] != "")
    assert in_range or np.isnan(stats).all()
    intervals = result[["standard_error", "confidence_interval", "abs_confidence_interval"]].astype(float)
    assert not np.isinf(intervals.to_numpy()).any()


@pytest.mark.parametrize("case", ["one unit", "sums of squares below (sum)^2 / n"])
def test_a_variant_without_a_variance_is_nan_with_its_reason(case: str) -> None:
    """One exposed unit leaves the variance undefined; aggregated sums whose Σx² < (Σx)²/n contradict
    themselves: the treatment's test is NaN with the reason, not a number."""
    rng = np.random.default_rng(5)
    sizes = {"a": 400, "b": 1 if case == "one unit" else 300}
    units = {v: pd.DataFrame({"purchase": rng.lognormal(3, 1, n), "refund": 0.0}) for v, n in sizes.items()}
    goals = _unit_goals(units)
    if case != "one unit":
        row = (goals.exp_variant_id == "b") & (goals.goal == "purchase")
        s, n = goals.loc[row, "sum_value"].iloc[0], sizes["b"]
        goals.loc[row, "sum_sqr_value"] = 0.5 * s * s / n
    metrics = [(1, "revenue", "value(test_unit_type.unit.purchase)", "count(test_unit_type.global.exposure)")]
    m = evaluate_goals(_definition("refunds", "a", metrics), goals).metrics.set_index("exp_variant_id")
    assert (FEW_UNITS if case == "one unit" else NEGATIVE_VARIANCE) in m.loc["b", "reason"]
    for column in ("p_value", "abs_p_value", "confidence_interval", "test_stat"):
        assert np.isnan(m.loc["b", column]), column
    assert m.loc["a", "reason"] == ""


def test_holm_ranks_p_values_that_underflow_to_zero_by_their_test() -> None:
    """Two treatments so far from the control that both p-values underflow to 0: Holm still ranks the larger
    |t| first, so it gets the factor 1/3 and the other 1/2 (it went by variant order); the third, p ~ 1e-12,
    keeps alpha · p / p_adjusted = alpha. Hand Welch (_welch_relative) and Holm's rule; 1e6 units, std 1."""
    n, std = 1_000_000, 1.0
    means = {"a": 1.0, "b": 1.2, "c": 1.3, "d": 1.01}
    rows = []
    for v, mean in means.items():
        rows += [("h", v, "u", "global", "exposure", n, n, 0.0, 0.0, n)]
        rows += [("h", v, "u", "unit", "x", n, n, n * mean, (n - 1) * std**2 + n * mean**2, n)]
    goals = pd.DataFrame(rows, columns=["exp_id", "exp_variant_id", "unit_type", "agg_type", "goal", "count",
                                        "sum_sqr_count", "sum_value", "sum_sqr_value", "count_unique"])  # fmt: skip
    raw = {"id": "h", "control_variant": "a", "unit_type": "u", "variants": list(means)}
    raw["metrics"] = [{"id": 1, "name": "x", "nominator": "value(u.unit.x)", "denominator": "count(u.global.exposure)"}]
    metrics = evaluate_goals(parse_experiment(raw), goals).metrics.set_index("exp_variant_id")
    hand = {v: _welch_relative(1.0, std, n, means[v], std, n) for v in "bcd"}
    assert hand["b"][3] == hand["c"][3] == 0.0 and 0 < hand["d"][3] < 1e-9
    assert abs(hand["c"][0] / hand["c"][1]) > abs(hand["b"][0] / hand["b"][1])  # c is Holm's first
    for v, factor in (("c", 1 / 3), ("b", 1 / 2), ("d", 1.0)):
        _, se, df, _ = hand[v]
        want = se * st.t.ppf(1 - 0.05 * factor / 2, df)
        assert metrics.loc[v, "confidence_interval"] == pytest.approx(want, rel=1e-9)
