"""Experiment definition files: ep-stats' request fields, strict validation, every error located."""

import json
from pathlib import Path

import pytest

from aggassets.errors import AggassetsError
from aggassets.experiments.definition import load_experiment, parse_experiment
from aggassets.experiments.expressions import to_text
from aggassets_tests.experiments.reference_data import reference_files

BASE = {
    "id": "exp",
    "control_variant": "a",
    "unit_type": "user",
    "metrics": [
        {"id": 1, "name": "m", "nominator": "count(user.unit.click)", "denominator": "count(user.global.exposure)"}
    ],
}


def _errors(**changes: object) -> str:
    """The AggassetsError message for BASE with `changes`."""
    with pytest.raises(AggassetsError) as info:
        parse_experiment({**BASE, **changes}, "exp.json")
    return str(info.value)


@pytest.mark.parametrize("path", reference_files(), ids=[p.stem for p in reference_files()])
def test_every_reference_file_loads(path: Path) -> None:
    experiment = load_experiment(path)
    assert experiment.metrics is not None and experiment.id


def test_reference_only_fields_and_simple_metrics() -> None:
    experiment = load_experiment(next(p for p in reference_files() if p.stem == "test-simple-metric-long"))
    nominator, denominator = experiment.metrics[0].expressions(experiment.unit_type)
    assert to_text(nominator) == "value(test_unit_type.global.clicks)"
    assert to_text(denominator) == "value(test_unit_type.global.views)"
    sequential = load_experiment(next(p for p in reference_files() if p.stem == "test-sequential-v2"))
    assert str(sequential.date_for) == "2020-01-10"


def test_defaults() -> None:
    experiment = parse_experiment(BASE)
    assert experiment.confidence_level == 0.95 and experiment.checks == [] and experiment.filters == []
    check = parse_experiment({**BASE, "checks": [{"id": 1, "name": "S", "denominator": "count(user.global.exposure)"}]})
    assert check.checks[0].type == "SRM" and check.checks[0].confidence_level == 0.999


def test_every_error_is_listed_with_its_location() -> None:
    metrics = [
        {"id": 1, "name": "m", "nominator": "count(user.unit.click", "denominator": "count(user.global.exposure)"},
        {"id": 2, "name": "n", "nominator": "count(user.unit.click)", "denominator": "cnt(user.global.exposure)"},
    ]
    message = _errors(metrics=metrics, colour="red", confidence_level=1.5)
    assert "(4 error(s))" in message
    assert "exp.json: metrics.0.nominator: cannot parse nominator at position 21: expected ')'" in message
    assert "exp.json: metrics.1.denominator: cannot parse denominator at position 0: expected count" in message
    assert "exp.json: colour: Extra inputs are not permitted" in message
    assert "exp.json: confidence_level:" in message


def test_errors_across_fields_are_listed_with_the_field_errors() -> None:
    """Rules between fields (ids, dates, variants, weights) are reported at their field, all at once and
    next to the fields' own errors: a user fixes the file in one pass."""
    metric = BASE["metrics"][0]  # type: ignore[index]
    message = _errors(
        metrics=[metric, metric],
        checks=[{"id": 7, "name": "S", "denominator": "count(user.global.exposure)"}] * 2,
        variants=["b", "b"],
        date_from="2026-10-10",
        date_to="2026-10-01",
        confidence_level=1.5,
        traffic_weights={"b": 0.0},
    )
    lines = message.splitlines()[1:]
    assert lines == [
        "exp.json: variants: variants must be unique; control_variant 'a' is not in variants",
        "exp.json: date_to: date_to must be on or after date_from",
        "exp.json: metrics: duplicate metric ids: [1]",
        "exp.json: checks: duplicate check ids: [7]",
        "exp.json: confidence_level: Input should be less than 1",
        "exp.json: traffic_weights: traffic_weights must be positive numbers: ['b']; "
        "traffic_weights must include the control variant",
    ]
    assert message.startswith("invalid experiment file (6 error(s)):")
    dates = _errors(date_from="2026-10-01", date_to="2026-10-09", date_for="2026-10-10", unit_type="bad unit")
    assert "exp.json: unit_type:" in dates and "exp.json: date_for: date_for must lie between" in dates


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"metrics": [BASE["metrics"][0], BASE["metrics"][0]]}, "duplicate metric ids"),  # type: ignore[index]
        ({"variants": ["b", "c"]}, "control_variant 'a' is not in variants"),
        ({"variants": ["a", "a"]}, "variants must be unique"),
        ({"date_from": "2026-10-10", "date_to": "2026-10-01"}, "date_to must be on or after date_from"),
        ({"date_from": "2026-10-10", "date_to": "2026-10-09"}, "date_to must be on or after date_from"),
        ({"date_from": "2026-10-01", "date_to": "2026-10-09", "date_for": "2026-10-10"}, "date_for must lie between"),
        ({"date_from": "2026-10-01", "date_to": "2026-10-09", "date_for": "2026-09-30"}, "date_for must lie between"),
        ({"date_for": "2026-10-10"}, "date_for requires date_from and date_to"),
        ({"date_from": "2026-13-01"}, "date_from"),
        ({"traffic_weights": {"b": 1.0}}, "traffic_weights must include the control"),
        ({"traffic_weights": {"a": 0.0}}, "positive"),
        ({"variants": ["a", "b"], "traffic_weights": {"a": 1.0}}, "exactly the variants"),
        (
            {"checks": [{"id": 1, "name": "R", "type": "SumRatio", "denominator": "count(user.global.e)"}]},
            "needs a nominator",
        ),
        (
            {
                "checks": [
                    {"id": 1, "name": "S", "nominator": "count(user.global.x)", "denominator": "count(user.global.e)"}
                ]
            },
            "takes no nominator",
        ),
        ({"checks": [{"id": 1, "name": "S", "type": "XYZ", "denominator": "count(user.global.e)"}]}, "checks.0.type"),
        ({"filters": [{"scope": "trigger"}]}, "goal is required"),
        ({"filters": [{"scope": "goal", "dimension": "element"}]}, "dimension and value are required"),
        # ep-stats: a filter's goal names the trigger goal; an exposure or goal filter taking one would ignore it
        (
            {"filters": [{"scope": "exposure", "dimension": "country", "value": ["FR"], "goal": "purchase"}]},
            "filters.0: goal is only used with scope 'trigger'",
        ),
        (
            {"filters": [{"scope": "goal", "dimension": "country", "value": ["FR"], "goal": "purchase"}]},
            "filters.0: goal is only used with scope 'trigger'",
        ),
        (
            {"metrics": [{"id": 1, "name": "m", "nominator": "2", "denominator": "count(user.global.e)"}]},
            "nominator has no goal: '2'",
        ),
        (
            {
                "metrics": [
                    {
                        "id": 1,
                        "name": "m",
                        "nominator": "count(user.unit.c)",
                        "denominator": "count(user.global.e)",
                        "minimum_effect": -0.1,
                    }
                ]
            },
            "minimum_effect",
        ),
        (
            {"metrics": [{"id": 1, "name": "m", "simple": True, "nominator": "count(x)", "denominator": "views"}]},
            "goal name, got 'count(x)'",
        ),
        (
            {"metrics": [{"id": 1, "name": "m", "simple": True, "nominator": "clicks\n", "denominator": "views"}]},
            "goal name, got 'clicks\\n'",
        ),
        (
            {"metrics": [{**BASE["metrics"][0], "minimum_effect": float("inf")}]},
            "metrics.0.minimum_effect: Input should be a finite number",
        ),  # type: ignore[index]
        ({"unit_type": "bad unit"}, "unit_type"),
        ({"confidence_level": "0.95"}, "confidence_level: Input should be a valid number"),
        ({"confidence_level": True}, "confidence_level: Input should be a valid number"),
        ({"null_hypothesis_rate": "0.5"}, "null_hypothesis_rate"),
        ({"variants": ["a", 2]}, "variants.1: Input should be a valid string"),
        ({"traffic_weights": {"a": "1"}}, "traffic_weights.a: Input should be a valid number"),
        ({"metrics": [{**BASE["metrics"][0], "id": "1"}]}, "metrics.0.id: Input should be a valid integer"),  # type: ignore[index]
        ({"metrics": [{**BASE["metrics"][0], "simple": "no"}]}, "metrics.0.simple: Input should be a valid boolean"),  # type: ignore[index]
        ({"date_from": "20261001"}, "date_from"),
        # a Unix timestamp (number or text) or a date-time is not a date (pydantic's lax mode took them)
        ({"date_from": 1772323200}, "date_from: expected a date as YYYY-MM-DD text, got 1772323200"),
        ({"date_to": "1772323200"}, "date_to: expected a date as YYYY-MM-DD text"),
        ({"date_from": "2026-03-01T00:00:00Z"}, "date_from: expected a date as YYYY-MM-DD text"),
        ({"date_from": "2026-03-01", "date_to": "2026-03-31", "date_for": "2026-03-02T00:00:00"}, "date_for: expected"),
        ({"date_from": "2026-3-01"}, "date_from: expected a date as YYYY-MM-DD text"),
        ({"date_from": "2026-02-30"}, "date_from: Input should be a valid date"),
    ],
)
def test_invalid_definitions_are_refused(changes: dict[str, object], message: str) -> None:
    assert message in _errors(**changes)


def test_load_experiment_file_errors(tmp_path: Path) -> None:
    with pytest.raises(AggassetsError, match="cannot read experiment file"):
        load_experiment(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(AggassetsError, match="not JSON"):
        load_experiment(tmp_path / "bad.json")
    (tmp_path / "twice.json").write_text('{"id": "exp", "id": "other"}')
    with pytest.raises(AggassetsError, match=r"twice\.json: <root>: duplicate key 'id' in one object$"):
        load_experiment(tmp_path / "twice.json")
    (tmp_path / "valid_twice.json").write_text(json.dumps(BASE)[:-1] + ', "id": "exp"}')  # valid but for that
    with pytest.raises(AggassetsError) as exc:
        load_experiment(tmp_path / "valid_twice.json")
    path = tmp_path / "valid_twice.json"
    assert str(exc.value) == f"invalid experiment file (1 error(s)):\n{path}: <root>: duplicate key 'id' in one object"
    (tmp_path / "ok.json").write_text(json.dumps(BASE))
    assert load_experiment(tmp_path / "ok.json").id == "exp"


def test_dates_may_meet_at_their_bounds() -> None:
    """One-day experiments, and date_for on either end of its window, are valid (as ep-stats)."""
    for dates in (
        {"date_from": "2026-10-10", "date_to": "2026-10-10", "date_for": "2026-10-10"},
        {"date_from": "2026-10-01", "date_to": "2026-10-09", "date_for": "2026-10-01"},
        {"date_from": "2026-10-01", "date_to": "2026-10-09", "date_for": "2026-10-09"},
    ):
        experiment = parse_experiment(BASE | dates)
        assert str(experiment.date_for) == dates["date_for"]
