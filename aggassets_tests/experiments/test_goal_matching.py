"""Matching aggregated goal rows to goal references: dimension operators, goal_key, filters, dates."""

import datetime

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from aggassets.errors import AggassetsError
from aggassets.experiments.definition import ExperimentDefinition, parse_experiment
from aggassets.experiments.evaluate import evaluate_goals, goal_refs_needed
from aggassets.experiments.expressions import parse_expression
from aggassets.experiments.goals import build_goal_table

TODAY = datetime.date(2026, 11, 1)
VIEW_ROWS = [  # element, product, count: rollup rows leave a dimension empty
    ("button-1", "2", 10),
    ("button-12", "1", 20),
    ("button-1x", "5", 5),
    ("link", "3", 40),
    ("", "", 100),
    ("button-1", "", 30),
]


BOTH_DIMENSIONS = "count(user.unit.view(element=link, product=3))"


def _goals(rows: list[tuple[str, str, int]] = VIEW_ROWS, variant: str = "a") -> pd.DataFrame:
    """Exposures and view rows of one variant (count = every sum column)."""
    data = [("e", variant, "user", "global", "exposure", "", "", 1000)]
    data += [("e", variant, "user", "unit", "view", el, pr, c) for el, pr, c in rows]
    frame = pd.DataFrame(
        data, columns=["exp_id", "exp_variant_id", "unit_type", "agg_type", "goal", "element", "product", "count"]
    )
    for col in ("sum_sqr_count", "sum_value", "sum_sqr_value", "count_unique"):
        frame[col] = frame["count"]
    return frame


def _experiment(nominators: list[str], **extra: object) -> ExperimentDefinition:
    """An experiment with one metric per nominator over exposures."""
    metrics = [
        {"id": i, "name": f"m{i}", "nominator": n, "denominator": "count(user.global.exposure)"}
        for i, n in enumerate(nominators, 1)
    ]
    return parse_experiment({"id": "e", "control_variant": "a", "unit_type": "user", "metrics": metrics, **extra})


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ("", 100),
        ("(element=button-1)", 30),
        ("(element=^button-1, product>1)", 10 + 5),
        ("(element=^button-1, product!=1)", 10 + 5),
        ("(element=^button-1, product<=1)", 20),
        ("(element=^button-1, product>=2)", 15),
        ("(element=^button-1, product<3)", 30),
        ("(element=link, product=3)", 40),
        ("(element!=link, product>0)", 35),
        ("(element=^butt, product>1, product<5)", 10),
        ("(element>c, product>=1)", 40),
        ("(element=nothing)", 0),
    ],
)
def test_dimension_conditions_are_evaluated(conditions: str, expected: int) -> None:
    text = f"count(user.unit.view{conditions})"
    experiment = _experiment([text, BOTH_DIMENSIONS])
    table = build_goal_table(experiment, _goals(), goal_refs_needed(experiment), TODAY)
    assert table.sums(parse_expression(text)).tolist() == [expected]  # type: ignore[arg-type]


def test_only_dimensions_named_in_the_experiment_must_be_empty() -> None:
    experiment = _experiment(["count(user.unit.view)", "count(user.unit.view(element=button-1))"])
    evaluation = evaluate_goals(experiment, _goals(), as_of=TODAY)
    assert evaluation.metrics["sum_value"].tolist() == [100 + 0.0, 10 + 30.0]  # product is summed over


def test_numeric_dimension_cells_compare_as_numbers() -> None:
    goals = _goals([("button-1", "2", 10), ("button-1", "10", 7)])
    goals["product"] = pd.to_numeric(goals["product"].replace("", np.nan))
    experiment = _experiment(["count(user.unit.view(element=button-1, product=2))"])
    evaluation = evaluate_goals(experiment, goals, as_of=TODAY)
    assert evaluation.metrics["sum_value"].tolist() == [10.0]
    experiment = _experiment(["count(user.unit.view(element=button-1, product>9))"])
    assert evaluate_goals(experiment, goals, as_of=TODAY).metrics["sum_value"].tolist() == [7.0]


def test_long_digit_runs_are_text_in_a_goals_file_too() -> None:
    """As in the warehouse: a cell of more than 200 characters is text (400 ones would read as inf)."""
    goals = _goals([("button-1", "1" * 400, 1), ("button-1", "1" * 200, 2), ("button-1", "1" * 201, 4)])
    text = "count(user.unit.view(element=button-1, product>100))"
    table = build_goal_table(_experiment([text]), goals, goal_refs_needed(_experiment([text])), TODAY)
    assert table.sums(parse_expression(text)).tolist() == [2]  # type: ignore[arg-type]


def test_goal_key_rows_give_the_same_result_as_dimension_columns() -> None:
    texts = ["count(user.unit.view(element=^button-1, product>1))", "count(user.unit.view)"]
    experiment = _experiment(texts)
    goals = pd.concat([_goals(), _goals(variant="b")], ignore_index=True)
    by_columns = evaluate_goals(experiment, goals, as_of=TODAY).metrics
    keyed_rows = []
    table = build_goal_table(experiment, goals, goal_refs_needed(experiment), TODAY)
    for i, ref in enumerate(table.refs):
        for j, variant in enumerate(table.variants):
            sums = {col: table.values[col][i, j] for col in table.values}
            keyed_rows.append({"exp_variant_id": variant, "goal_key": ref.key, **sums})
    by_key = evaluate_goals(experiment, pd.DataFrame(keyed_rows), as_of=TODAY).metrics
    pd.testing.assert_frame_equal(by_columns, by_key)


def test_filters_exposure_and_goal_scope() -> None:
    goals = _goals()
    goals.loc[goals.goal == "exposure", "element"] = "button-1"
    goal_filter = [{"scope": "goal", "dimension": "element", "value": ["link"]}]
    experiment = _experiment(["count(user.unit.view)"], filters=goal_filter)
    assert evaluate_goals(experiment, goals, as_of=TODAY).metrics["sum_value"].tolist() == [40.0]
    exposure_filter = [{"scope": "exposure", "dimension": "element", "value": ["link"]}]
    experiment = _experiment(["count(user.unit.view)"], filters=exposure_filter)
    assert evaluate_goals(experiment, goals, as_of=TODAY).exposures["exposures"].tolist() == [0]


@pytest.mark.parametrize(("compat", "expected"), [(False, 1 + 2 + 4 + 8), (True, 2)])
def test_filter_values_match_as_the_warehouse_matches_them(compat: bool, expected: int) -> None:
    """A filter value 1 accepts the cells 1.0, 1, 1e0 and 01 (`=`'s rule, the warehouse's), not 1x, 2 or an
    empty cell; with --compat, ep-stats' text match: only the cell 1."""
    cells = ["1.0", "1", "1e0", "01", "1x", "2", ""]
    data = [("e", "a", "user", "global", "exposure", "", cell, 2**i) for i, cell in enumerate(cells)]
    goals = pd.DataFrame(
        data, columns=["exp_id", "exp_variant_id", "unit_type", "agg_type", "goal", "element", "product", "count"]
    )
    for col in ("sum_sqr_count", "sum_value", "sum_sqr_value", "count_unique"):
        goals[col] = goals["count"]
    experiment = _experiment(
        ["count(user.unit.view)"], filters=[{"scope": "exposure", "dimension": "product", "value": [1]}]
    )
    exposures = evaluate_goals(experiment, goals, as_of=TODAY, compat=compat).exposures
    assert exposures["exposures"].tolist() == [expected]


def test_trigger_filter_needs_unit_level_rows() -> None:
    experiment = _experiment(["count(user.unit.view)"], filters=[{"scope": "trigger", "goal": "click"}])
    with pytest.raises(AggassetsError, match="trigger"):
        evaluate_goals(experiment, _goals(), as_of=TODAY)


def test_date_window_and_as_of() -> None:
    goals = pd.concat([_goals().assign(date=d) for d in ("2026-10-01", "2026-10-05", "2026-10-20")])
    dates = {"date_from": "2026-10-02", "date_to": "2026-10-30"}
    experiment = _experiment(["count(user.unit.view)"], **dates)
    late = evaluate_goals(experiment, goals, as_of=datetime.date(2026, 11, 5))
    assert late.exposures["exposures"].tolist() == [2000]
    assert late.metrics["confidence_level"].tolist() == [0.95]
    early = evaluate_goals(experiment, goals, as_of=datetime.date(2026, 10, 10))
    assert early.exposures["exposures"].tolist() == [1000]
    assert early.metrics["confidence_level"].iloc[0] > 0.99


def test_missing_goals_and_variants_are_zeros() -> None:
    experiment = _experiment(["count(user.unit.click)"], variants=["a", "b"])
    evaluation = evaluate_goals(experiment, _goals(), as_of=TODAY)
    assert evaluation.metrics["sum_value"].tolist() == [0.0, 0.0]
    assert evaluation.exposures["exposures"].tolist() == [1000, 0]


@pytest.mark.parametrize("drop", ["sum_sqr_value", "element", "goal"])
def test_missing_columns_are_refused(drop: str) -> None:
    """The error names the missing column."""
    experiment = _experiment(["count(user.unit.view(element=link))"])
    with pytest.raises(AggassetsError, match=rf"lack column\(s\): (.*, )?{drop}(,|$)"):
        evaluate_goals(experiment, _goals().drop(columns=[drop]), as_of=TODAY)


def test_literal_mode_matches_epstats_text() -> None:
    goals = _goals([("^button-1", ">1", 7)])
    experiment = _experiment(["count(user.unit.view(element=^button-1, product>1))"])
    assert evaluate_goals(experiment, goals, as_of=TODAY, compat=True).metrics["sum_value"].tolist() == [7.0]
    assert evaluate_goals(experiment, goals, as_of=TODAY).metrics["sum_value"].tolist() == [0.0]


def test_srm_against_configured_traffic_weights() -> None:
    goals = pd.concat([_goals(variant=v).assign(count=lambda f, n=n: np.where(f.goal == "exposure", n, f["count"]))
                       for v, n in (("a", 5100), ("b", 2400), ("c", 2500))])  # fmt: skip
    srm = [{"id": 1, "name": "SRM", "denominator": "count(user.global.exposure)"}]
    weights = {"a": 2.0, "b": 1.0, "c": 1.0}
    weighted = _experiment(["count(user.unit.view)"], checks=srm, traffic_weights=weights)
    checks = evaluate_goals(weighted, goals, as_of=TODAY).checks.set_index("variable_id")["value"]
    expected = st.chisquare([5100, 2400, 2500], [5000, 2500, 2500])
    assert checks["test_stat"] == pytest.approx(expected.statistic) and checks["p_value"] == pytest.approx(
        expected.pvalue
    )
    equal = evaluate_goals(_experiment(["count(user.unit.view)"], checks=srm), goals, as_of=TODAY).checks
    assert equal.set_index("variable_id")["value"]["test_stat"] == pytest.approx(
        st.chisquare([5100, 2400, 2500]).statistic
    )
    with pytest.raises(AggassetsError, match="no weight for variant"):
        evaluate_goals(
            _experiment(["count(user.unit.view)"], checks=srm, traffic_weights={"a": 1.0}), goals, as_of=TODAY
        )


def test_srm_counts_a_weighted_variant_without_rows_as_zero_exposures() -> None:
    """An arm in traffic_weights that received nothing is the worst mismatch, not a variant to drop."""
    goals = pd.concat([_goals(variant=v).assign(count=lambda f, n=n: np.where(f.goal == "exposure", n, f["count"]))
                       for v, n in (("a", 5000), ("b", 2600))])  # fmt: skip
    srm = [{"id": 1, "name": "SRM", "denominator": "count(user.global.exposure)"}]
    weights = {"a": 2.0, "b": 1.0, "c": 1.0}
    result = evaluate_goals(
        _experiment(["count(user.unit.view)"], checks=srm, traffic_weights=weights), goals, as_of=TODAY
    )
    checks = result.checks.set_index("variable_id")["value"]
    expected = st.chisquare([5000, 2600, 0], np.array([2, 1, 1]) * 7600 / 4)
    assert checks["test_stat"] == pytest.approx(expected.statistic) and checks["p_value"] == pytest.approx(
        expected.pvalue, abs=1e-300
    )
    assert (
        result.exposures["exp_variant_id"].tolist() == ["a", "b", "c"]
        and result.exposures["exposures"].tolist()[2] == 0
    )
