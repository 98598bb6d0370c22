"""Experiment definition limits: JSON numbers as filter values, open-interval probabilities, trigger filters."""

import json
from pathlib import Path

import pytest
from scipy import stats as st

from aggassets.cli import main
from aggassets.errors import AggassetsError
from aggassets.experiments.definition import parse_experiment
from aggassets.experiments.evaluate import evaluate_goals
from aggassets_tests.experiments.test_goal_matching import TODAY, _experiment, _goals


def test_a_json_number_filter_value_matches_whatever_its_spelling() -> None:
    """JSON `1.0` and `1` are the same number (RFC 8259): a goal filter on product [1.0] keeps the rows whose
    product cell is 1 (button-12: 20 views), as [1] and ["1"] do."""
    kept = []
    for spelling in ("1.0", "1", '"1"'):
        filters = json.loads(f'[{{"scope": "goal", "dimension": "product", "value": [{spelling}]}}]')
        experiment = _experiment(["count(user.unit.view)"], filters=filters)
        kept.append(evaluate_goals(experiment, _goals(), as_of=TODAY).metrics["sum_value"].tolist())
    assert kept == [[20.0], [20.0], [20.0]]


@pytest.mark.parametrize("field", ["confidence_level", "check confidence_level"])
@pytest.mark.parametrize("level", [0.0, 1.0])
def test_a_confidence_level_of_zero_or_one_is_refused(field: str, level: float) -> None:
    """A level of 1 has an infinite two-sided quantile (scipy: norm.ppf(1) = inf), 0 a zero-width interval."""
    assert st.norm.ppf(1.0) == float("inf") and st.norm.ppf(1 - (1 - 0.0) / 2) == 0.0
    raw: dict[str, object] = {"id": "e", "control_variant": "a", "unit_type": "user"}
    raw["metrics"] = [{"id": 1, "name": "m", "nominator": "count(user.unit.view)",
                       "denominator": "count(user.global.exposure)"}]  # fmt: skip
    check = {"id": 1, "name": "srm", "type": "SRM", "denominator": "count(user.global.exposure)"}
    if field == "confidence_level":
        raw["confidence_level"] = level
    else:
        raw["checks"] = [check | {"confidence_level": level}]
    with pytest.raises(AggassetsError, match="confidence_level"):
        parse_experiment(raw)
    assert parse_experiment({**raw, "confidence_level": 0.9, "checks": [check | {"confidence_level": 0.99}]})


def test_a_trigger_filter_with_a_dimension_needs_its_value() -> None:
    """README: `trigger` keeps the units with an event of its goal (and dimension value when given): a
    dimension without a value names nothing to match, so it is refused; the goal alone is accepted."""
    raw: dict[str, object] = {"id": "e", "control_variant": "a", "unit_type": "user"}
    raw["metrics"] = [{"id": 1, "name": "m", "nominator": "count(user.unit.view)",
                       "denominator": "count(user.global.exposure)"}]  # fmt: skip
    trigger = {"scope": "trigger", "goal": "view"}
    assert parse_experiment({**raw, "filters": [trigger]}).filters[0].goal == "view"
    assert parse_experiment({**raw, "filters": [trigger | {"dimension": "element", "value": ["link"]}]})
    with pytest.raises(AggassetsError, match="trigger"):
        parse_experiment({**raw, "filters": [trigger | {"dimension": "element"}]})
    with pytest.raises(AggassetsError, match="trigger"):
        parse_experiment({**raw, "filters": [trigger | {"value": ["link"]}]})


def test_every_error_of_an_experiment_file_is_on_one_stderr_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """README: bad input exits with status 2 and one line on stderr; the heading's colon is followed by the
    first error, the errors are separated by '; '."""
    path = tmp_path / "experiments" / "x.json"
    path.parent.mkdir()
    metric = {"id": 1, "name": "m", "nominator": "count(user.unit.)", "denominator": "count(user.global.e)"}
    raw = {"id": "x", "control_variant": "a", "unit_type": "user", "metrics": [metric], "confidence_level": 2}
    path.write_text(json.dumps(raw))
    assert main(["definitions", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("aggassets: error: invalid experiment file (2 error(s)): ")
    first, second = err.removeprefix("aggassets: error: invalid experiment file (2 error(s)): ").split("; ")
    assert first.startswith(f"{path}: metrics.0.nominator: cannot parse nominator at position 16")
    assert second == f"{path}: confidence_level: Input should be less than 1\n"


@pytest.mark.parametrize(
    "nominator",
    [
        "+".join(["value(user.unit.purchase)"] * 1000),  # a left-associative chain 999 levels deep
        "(" * 1000 + "value(user.unit.purchase)" + ")" * 1000,
        "-" * 5000 + "value(user.unit.purchase)",
    ],
    ids=["1000 terms", "1000 parentheses", "5000 minus signs"],
)
def test_an_expression_nested_too_deeply_is_a_located_error_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], nominator: str
) -> None:
    """These raised RecursionError, a traceback and exit 1; 100 levels of operations are allowed."""
    path = tmp_path / "experiments" / "x.json"
    path.parent.mkdir()
    metric = {"id": 1, "name": "m", "nominator": nominator, "denominator": "count(user.global.exposure)"}
    raw = {"id": "x", "control_variant": "a", "unit_type": "user", "metrics": [metric]}
    path.write_text(json.dumps(raw))
    assert main(["definitions", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}: metrics.0.nominator: cannot parse nominator nested too deeply" in err
    deepest = "+".join(["value(user.unit.purchase)"] * 101)  # 100 levels of '+'
    path.write_text(json.dumps({**raw, "metrics": [{**metric, "nominator": deepest}]}))
    assert main(["definitions", "validate", str(path)]) == 0
