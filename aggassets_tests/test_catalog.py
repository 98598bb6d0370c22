"""The measure catalog: DACC's definitions files drop in; anything loose or ambiguous is refused."""

import json
from pathlib import Path

import pytest

from aggassets.catalog import load_measures_file
from aggassets.errors import AggassetsError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "measures.json"
    path.write_text(text)
    return path


def definitions(*items: dict[str, object]) -> str:
    return json.dumps({"definitions": list(items)})


def test_a_dacc_file_with_ids_and_without_aggregation_period_drops_in(tmp_path: Path) -> None:
    """DACC's files carry a database id, and some definitions only an executionFrequency."""
    text = definitions(
        {"id": 1, "name": "session-length", "org": "an-org", "accessApp": False, "accessPublic": False,
         "aggregationThreshold": 5, "createdBy": "an-app", "executionFrequency": "day", "group1Key": "pages"},
        {"id": 2, "name": "bill-summary-monthly", "executionFrequency": "month", "group1Key": "event_type"},
        {"id": 3, "name": "logins-daily", "executionFrequency": "month", "aggregationPeriod": "day"},
    )  # fmt: skip
    catalog = load_measures_file(write(tmp_path, text))
    assert [(m.name, m.aggregation_period) for m in catalog.measures] == [
        ("session-length", "day"),
        ("bill-summary-monthly", "month"),
        ("logins-daily", "day"),  # a given period wins
    ]
    assert catalog.get("session-length").aggregation_threshold == 5


def test_fields_left_out_take_dacc_defaults(tmp_path: Path) -> None:
    """DESIGN 4.1: threshold 5, access flags false, no quartiles, maxDaysToUpdateQuartile 100."""
    catalog = load_measures_file(write(tmp_path, definitions({"name": "bare", "aggregationPeriod": "week"})))
    bare = catalog.get("bare")
    assert (bare.aggregation_threshold, bare.access_app, bare.access_public) == (5, False, False)
    assert (bare.with_quartiles, bare.max_days_to_update_quartile) == (False, 100)
    assert (bare.created_by, bare.group1_key, bare.group2_key, bare.group3_key, bare.org) == (None,) * 5


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("aggregationThreshold", True),
        ("aggregationThreshold", "50"),
        ("aggregationThreshold", 5.5),
        ("aggregationThreshold", 5.0),
        ("withQuartiles", "yes"),
        ("withQuartiles", 1),
        ("accessPublic", "on"),
        ("maxDaysToUpdateQuartile", "30"),
        ("createdBy", 7),
        ("id", "1"),
    ],
)
def test_values_of_the_wrong_type_are_refused_not_converted(tmp_path: Path, field: str, value: object) -> None:
    text = definitions(
        {"name": "m", "aggregationPeriod": "day"}, {"name": "n", "aggregationPeriod": "day", field: value}
    )
    with pytest.raises(AggassetsError, match=rf"definitions\.1\.{field}"):
        load_measures_file(write(tmp_path, text))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("aggregationThreshold", 0, "greater than or equal to 1"),
        ("aggregationThreshold", 2**31, "less than or equal to 2147483647"),
        ("maxDaysToUpdateQuartile", -1, "greater than or equal to 0"),
        ("maxDaysToUpdateQuartile", 2**31, "less than or equal to 2147483647"),
    ],
)
def test_numbers_out_of_range_are_refused(tmp_path: Path, field: str, value: int, message: str) -> None:
    """Thresholds and waits are stored as 32-bit integers: beyond them, a catalog error, not a database one."""
    text = definitions({"name": "m", "aggregationPeriod": "day", field: value})
    with pytest.raises(AggassetsError, match=rf"definitions\.0\.{field}.*{message}"):
        load_measures_file(write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "errors"),
    [
        (
            '{"definitions": [{"name": "m", "aggregationPeriod": "day", "aggregationThreshold": 50, '
            '"aggregationThreshold": 1}]}',
            ["definitions.0: duplicate key 'aggregationThreshold' in one object"],
        ),
        (
            '{"definitions": [{"name": "m", "aggregationPeriod": "day"}], "definitions": []}',
            ["<root>: duplicate key 'definitions' in one object"],
        ),
        (  # listed with the file's other errors, each with its location
            '{"definitions": [{"name": "a", "aggregationPeriod": "day", "withQuartiles": true, "withQuartiles": 1},'
            ' {"name": "b", "aggregationPeriod": "year"}, {"name": "c", "aggregationPeriod": "day", "group1Key": "k",'
            ' "group1Key": "j", "group1Key": "i", "bogus": 1}]}',
            [
                "definitions.0.withQuartiles: Input should be a valid boolean",  # the last value, as json.loads
                "definitions.1.aggregationPeriod: Input should be 'day', 'week' or 'month'",
                "definitions.2.bogus: Extra inputs are not permitted",
                "definitions.0: duplicate key 'withQuartiles' in one object",
                "definitions.2: duplicate key 'group1Key' in one object",
            ],
        ),
    ],
)
def test_a_key_given_twice_is_refused_with_its_location(tmp_path: Path, text: str, errors: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(AggassetsError) as exc:
        load_measures_file(path)
    assert str(exc.value) == f"invalid definitions file ({len(errors)} error(s)):\n" + "\n".join(
        f"{path}: {e}" for e in errors
    )


def test_equal_group_keys_and_a_missing_period_are_refused_listing_both(tmp_path: Path) -> None:
    text = definitions(
        {"name": "m", "aggregationPeriod": "day", "group1Key": "os", "group2Key": "os"},
        {"name": "n", "group1Key": "os"},
    )
    with pytest.raises(AggassetsError) as info:
        load_measures_file(write(tmp_path, text))
    message = str(info.value)
    assert "definitions.0.group2Key: group keys must differ: 'os' is also an earlier group key" in message
    assert "definitions.1.aggregationPeriod: Field required" in message


def test_a_type_error_and_a_group_error_of_one_definition_are_listed_together(tmp_path: Path) -> None:
    text = definitions({"name": "m", "aggregationPeriod": "day", "aggregationThreshold": "5", "group2Key": "os"})
    with pytest.raises(AggassetsError) as info:
        load_measures_file(write(tmp_path, text))
    message = str(info.value)
    assert "(2 error(s))" in message and "definitions.0.aggregationThreshold" in message
    assert "definitions.0.group2Key: group2Key is set but group1Key is not" in message


def test_a_measure_name_holds_up_to_128_characters(tmp_path: Path) -> None:
    longest, over = "m" * 128, "m" * 129
    catalog = load_measures_file(write(tmp_path, definitions({"name": longest, "aggregationPeriod": "day"})))
    assert catalog.get(longest).name == longest
    with pytest.raises(AggassetsError, match=r"definitions\.0\.name"):
        load_measures_file(write(tmp_path, definitions({"name": over, "aggregationPeriod": "day"})))


def test_measure_names_given_twice_in_an_otherwise_valid_file_are_refused_naming_them(tmp_path: Path) -> None:
    """DESIGN 4.1: definitions are matched by name (unique); an invalid file is refused as a whole."""
    text = definitions(
        {"name": "b", "aggregationPeriod": "day"},
        {"name": "a", "aggregationPeriod": "week"},
        {"name": "c", "aggregationPeriod": "month"},
        {"name": "b", "aggregationPeriod": "month"},
        {"name": "a", "aggregationPeriod": "day", "group1Key": "os"},
    )
    with pytest.raises(AggassetsError) as info:
        load_measures_file(write(tmp_path, text))
    message = str(info.value)
    assert message.startswith("invalid definitions file (1 error(s)):\n")
    assert message.endswith(": duplicate measure names: a, b")  # each once, c not among them
