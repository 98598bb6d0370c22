"""Intake: malformed measures rejected with a reason, nothing lost, accepted edge cases, file formats."""

import json
import math
import random
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from aggassets.errors import AggassetsError
from aggassets.warehouse import intake_fast, open_warehouse
from aggassets.warehouse.base import Warehouse
from aggassets.warehouse.duckdb_engine import DuckDBWarehouse
from aggassets_tests.warehouse.support import DEFINITIONS, FIRST_DAY, full_spill_folder, ingest, spill_error

DROP = object()  # marks a field removed from the valid measure
VALID: dict[str, Any] = {
    "measureName": "visits-daily",
    "value": 1,
    "startDate": "2022-01-03",
    "group1": {"device": "a"},
    "group2": {"os": "x"},
}
INJECTION = "x'; DROP TABLE raw_measures; --"


def line(**fields: Any) -> str:
    """The valid measure with some fields replaced (or dropped), as one JSON line."""
    item = {k: v for k, v in (VALID | fields).items() if v is not DROP}
    return json.dumps(item, allow_nan=True)


def raw(text: str) -> str:
    """The valid measure's JSON text with `"value": 1` replaced by raw text (not expressible in json)."""
    return line().replace('"value": 1', text)


def sized(size: int) -> tuple[str, str]:
    """(line, group1 value): the valid measure padded in its group1 value to exactly `size` bytes."""
    pad = "p" * (size - len(line(group1={"device": ""}).encode()))
    return line(group1={"device": pad}), pad


def edited_lines(rng: random.Random, count: int, edits: int = 1) -> list[str]:
    """Valid lines (compact and spaced) with up to `edits` random edits each: a character inserted,
    deleted or replaced, drawn from JSON's own punctuation, digits, letters, escapes, spaces and a few
    control and non-ASCII characters."""
    alphabet = '{}[]":, \\/0123456789.eE+-tfnulZT\t\u00e9x\x00\x1f\u2028'
    bases = [
        line(),
        line(value=2.5, createdBy="drive"),
        line(startDate="2022-01-03T12:00:00Z"),
        '{"measureName": "storage-monthly", "value": 3, "startDate": "2022-02-17", "group1": {"offer": "a"},'
        ' "group2": {"plan": true}, "group3": {"region": 4}}',
    ]
    bases += [json.dumps(json.loads(b), separators=(",", ":")) for b in bases]
    out = []
    for _ in range(count):
        text = rng.choice(bases)
        for _ in range(rng.randint(1, edits)):
            at, char = rng.randrange(len(text) + 1), rng.choice(alphabet)
            head, tail = text[:at], text[at:]
            text = rng.choice((head + char + tail, head + tail[1:], head + char + tail[1:]))  # insert, delete, replace
        out.append(text.replace("\n", " ").replace("\r", " "))
    return out


MALFORMED: list[tuple[str, str, str]] = [
    ("not json", "yesterday I measured 3", "invalid_json"),
    ("truncated object", '{"measureName": "visits-daily", "value": ', "invalid_json"),
    ("single quotes", "{'measureName': 'visits-daily'}", "invalid_json"),
    ("raw NUL in a string", line(group1={"device": "a\x00b"}).replace("\\u0000", "\x00"), "invalid_json"),
    ("trailing comma", line()[:-1] + ", }", "invalid_json"),
    ("trailing comma in a group", line().replace('{"device": "a"}', '{"device": "a",}'), "invalid_json"),
    ("trailing comma, compact", json.dumps(VALID, separators=(",", ":"))[:-1] + ",}", "invalid_json"),
    ("group value NaN", line().replace('{"device": "a"}', '{"device": NaN}'), "invalid_json"),
    ("group value -Infinity", line().replace('{"device": "a"}', '{"device": -Infinity}'), "invalid_json"),
    ("group value inf", line().replace('{"device": "a"}', '{"device": inf}'), "invalid_json"),
    ("json array", "[1, 2, 3]", "not_an_object"),
    ("json array of a measure", f"[{line()}]", "not_an_object"),
    ("json string", '"visits-daily"', "not_an_object"),
    ("json number", "42", "not_an_object"),
    ("json null", "null", "not_an_object"),
    ("json boolean", "true", "not_an_object"),
    ("oversized payload", line(createdBy="x" * 20_000), "oversized"),
    ("payload of 16385 bytes, one over the limit", sized(16_385)[0], "oversized"),
    ("duplicate key", line().replace('"value": 1', '"value": 1, "value": 2'), "duplicate_field"),
    ("unknown field", line(extra=1), "unknown_field"),
    ("field name casing", line(measureName=DROP, MeasureName="visits-daily"), "unknown_field"),
    ("empty object", "{}", "missing_measure_name"),
    ("measureName missing", line(measureName=DROP), "missing_measure_name"),
    ("measureName null", line(measureName=None), "missing_measure_name"),
    ("measureName number", line(measureName=12), "invalid_measure_name"),
    ("measureName array", line(measureName=["visits-daily"]), "invalid_measure_name"),
    ("unknown measure", line(measureName="nope-daily"), "unknown_measure"),
    ("injection measureName", line(measureName=INJECTION), "unknown_measure"),
    ("value missing", line(value=DROP), "missing_value"),
    ("value null", line(value=None), "missing_value"),
    ("value NaN", raw('"value": NaN'), "value_not_finite"),
    ("value Infinity", raw('"value": Infinity'), "value_not_finite"),
    ("value -Infinity", raw('"value": -Infinity'), "value_not_finite"),
    ("value 1e400", raw('"value": 1e400'), "value_not_finite"),
    ("value '1e400'", line(value="1e400"), "value_not_finite"),
    ("value 1e101", raw('"value": 1e101'), "value_out_of_range"),
    ("value -2e150", raw('"value": -2e150'), "value_out_of_range"),
    ("value 1e-101", raw('"value": 1e-101'), "value_out_of_range"),
    ("value '-3e-200' string", line(value="-3e-200"), "value_out_of_range"),
    ("value true", line(value=True), "invalid_value"),
    ("value false", line(value=False), "invalid_value"),
    ("value text", line(value="twelve"), "invalid_value"),
    ("value empty string", line(value=""), "invalid_value"),
    ("value hex string", line(value="0x10"), "invalid_value"),
    ("value string with a tab before the number", line(value="\t1"), "invalid_value"),
    ("value string with digit separators", line(value="1_000"), "invalid_value"),
    ("value string padded with a no-break space", line(value="\u00a012"), "invalid_value"),
    ("value string padded with an ideographic space", line(value="12\u3000"), "invalid_value"),
    ("value 'NaN' string", line(value="NaN"), "invalid_value"),
    ("value object", line(value={"v": 1}), "invalid_value"),
    ("value array", line(value=[1]), "invalid_value"),
    ("startDate missing", line(startDate=DROP), "missing_start_date"),
    ("startDate null", line(startDate=None), "missing_start_date"),
    ("startDate 2022-02-30", line(startDate="2022-02-30"), "invalid_start_date"),
    ("startDate month 13", line(startDate="2022-13-01"), "invalid_start_date"),
    ("startDate hour 25", line(startDate="2022-01-03T25:00:00"), "invalid_start_date"),
    ("startDate yesterday", line(startDate="yesterday"), "invalid_start_date"),
    ("startDate US format", line(startDate="01/03/2022"), "invalid_start_date"),
    ("startDate number", line(startDate=20220103), "invalid_start_date"),
    ("startDate injection", line(startDate=INJECTION), "invalid_start_date"),
    ("startDate offset +24:00", line(startDate="2022-01-03T10:00:00+24:00"), "invalid_start_date"),
    ("startDate hour 24 (RFC 3339 has none)", line(startDate="2022-01-03T24:00:00Z"), "invalid_start_date"),
    ("startDate leap second", line(startDate="2022-01-03T23:59:60Z"), "invalid_start_date"),
    ("startDate offset +99:00", line(startDate="2022-01-03T10:00:00+99:00"), "invalid_start_date"),
    ("startDate offset minutes 60", line(startDate="2022-01-03T10:00:00+05:60"), "invalid_start_date"),
    ("startDate ISO basic format", line(startDate="20220103T100000Z"), "invalid_start_date"),
    ("startDate hour alone", line(startDate="2022-01-03T10Z"), "invalid_start_date"),
    ("startDate comma fraction", line(startDate="2022-01-03T10:00:00,5Z"), "invalid_start_date"),
    ("startDate ISO week date", line(startDate="2022-W01-1"), "invalid_start_date"),
    ("startDate ISO ordinal date", line(startDate="2022-003"), "invalid_start_date"),
    ("startDate before partitions", line(startDate="2019-12-31"), "start_date_out_of_range"),
    ("startDate year 3000", line(startDate="3000-01-01"), "start_date_out_of_range"),
    ("byte order mark before an item that is not the first", "\ufeff" + line(), "invalid_json"),
    ("createdBy number", line(createdBy=5), "invalid_created_by"),
    ("createdBy empty", line(createdBy=""), "invalid_created_by"),
    ("createdBy object", line(createdBy={"app": "drive"}), "invalid_created_by"),
    ("createdBy too long", line(createdBy="x" * 256), "invalid_created_by"),
    ("createdBy with an escaped NUL (a key text cannot hold it)", line(createdBy="app\x00x"), "invalid_created_by"),
    ("group1 missing", line(group1=DROP), "missing_group1"),
    ("group1 null", line(group1=None), "missing_group1"),
    ("group1 wrong key", line(group1={"os": "a"}), "invalid_group1"),
    ("group1 two keys", line(group1={"device": "a", "os": "x"}), "invalid_group1"),
    ("group1 empty object", line(group1={}), "invalid_group1"),
    ("group1 value object", line(group1={"device": {"a": 1}}), "invalid_group1"),
    ("group1 value array", line(group1={"device": ["a"]}), "invalid_group1"),
    ("group1 value null", line(group1={"device": None}), "invalid_group1"),
    ("group1 plain string", line(group1="a"), "invalid_group1"),
    ("group1 value with an escaped NUL", line(group1={"device": "a\x00b"}), "invalid_group1"),
    ("group1 duplicate key", line().replace('{"device": "a"}', '{"device": "a", "device": "b"}'), "invalid_group1"),
    ("group2 missing", line(group2=DROP), "missing_group2"),
    ("group2 wrong key", line(group2={"device": "x"}), "invalid_group2"),
    ("group3 not defined", line(group3={"status": "ok"}), "unexpected_group3"),
    (
        "group on a measure without groups",
        line(measureName="errors-daily", group1=DROP, group2=DROP, group3={"k": 1}),
        "unexpected_group3",
    ),
    ("group injection key", line(group1={INJECTION: "a"}), "invalid_group1"),
]

ACCEPTED: list[tuple[str, str, dict[str, Any]]] = [  # (case, line, stored fields)
    ("numeric string", line(value="12.5"), {"value": 12.5}),
    ("numeric string with spaces and sign", line(value=" -3 "), {"value": -3.0}),
    ("numeric string exponent", line(value="1e3"), {"value": 1000.0}),
    ("plus sign", line(value="+4"), {"value": 4.0}),
    ("numeric string without whole digits", line(value=".5"), {"value": 0.5}),
    ("numeric string without fraction digits", line(value="5."), {"value": 5.0}),
    ("negative zero", line(value=-0.0), {"value": 0.0}),
    ("value 1e100, the largest magnitude", raw('"value": -1e100'), {"value": -1e100}),
    ("value 1e-100, the smallest non-zero magnitude", line(value="1e-100"), {"value": 1e-100}),
    ("createdBy null", line(createdBy=None), {"created_by": ""}),
    ("startDate on the first partition day", line(startDate="2020-01-01"), {"start_date": "2020-01-01"}),
    ("payload of 16384 bytes, the limit", sized(16_384)[0], {"group1": sized(16_384)[1]}),
    ("group value -0 is the group 0", line().replace('{"device": "a"}', '{"device": -0}'), {"group1": 0}),
    ("group value -0.0 is the group 0", line().replace('{"device": "a"}', '{"device": -0.0}'), {"group1": 0}),
    ("createdBy 255 chars", line(createdBy="c" * 255), {"created_by": "c" * 255}),
    ("offset west", line(startDate="2022-01-02T23:30:00-02:00"), {"start_date": "2022-01-03"}),
    ("offset east", line(startDate="2022-01-04T01:30:00+02:00"), {"start_date": "2022-01-03"}),
    ("zulu with fraction", line(startDate="2022-01-03T12:00:00.250Z"), {"start_date": "2022-01-03"}),
    (
        "12 fraction digits (RFC 3339 sets no limit; truncated, not rounded into the next day)",
        line(startDate="2022-01-03T23:59:59.999999999999Z"),
        {"start_date": "2022-01-03"},
    ),
    ("space separator", line(startDate="2022-01-03 08:15"), {"start_date": "2022-01-03"}),
    ("lower-case t and z (RFC 3339)", line(startDate="2022-01-03t23:30:00z"), {"start_date": "2022-01-03"}),
    ("offset -23:59 into the next week", line(startDate="2022-01-02T10:00:00-23:59"), {"start_date": "2022-01-03"}),
    ("offset +HHMM into the previous day", line(startDate="2022-01-04T00:30:00+0100"), {"start_date": "2022-01-03"}),
    ("offset +HH into the previous day", line(startDate="2022-01-04T00:30:00+01"), {"start_date": "2022-01-03"}),
    ("no seconds, offset into the next day", line(startDate="2022-01-02T23:30-0100"), {"start_date": "2022-01-03"}),
    ("group value number", line(group1={"device": 3}), {"group1": 3}),
    ("group value boolean", line(group1={"device": False}), {"group1": False}),
    ("group value unicode and quotes", line(group1={"device": 'é "q" 漢'}), {"group1": 'é "q" 漢'}),
    ("injection as a group value", line(group1={"device": INJECTION}), {"group1": INJECTION}),
    ("null group of an undefined key", line(group3=None), {"group3": None}),
]


def test_malformed_measures_rejected_with_reasons(warehouse: Warehouse, tmp_path: Path) -> None:
    """Each malformed line gets its reason; received = accepted + rejected; the inbox keeps everything."""
    warehouse.sync_definitions(DEFINITIONS)
    lines = [line()] + [text for _, text, _ in MALFORMED] + [line(value=2)]
    result = ingest(warehouse, tmp_path, lines=lines)
    assert (result.received, result.accepted, result.rejected) == (len(lines), 2, len(MALFORMED))
    assert result.rejected_by_reason == dict(Counter(reason for _, _, reason in MALFORMED))
    rejected = warehouse.read_table("rejected_measures", order_by="seq")
    got = dict(zip(rejected["seq"].tolist(), rejected["reason"].tolist(), strict=True))
    assert {case: got.get(i + 2) for i, (case, _, _) in enumerate(MALFORMED)} == {
        case: reason for case, _, reason in MALFORMED
    }
    inbox = warehouse.read_table("inbox", order_by="seq")
    assert inbox["seq"].tolist() == list(range(1, len(lines) + 1))
    assert [p.replace("\x00", "\ufffd") for p in inbox["payload"]] == [t.replace("\x00", "\ufffd") for t in lines]
    assert warehouse.loss_counts() == (len(lines), 2, len(MALFORMED))
    raw_rows = warehouse.read_table("raw_measures", order_by="seq")
    assert raw_rows["seq"].tolist() == [1, len(lines)] and raw_rows["value"].tolist() == [1.0, 2.0]
    names = dict(zip(rejected["seq"], rejected["measure_name"], strict=True))
    assert names[1 + 1 + [c for c, _, _ in MALFORMED].index("injection measureName")] == INJECTION


def test_accepted_edge_cases(warehouse: Warehouse, tmp_path: Path) -> None:
    """Numeric strings, null createdBy, offsets and odd group values are accepted and stored right."""
    warehouse.sync_definitions(DEFINITIONS)
    result = ingest(warehouse, tmp_path, lines=[text for _, text, _ in ACCEPTED])
    assert (result.received, result.accepted, result.rejected) == (len(ACCEPTED), len(ACCEPTED), 0)
    stored = warehouse.read_table("raw_measures", order_by="seq")
    for (case, _, fields), (_, row) in zip(ACCEPTED, stored.iterrows(), strict=True):
        want = {
            "value": 1.0,
            "start_date": "2022-01-03",
            "created_by": "",
            "group1": "a",
            "group2": "x",
            "group3": None,
        } | fields
        got = {
            "value": row["value"],
            "start_date": pd.Timestamp(row["start_date"]).date().isoformat(),
            "created_by": row["created_by"],
        }
        got |= {g: json.loads(row[g]) if row[g] != "" else None for g in ("group1", "group2", "group3")}
        assert got == want, case


ITEMS = [
    {"measureName": "errors-daily", "value": 1, "startDate": "2022-01-03"},
    {"measureName": "errors-daily", "value": "2.5", "startDate": "2022-01-04T10:00:00+01:00"},
    {"measureName": "nope", "value": 3, "startDate": "2022-01-05"},
    {"measureName": "errors-daily", "value": 4, "startDate": "2022-01-05", "createdBy": "drive"},
]


@pytest.mark.parametrize(
    "fmt",
    [
        "array",
        "pretty array",
        "measures object",
        "ndjson",
        "ndjson with blank lines and CRLF",
        "array with a byte order mark",
        "measures object with a byte order mark",
        "ndjson with a byte order mark",
    ],
)
def test_file_formats(warehouse: Warehouse, tmp_path: Path, fmt: str) -> None:
    """A JSON array, {"measures": [...]} and NDJSON give the same intake."""
    texts = {
        "array": json.dumps(ITEMS),
        "pretty array": json.dumps(ITEMS, indent=2),
        "measures object": json.dumps({"measures": ITEMS}, indent=1),
        "ndjson": "\n".join(json.dumps(i) for i in ITEMS) + "\n",
        "ndjson with blank lines and CRLF": "\r\n\r\n".join(json.dumps(i) for i in ITEMS),
    }
    bom = {f"{name} with a byte order mark": "\ufeff" + texts[name] for name in ("array", "measures object", "ndjson")}
    texts |= bom
    path = tmp_path / "measures.json"
    path.write_text(texts[fmt], encoding="utf-8")
    result = warehouse.ingest_file(path, DEFINITIONS, FIRST_DAY)
    assert result.as_dict() == {
        "received": 4,
        "accepted": 3,
        "rejected": 1,
        "rejected_by_reason": {"unknown_measure": 1},
    }
    stored = warehouse.read_table("raw_measures", order_by="seq")
    assert stored["value"].tolist() == [1.0, 2.5, 4.0] and stored["created_by"].tolist() == ["", "", "drive"]
    assert [json.loads(p) for p in warehouse.read_table("inbox", order_by="seq")["payload"]] == ITEMS


def test_single_pretty_printed_object(warehouse: Warehouse, tmp_path: Path) -> None:
    """One measure written over several lines is one item."""
    path = tmp_path / "one.json"
    path.write_text(json.dumps(ITEMS[0], indent=4), encoding="utf-8")
    assert warehouse.ingest_file(path, DEFINITIONS, FIRST_DAY).accepted == 1
    path.write_text("\ufeff" + json.dumps(ITEMS[3], indent=4), encoding="utf-8")  # with a byte order mark
    assert warehouse.ingest_file(path, DEFINITIONS, FIRST_DAY).accepted == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"measureName": "errors-daily", "value": \xff\xfe 1}\n' + b"{}\n" * 10, "not UTF-8"),
        (b"\xc3\x28" + b" " * 100, "not UTF-8"),
        (b'[{"measureName": "errors-daily", "value": 1}, {"measureName": ', "not a valid JSON document"),
        (b'{"measures": [{"value": 1}', "not a valid JSON document"),
        (b"[1, 2,, 3]", "not a valid JSON document"),
        # an array (or measures document) on its first line, then more: a broken document, not NDJSON
        (b'[{"measureName": "errors-daily", "value": 1, "startDate": "2022-01-03"}]\nx\n', "not a valid JSON"),
        (b'[{"measureName": "errors-daily", "value": 1, "startDate": "2022-01-03"}]\n\x1a', "not a valid JSON"),
        (b"[1]\n[2]\n", "not a valid JSON document"),
        (b'{"measures": [{"value": 1}]}\n{"measures": []}\n', "not a valid JSON document"),
        (b"[" + b"[" * 3000 + b"]" * 3000, "not a valid JSON document"),  # deeper than Python's decoder
        (None, "no such file"),
    ],
)
def test_unreadable_files_raise_and_write_nothing(
    warehouse: Warehouse, tmp_path: Path, content: bytes | None, message: str
) -> None:
    """An unreadable file raises AggassetsError and leaves every table as it was."""
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AggassetsError, match=message):
        warehouse.ingest_file(path, DEFINITIONS, FIRST_DAY)
    assert warehouse.loss_counts() == (0, 0, 0)
    assert warehouse.read_table("intake_batches").empty


def test_empty_file_is_an_empty_batch(warehouse: Warehouse, tmp_path: Path) -> None:
    """An empty file is received as zero items, not an error."""
    path = tmp_path / "empty.ndjson"
    path.write_text("\n\n", encoding="utf-8")
    assert warehouse.ingest_file(path, DEFINITIONS, FIRST_DAY).as_dict()["received"] == 0
    assert warehouse.loss_counts() == (0, 0, 0)


def test_duckdb_inbox_payloads_stored_with_zstd(tmp_path: Path) -> None:
    """On a DuckDB file, inbox payloads are kept whole and written with zstd once checkpointed."""
    path = tmp_path / "many.ndjson"
    lines = [line(value=i) for i in range(5000)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with open_warehouse(f"duckdb:///{tmp_path / 'wh.duckdb'}") as wh:
        assert isinstance(wh, DuckDBWarehouse)
        wh.sync_definitions(DEFINITIONS)
        assert wh.ingest_file(path, DEFINITIONS, FIRST_DAY).accepted == len(lines)
        wh.con.execute("CHECKPOINT")
        compressions = wh.fetch(
            "SELECT DISTINCT compression FROM pragma_storage_info('inbox') "
            "WHERE column_name = 'payload' AND segment_type = 'VARCHAR'"
        )
        assert compressions["compression"].tolist() == ["ZSTD"]
        assert wh.read_table("inbox", order_by="seq")["payload"].tolist() == lines


def test_duckdb_intake_leaves_tables_of_the_same_names_alone(tmp_path: Path) -> None:
    """The intake's temp tables (lines, staged) never touch a warehouse table that has their name."""
    path = tmp_path / "items.ndjson"
    path.write_text("\n".join([line(), "not json", line(value=2)]) + "\n", encoding="utf-8")
    with open_warehouse(f"duckdb:///{tmp_path / 'wh.duckdb'}") as wh:
        assert isinstance(wh, DuckDBWarehouse)
        wh.sync_definitions(DEFINITIONS)
        for name in ("lines", "staged"):
            wh.execute(f"CREATE TABLE {name} AS SELECT 'kept' AS note")
        assert wh.ingest_file(path, DEFINITIONS, FIRST_DAY).as_dict()["rejected_by_reason"] == {"invalid_json": 1}
        for name in ("lines", "staged"):
            assert wh.fetch(f"SELECT note FROM main.{name}")["note"].tolist() == ["kept"]


def test_line_longer_than_the_reader_allows_is_one_oversized_item(warehouse: Warehouse, tmp_path: Path) -> None:
    """A 3 MB line (over DuckDB's 2 MiB line limit) is rejected as oversized; the other items are ingested."""
    warehouse.sync_definitions(DEFINITIONS)
    huge = line(createdBy="x" * 3_000_000)
    result = ingest(warehouse, tmp_path, lines=[line(), huge, line(value=2)])
    assert result.as_dict() == {"received": 3, "accepted": 2, "rejected": 1, "rejected_by_reason": {"oversized": 1}}
    assert warehouse.read_table("inbox", order_by="seq")["payload"].tolist()[1] == huge
    assert warehouse.read_table("raw_measures", order_by="seq")["value"].tolist() == [1.0, 2.0]


def test_a_last_line_over_the_reader_limit_without_a_line_end_is_one_oversized_item(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """The 3 MB line is the file's last and has no line end: still one oversized item beside the others."""
    warehouse.sync_definitions(DEFINITIONS)
    huge = line(createdBy="x" * 3_000_000)
    path = tmp_path / "last.ndjson"
    path.write_text(line() + "\n" + huge, encoding="utf-8")
    result = warehouse.ingest_file(path, DEFINITIONS, FIRST_DAY)
    assert result.as_dict() == {"received": 2, "accepted": 1, "rejected": 1, "rejected_by_reason": {"oversized": 1}}
    assert warehouse.read_table("inbox", order_by="seq")["payload"].tolist()[1] == huge


def test_invalid_utf8_after_the_first_block_refuses_the_file(warehouse: Warehouse, tmp_path: Path) -> None:
    """Bytes that are not UTF-8 far into the file: a one-line error naming the line; nothing is written."""
    warehouse.sync_definitions(DEFINITIONS)
    path = tmp_path / "latin1.ndjson"
    latin1 = line(createdBy="caf\u00e9").replace("\\u00e9", "\u00e9").encode("latin-1")
    path.write_bytes((line() + "\n").encode() * 2000 + latin1 + b"\n")
    with pytest.raises(AggassetsError, match=r"latin1.ndjson: not UTF-8 text \(line 2001\)$"):
        warehouse.ingest_file(path, DEFINITIONS, FIRST_DAY)
    assert warehouse.loss_counts() == (0, 0, 0)


def test_ndjson_whose_first_line_is_malformed_is_still_ndjson(warehouse: Warehouse, tmp_path: Path) -> None:
    """A broken first item does not turn an NDJSON file into a (refused) JSON document."""
    warehouse.sync_definitions(DEFINITIONS)
    first = '{"measureName": "visits-daily", "value": 1,, "startDate": "2022-01-03"}'
    result = ingest(warehouse, tmp_path, lines=[first, line(), line(value=2)])
    assert result.as_dict() == {"received": 3, "accepted": 2, "rejected": 1, "rejected_by_reason": {"invalid_json": 1}}
    path = tmp_path / "one-item-a-line.json"  # a valid document whose items sit one a line stays a document
    path.write_text('{"measures": [\n' + json.dumps(ITEMS[0]) + "\n]}\n", encoding="utf-8")
    assert warehouse.ingest_file(path, DEFINITIONS, FIRST_DAY).as_dict()["received"] == 1


def test_randomly_edited_lines_are_stored_as_validated(warehouse: Warehouse, tmp_path: Path) -> None:
    """Every engine stores a file of randomly edited lines exactly as the careful validation decides:
    same item numbers, accepted values and reasons, nothing lost."""
    warehouse.sync_definitions(DEFINITIONS)
    lines = [t for t in edited_lines(random.Random(99), 1500, 2) if t.strip()]
    path = tmp_path / "edits.ndjson"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with duckdb.connect() as con:  # what the careful validation alone decides
        intake_fast.stage_items(con, path, DEFINITIONS, FIRST_DAY, fast=False)
        want = con.execute(intake_fast.STAGED_ROWS).fetchall()
    result = warehouse.ingest_file(path, DEFINITIONS, FIRST_DAY)
    assert result.received == len(lines) == result.accepted + result.rejected
    assert result.rejected_by_reason == dict(Counter(r[2] for r in want if r[2] is not None))
    raw_rows = warehouse.read_table("raw_measures", order_by="seq")
    stored = [
        (
            int(r.seq),
            r.measure_name,
            pd.Timestamp(r.start_date).date(),
            r.created_by,
            r.group1,
            r.group2,
            r.group3,
            float(r.value),
        )
        for r in raw_rows.itertuples()
    ]
    assert stored == [(r[0], *r[3:]) for r in want if r[2] is None]
    rejected = warehouse.read_table("rejected_measures", order_by="seq")
    assert list(zip(rejected["seq"].astype(int), rejected["reason"], strict=True)) == [
        (r[0], r[2]) for r in want if r[2] is not None
    ]


def test_items_left_by_the_fast_path_found_across_blocks(warehouse: Warehouse, tmp_path: Path) -> None:
    """In a second batch of 5000 items, malformed ones at the first and last item and around the 2048-item
    blocks the DuckDB intake enumerates are each rejected under their own seq; the others are accepted."""
    warehouse.sync_definitions(DEFINITIONS)
    ingest(warehouse, tmp_path, lines=[line(), "{not json"])  # the second batch's seq starts at 3
    bad = {1, 2047, 2048, 2049, 4096, 4097, 5000, *range(3000, 3010)}
    lines = ["{not json" if n in bad else line(value=n) for n in range(1, 5001)]
    result = ingest(warehouse, tmp_path, lines=lines)
    assert (result.received, result.accepted, result.rejected) == (5000, 5000 - len(bad), len(bad))
    rejected = warehouse.read_table("rejected_measures", order_by="seq")
    assert rejected["seq"].tolist() == [2, *sorted(2 + n for n in bad)]
    assert set(rejected["reason"]) == {"invalid_json"}
    raw_rows = warehouse.read_table("raw_measures", order_by="seq")
    assert raw_rows["seq"].tolist()[1:] == [2 + n for n in range(1, 5001) if n not in bad]
    assert raw_rows["value"].tolist()[1:] == [float(n) for n in range(1, 5001) if n not in bad]


def test_numeric_group_values_are_stored_by_value(warehouse: Warehouse, tmp_path: Path) -> None:
    """1, 1.0 and 1E0 are one group (as PostgreSQL's jsonb, DACC's storage, compares them), on the fast
    path and the careful one (an escaped string field sends an item there)."""
    warehouse.sync_definitions(DEFINITIONS)
    written = ["1", "1.0", "1E0", "-0", "-0.0", "0.10", "1e2", "2.5", "12345678901234567890123", '"1.0"']
    stored = ["1", "1", "1", "0", "0", "0.1", "100", "2.5", "12345678901234567890123", '"1.0"']
    # integers beyond 2^53 by value, however written; reals as the float they read as; beyond floats exact
    large = ["1e22", "10000000000000000000000", "10E+21", "9007199254740992.0", "12345678901234567.0"]
    written += [*large, "1e400", "10E399", "-1e400", "-1.5e400", "1e999", "1" + "0" * 999, "1" + "0" * 999 + ".0"]
    stored += [str(int(float(w))) if "." in w or "e" in w.lower() else w for w in large]
    stored += [str(10**400), str(10**400), str(-(10**400)), str(-15 * 10**399), str(10**999), str(10**999)]
    stored += [str(10**999)]
    fast = [line().replace('{"device": "a"}', f'{{"device": {w}}}') for w in written]
    careful = [t.replace('"2022-01-03"', '"2022-01-\\u00303"') for t in fast]  # \u0030 is "0"
    result = ingest(warehouse, tmp_path, lines=fast + careful)
    assert (result.accepted, result.rejected) == (2 * len(written), 0)
    assert warehouse.read_table("raw_measures", order_by="seq")["group1"].tolist() == stored * 2


def test_group_integers_beyond_the_written_out_digits_are_invalid(warehouse: Warehouse, tmp_path: Path) -> None:
    """An integral group number of more than 1,000 digits (however written) is invalid_group1, on the fast
    path's lines and the careful path's: one value must not become several groups by its spellings."""
    warehouse.sync_definitions(DEFINITIONS)
    written = ["1e1000", "10e999", "1.0E1000", "1e+1000", "0.1e1001", "-1e1000", "1e999999", "1" + "0" * 1000]
    # with a fraction of zeros: stored with all their digits before
    written += ["1" + "0" * 1000 + ".0", "1" + "0" * 999 + ".00e1", "7" * 3000 + ".0", "1" + "0" * 15000 + ".0"]
    # exponents beyond a 64-bit integer: "1" was stored for the first, the others crashed the whole intake
    written += [
        "1e99999999999999999999",
        "1e9223372036854775807",
        "1.25E+9223372036854775807",
        "-7e18446744073709551616",
    ]
    fast = [line().replace('{"device": "a"}', f'{{"device": {w}}}') for w in written]
    careful = [t.replace('"2022-01-03"', '"2022-01-\\u00303"') for t in fast]
    result = ingest(warehouse, tmp_path, lines=fast + careful)
    assert (result.accepted, result.rejected_by_reason) == (0, {"invalid_group1": 2 * len(written)})


def test_group_numbers_too_small_for_a_double_are_zero(warehouse: Warehouse, tmp_path: Path) -> None:
    """A group number whose double is 0 (however far its exponent goes below a 64-bit integer) is the
    group 0, as 0, 0.0 and -0 are, on both paths."""
    warehouse.sync_definitions(DEFINITIONS)
    written = ["1.5e-9223372036854775808", "12.5e-9223372036854775807", "1e-99999999999999999999", "-3e-400", "0e99999"]
    assert all(float(w) == 0 for w in written)
    fast = [line().replace('{"device": "a"}', f'{{"device": {w}}}') for w in written]
    careful = [t.replace('"2022-01-03"', '"2022-01-\\u00303"') for t in fast]
    result = ingest(warehouse, tmp_path, lines=fast + careful)
    assert (result.accepted, result.rejected) == (2 * len(written), 0)
    assert warehouse.read_table("raw_measures")["group1"].tolist() == ["0"] * (2 * len(written))


def test_first_partition_of_each_period_takes_the_whole_period(warehouse: Warehouse, tmp_path: Path) -> None:
    """With partitions starting on Wednesday 2020-01-15, the first week is Monday 2020-01-13 and the first
    month January: a week or month measure dated anywhere in them is accepted (at its period start),
    one dated before them is start_date_out_of_range; a day measure must be on or after the 15th. The
    same on the fast path and the careful one (an escaped character in the date)."""
    warehouse.sync_definitions(DEFINITIONS)
    cases = [  # (measure, startDate, stored period start or None when out of range)
        ("latency-weekly", "2020-01-13", "2020-01-13"),
        ("latency-weekly", "2020-01-13T00:00:00Z", "2020-01-13"),
        ("latency-weekly", "2020-01-13T00:30:00+01:00", None),  # 2020-01-12 23:30 UTC
        ("latency-weekly", "2020-01-12", None),
        ("variation-monthly", "2020-01-01", "2020-01-01"),
        ("variation-monthly", "2019-12-31T23:59:59Z", None),
        ("errors-daily", "2020-01-15", "2020-01-15"),
        ("errors-daily", "2020-01-14", None),
    ]
    lines = []
    for name, day, _ in cases:
        groups = {"group1": {"fluid": "w"}} if name == "variation-monthly" else {}
        lines.append(json.dumps({"measureName": name, "value": 1, "startDate": day, **groups}))
    lines += [t.replace('"20', '"\\u00320', 1) for t in lines]  # \u0032 is "2": the careful path
    path = tmp_path / "first.ndjson"
    path.write_text("\n".join(lines) + "\n")
    result = warehouse.ingest_file(path, DEFINITIONS, date(2020, 1, 15))
    out = [day is None for _, _, day in cases] * 2
    assert result.rejected_by_reason == {"start_date_out_of_range": sum(out)}
    stored = warehouse.read_table("raw_measures", order_by="seq")
    want = [day for _, _, day in cases if day is not None] * 2
    assert [pd.Timestamp(d).date().isoformat() for d in stored["start_date"]] == want


def test_group_integers_written_with_long_mantissas_and_exponents_beyond_a_thousand(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """10^400 written with 1,200 fraction digits and the exponent 1600, or 3,001 / 15,001 digits and the
    exponents -2600 / -14600, is the group 10^400 (401 digits), on both paths."""
    warehouse.sync_definitions(DEFINITIONS)
    written = ["0." + "0" * 1199 + "1e1600", "1" + "0" * 3000 + "e-2600", "1" + "0" * 15000 + "e-14600"]
    fast = [line().replace('{"device": "a"}', f'{{"device": {w}}}') for w in written]
    careful = [t.replace('"2022-01-03"', '"2022-01-\\u00303"') for t in fast]
    result = ingest(warehouse, tmp_path, lines=fast + careful)
    assert (result.accepted, result.rejected) == (2 * len(written), 0)
    assert warehouse.read_table("raw_measures")["group1"].tolist() == [str(10**400)] * (2 * len(written))


def test_negative_zero_is_stored_as_zero_so_both_engines_show_one_zero(warehouse: Warehouse, tmp_path: Path) -> None:
    """-0 written as a number (fast path) or as text with an offset date (careful path) is stored as +0:
    PostgreSQL's min of -0 and 0 printed -0.0 where DuckDB printed 0.0 (a review found it)."""
    warehouse.sync_definitions(DEFINITIONS)
    lines = [
        '{"measureName": "errors-daily", "value": -0.0, "startDate": "2022-01-03"}',
        '{"measureName": "errors-daily", "value": "-0", "startDate": "2022-01-03T10:00:00+01:00"}',
        '{"measureName": "errors-daily", "value": -1e-400, "startDate": "2022-01-03"}',
        '{"measureName": "errors-daily", "value": 0, "startDate": "2022-01-03"}',
    ]
    assert ingest(warehouse, tmp_path, lines=lines).accepted == 4
    values = warehouse.read_table("raw_measures", order_by="seq")["value"].tolist()
    assert values == [0.0] * 4 and [math.copysign(1.0, v) for v in values] == [1.0] * 4
    warehouse.refresh("day", date(2022, 1, 3), date(2022, 1, 4))
    (row,) = warehouse.released("day", "errors-daily", date(2022, 1, 3), date(2022, 1, 4))
    assert json.dumps([row["min"], row["max"], row["sum"], row["avg"]]) == "[0.0, 0.0, 0.0, 0.0]"


def test_postgres_validates_a_file_larger_than_its_memory_limit(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL's intake validates in a DuckDB bounded in memory (unbounded, a 10M-item file took the
    process to 4.3 GiB): a file whose staged rows exceed the bound spills, and is stored exactly."""
    from aggassets.warehouse import intake

    monkeypatch.setattr(intake, "VALIDATION_MEMORY_LIMIT", "80MB")
    seen: list[tuple[str, int]] = []
    stage_items = intake_fast.stage_items

    def staging(con: duckdb.DuckDBPyConnection, *args: Any) -> int:
        careful = stage_items(con, *args)
        limit = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        seen.append((limit, len(con.execute("SELECT * FROM duckdb_temporary_files()").fetchall())))
        return careful

    monkeypatch.setattr(intake_fast, "stage_items", staging)
    items = [
        {"measureName": "visits-daily", "value": k, "startDate": f"2022-01-{3 + k % 20:02d}", "createdBy": "app"}
        | {"group1": {"device": f"d{k % 7}"}, "group2": {"os": "linux"}}
        for k in range(700_000)
    ]
    path = tmp_path / "big.ndjson"
    path.write_text("".join(json.dumps(i) + "\n" for i in items) + "oops\n", encoding="utf-8")
    assert path.stat().st_size > 80 * 10**6
    with open_warehouse(postgres_url) as wh:
        wh.sync_definitions(DEFINITIONS)
        result = wh.ingest_file(path, DEFINITIONS, FIRST_DAY)
        assert (result.received, result.accepted, result.rejected_by_reason) == (700_001, 700_000, {"invalid_json": 1})
        raw = wh.read_table("raw_measures", order_by="seq")
    assert list(raw["value"]) == [float(i["value"]) for i in items]
    assert list(raw["measure_name"]) == [i["measureName"] for i in items]
    ((limit, spilled),) = seen
    assert limit == "76.2 MiB" and spilled > 0  # DuckDB prints 80 MB in MiB; the staged rows went to disk


def test_postgres_validation_spilling_without_room_is_a_one_line_error(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL's intake validates in a bounded DuckDB: a spill to a full temporary folder is a one-line
    error naming the folder (it read `database: Out of Memory Error ...`), and nothing is stored."""
    spill = full_spill_folder(monkeypatch, tmp_path)
    path = tmp_path / "big.ndjson"
    item = {"measureName": "visits-daily", "startDate": "2022-01-03", "group1": {"device": "d"}, "group2": {"os": "x"}}
    path.write_text("".join(json.dumps(item | {"value": k}) + "\n" for k in range(1_200_000)), encoding="utf-8")
    with open_warehouse(postgres_url) as wh:
        wh.sync_definitions(DEFINITIONS)
        with pytest.raises(AggassetsError) as err:
            wh.ingest_file(path, DEFINITIONS, FIRST_DAY)
        counts = [len(wh.read_table(t)) for t in ("inbox", "raw_measures", "rejected_measures", "intake_batches")]
    assert str(err.value) == spill_error(path, spill)
    assert counts == [0, 0, 0, 0]
    assert list(spill.iterdir()) == []  # the spill folder is removed
