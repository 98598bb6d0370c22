"""The intake's fast path agrees with the careful validation on every line, and takes the ordinary ones."""

import json
import random
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest

from aggassets.catalog import MeasureDefinition
from aggassets.warehouse import intake_fast, intake_files
from aggassets_tests.warehouse.support import DEFINITIONS, FIRST_DAY
from aggassets_tests.warehouse.test_intake import ACCEPTED, DROP, MALFORMED, edited_lines, line, raw


def _parses(text: str) -> bool:
    """Whether Python's json reads the text (it accepts NaN and big numbers, which are kept as the tests want)."""
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


TRICKY: list[str] = [
    '{ "measureName" : "visits-daily", "value" : 1, "startDate" : "2022-01-03",'
    ' "group1" : { "device" : "a" }, "group2" : {"os": "x"} }',
    line(measureName="visits\\u002ddaily").replace("\\\\u002d", "\\u002d"),
    line(group1={"device": "\u00e9"}).replace("\u00e9", "\\u00e9"),
    line(group1={"device": 'a,"os":"b'}),
    line(group1={"device": "a}"}),
    line(group1={"device": "back\\slash"}),
    line(group1={"device": 1.50}),
    line(group1={"device": -3}),
    line(group1={"device": None}),
    raw('"value": 1e5'),
    raw('"value": 1E+2'),
    raw('"value": -0'),
    raw('"value": 0.1e-400'),
    raw('"value": 12345678901234567890'),
    raw('"value": 100000000000000000000000'),
    raw('"value": 1.0000000000000002'),
    raw('"value": 1e400'),
    line(value="  7  "),
    line(startDate="2022-01-03T12:00:00Z"),
    line(startDate="2022-01-03T12:00:00z"),
    line(startDate="2022-01-03t12:00:00Z"),
    line(startDate="2022-01-03T12:00:00+00:00"),
    line(startDate="2022-01-03T23:30:00-02:00"),
    line(startDate="2022-01-03T12:00:00.5Z"),
    line(startDate="2022-01-03T24:00:00Z"),
    line(startDate="2022-1-03"),
    line(startDate=" 2022-01-03"),
    line(startDate="2022-01-03").replace("2022-01-03", "2022\\u002d01-03"),
    line(createdBy="drive"),
    line(createdBy="5"),
    line(createdBy="é" * 255),
    line(createdBy="é" * 256),
    line(createdBy='a"b'),
    line(createdBy="a\\b"),
    line(createdBy=True),
    line(createdBy=None),
    line(group3=None),
    line(group2=DROP, measureName="duration-daily", group1={"slug": "x"}),
    '{"measureName": "storage-monthly", "value": 3, "startDate": "2022-02-17", "group1": {"offer": "a"},'
    ' "group2": {"plan": true}, "group3": {"region": 4}}',
    '{"measureName": "sharing-weekly", "value": 2, "startDate": "2022-02-17T10:00:00Z", "group1": {"kind": "x"}}',
    line().replace('"value": 1', '"value": 1, "startDate": "2022-01-04"'),
    line().replace("{", '{"createdBy": null, ', 1),
    "   " + line(),
    line(startDate="2022-01-03T05:00:00Z"),
    line(startDate="2022-01-03T5:00:00Z"),
    line(startDate="2022-01-03T05:00:0Z"),
    line(startDate="2022-01-03T23:59:60Z"),
    line(startDate="2022-01-03T23:60:00Z"),
    line(startDate="2022-02-29T10:00:00Z"),
    line(startDate="2022-02-29"),
    line(startDate="022-01-03T05:00:00Z "),
    line(startDate="+022-01-03T05:00:00Z"),
    line(startDate="2022-01-03T05:00:00"),
    line(startDate="2022-01-03 05:00:00Z"),
    line(createdBy="a/b"),
    line(createdBy="a/b").replace("a/b", "a\\/b"),
    line(group1={"device": "x"}, group2={"os": "\\"}),
]
# The same items written compactly, as most producers do (json.dumps' default puts spaces after , and :).
TRICKY += [
    json.dumps(json.loads(t), separators=(",", ":"), ensure_ascii=False)
    for t in TRICKY
    if t.strip().startswith("{") and _parses(t)
]


def _staged(path: Path, fast: bool) -> tuple[list[tuple[Any, ...]], int]:
    """(every staged row in item order, items checked carefully) of one intake of `path`."""
    con = duckdb.connect()
    careful = intake_fast.stage_items(con, path, DEFINITIONS, FIRST_DAY, fast=fast)
    return con.execute(intake_fast.STAGED_ROWS).fetchall(), careful


def test_fast_path_matches_careful_validation(tmp_path: Path) -> None:
    """Same rows with and without the fast path; it leaves to the careful path far fewer items than all."""
    lines = [line()] + [t for _, t, _ in MALFORMED] + [t for _, t, _ in ACCEPTED] + TRICKY + [line(value=2)]
    path = tmp_path / "items.ndjson"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    fast_rows, fast_careful = _staged(path, fast=True)
    slow_rows, slow_careful = _staged(path, fast=False)
    assert slow_careful == len(lines) == len(slow_rows)
    assert [r[0] for r in fast_rows] == list(range(1, len(lines) + 1))
    for i, (got, want) in enumerate(zip(fast_rows, slow_rows, strict=True)):
        assert got == want, lines[i]
    plain = [r for r in fast_rows if r[2] is None]
    assert fast_careful <= len(lines) - 12 and len(plain) >= 20
    accepted = _fast_accepted(path)  # what the DuckDB warehouse inserts straight into raw_measures
    assert len(accepted) == len(lines) - fast_careful
    by_item = {r[0]: r for r in slow_rows}
    for row in accepted:
        want = by_item[row[0]]
        assert want[2] is None and row[1:] == want[3:], lines[row[0] - 1]


def _fast_accepted(path: Path) -> list[tuple[Any, ...]]:
    """The rows of intake_fast.fast_accepted_sql over the file's items, in item order."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    row0, _ = intake_files.read_items(con, path)
    params = {"row0": row0, **intake_fast.fast_params(con, DEFINITIONS, FIRST_DAY)}
    return con.execute(f"{intake_fast.fast_accepted_sql(intake_files.ITEMS)} ORDER BY item_no", params).fetchall()


def test_fast_path_keeps_file_order_across_row_groups(tmp_path: Path) -> None:
    """Item numbers follow the file's lines over several row groups and both threads."""
    values = list(range(300_000))
    path = tmp_path / "many.ndjson"
    path.write_text("".join(line(value=v) + "\n" for v in values), encoding="utf-8")
    rows, careful = _staged(path, fast=True)
    assert careful == 0
    assert [r[0] for r in rows] == [v + 1 for v in values] and [r[-1] for r in rows] == [float(v) for v in values]


def _staged_both_ways(path: Path, lines: list[str]) -> tuple[list[tuple[Any, ...]], int]:
    """Stage the file with and without the fast path and require the same rows, item by item (the
    message names the line); (the careful path's rows, items the fast path left)."""
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    fast_rows, fast_careful = _staged(path, fast=True)
    slow_rows, _ = _staged(path, fast=False)
    for i, (got, want) in enumerate(zip(fast_rows, slow_rows, strict=True)):
        assert got == want, lines[i]
    return slow_rows, fast_careful


@pytest.mark.parametrize(("seed", "edits"), [(20261202, 1), (7, 3)])
def test_fast_path_matches_careful_validation_on_random_edits(tmp_path: Path, seed: int, edits: int) -> None:
    """3000 randomly edited valid lines: the fast path and the careful path store the same rows."""
    lines = [t for t in edited_lines(random.Random(seed), 3000, edits) if t.strip()]
    path = tmp_path / "edits.ndjson"
    slow_rows, fast_careful = _staged_both_ways(path, lines)
    accepted = _fast_accepted(path)
    assert len(accepted) == len(lines) - fast_careful > 0
    by_item = {r[0]: r for r in slow_rows}
    assert all(by_item[r[0]][2] is None and r[1:] == by_item[r[0]][3:] for r in accepted)
    assert len({r[2] for r in slow_rows}) >= 8  # the edits reach many different reasons


# One example of each date form the fast path reads (intake_fast._FAST_DATES), near the end of a day.
FAST_DATE_FORMS = [
    "2022-01-31",
    "2022-01-31T23:59:59",
    "2022-01-31T23:59:59Z",
    "2022-01-31T23:59:59.999",
    "2022-01-31T23:59:59.999Z",
    "2022-01-31T23:59:59+00:00",
    "2022-01-31T23:59:59.999999",
    "2022-01-31T23:59:59.999999Z",
    "2022-01-31T23:59:59.999999+00:00",
]


def test_fast_date_forms_and_every_one_character_change_match_careful_validation(tmp_path: Path) -> None:
    """Each fast date form, and every change of one of its characters to a digit, sign, separator, space
    or letter, is stored (or left, or rejected) exactly as the careful validation decides."""
    assert len({len(json.dumps(d)) for d in FAST_DATE_FORMS}) == len(intake_fast._FAST_DATES)
    dates = list(FAST_DATE_FORMS)
    for text in FAST_DATE_FORMS:
        dates += [text[:i] + c + text[i + 1 :] for i in range(len(text)) for c in "0129+-:. TZz" if c != text[i]]
    lines = [line(startDate=d) for d in dates]
    path = tmp_path / "dates.ndjson"
    slow_rows, fast_careful = _staged_both_ways(path, lines)
    accepted = {r[0] for r in _fast_accepted(path)}
    assert set(range(1, len(FAST_DATE_FORMS) + 1)) <= accepted  # every form itself takes the fast path
    assert {r[4] for r in slow_rows[: len(FAST_DATE_FORMS)]} == {date(2022, 1, 31)}
    assert len(accepted) == len(lines) - fast_careful and fast_careful > 0


def test_a_name_that_reads_as_a_number_or_literal_takes_the_careful_path(tmp_path: Path) -> None:
    """The fast path reads measureName as text, so `"measureName": 5` reads as 5 too: measures named like a
    number or a JSON literal are checked by the careful path only (the number is refused, the string taken)."""
    catalog = [MeasureDefinition(name=n, aggregationPeriod="day") for n in ("5", "1e3", "true", "inf", "plain")]
    lines = [
        '{"measureName": 5, "value": 1, "startDate": "2022-01-03"}',
        '{"measureName": "5", "value": 1, "startDate": "2022-01-03"}',
        '{"measureName": 1e3, "value": 1, "startDate": "2022-01-03"}',
        '{"measureName": "1e3", "value": 1, "startDate": "2022-01-03"}',
        '{"measureName": true, "value": 1, "startDate": "2022-01-03"}',
        '{"measureName": "true", "value": 1, "startDate": "2022-01-03"}',
        '{"measureName": "inf", "value": 1, "startDate": "2022-01-03"}',
        '{"measureName": "plain", "value": 1, "startDate": "2022-01-03"}',
        '{"measureName": "plain", "value": 1, "startDate": 20220103}',
    ]
    path = tmp_path / "names.ndjson"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    con = duckdb.connect()
    careful = intake_fast.stage_items(con, path, catalog, FIRST_DAY, fast=True)
    reasons = [r[0] for r in con.execute("SELECT reason FROM staged ORDER BY item_no").fetchall()]
    expected = [
        "invalid_measure_name", None, "invalid_measure_name", None, "invalid_measure_name", None, None, None,
        "invalid_start_date",
    ]  # fmt: skip
    assert reasons == expected and careful == len(lines) - 1  # only "plain" with its date is fast
