"""Event intake on every engine: reasons for malformed rows, exact storage, formats, dimensions, file errors."""

import csv
import json
from collections import Counter
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aggassets import cli
from aggassets.cli import main
from aggassets.demo_events import generate_events
from aggassets.errors import AggassetsError
from aggassets.warehouse import events_intake, open_warehouse
from aggassets.warehouse.base import Warehouse
from aggassets_tests.warehouse.engines import WarehouseFactory

COLUMNS = ["date", "exp_id", "exp_variant_id", "unit_type", "unit_id", "goal", "count", "value"]
VALID = {
    "date": "2026-10-05",
    "exp_id": "exp-1",
    "exp_variant_id": "a",
    "unit_type": "user",
    "unit_id": "u1",
    "goal": "purchase",
    "count": "2",
    "value": "9.5",
}
INJECTION = "x'; DROP TABLE events; --"


def row(**cells: str) -> dict[str, str]:
    """The valid row with some cells replaced."""
    return VALID | cells


def write_csv(path: Path, rows: list[dict[str, str]], columns: list[str] | None = None) -> Path:
    """Rows as CSV with a header (missing cells empty)."""
    columns = columns or list(rows[0])
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows([[r.get(c, "") for c in columns] for r in rows])
    return path


def write_lines(path: Path, lines: list[str]) -> Path:
    """Text lines as a file."""
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


MALFORMED: list[tuple[str, dict[str, str], str]] = [
    ("empty date", row(date=""), "bad_date"),
    ("month 13", row(date="2026-13-01"), "bad_date"),
    ("February 30", row(date="2026-02-30"), "bad_date"),
    ("day-first date", row(date="05/10/2026"), "bad_date"),
    ("one-digit day", row(date="2026-10-5"), "bad_date"),
    ("before 1900", row(date="1899-12-31"), "bad_date"),
    ("year 3000", row(date="3000-01-01"), "bad_date"),
    ("hour 25", row(date="2026-10-05T25:00:00"), "bad_date"),
    ("hour 24 (RFC 3339 has none)", row(date="2026-10-05T24:00:00"), "bad_date"),
    ("leap second", row(date="2026-10-05T23:59:60Z"), "bad_date"),
    ("offset minutes 60", row(date="2026-10-05T10:00:00+05:60"), "bad_date"),
    ("a word", row(date="yesterday"), "bad_date"),
    ("injection date", row(date=INJECTION), "bad_date"),
    ("exp_id of 6,000 characters (PostgreSQL's index takes ~2,700 bytes)", row(exp_id="e" * 6000), "id_too_long"),
    ("variant of 1,025 bytes", row(exp_variant_id="v" * 1025), "id_too_long"),
    ("unit_id of 1,026 bytes in 2-byte letters", row(unit_id="é" * 513), "id_too_long"),
    ("goal of 1,025 characters", row(goal="g" * 1025), "id_too_long"),
    ("unit_type of 1,025 characters", row(unit_type="u" * 1025), "id_too_long"),
    ("empty exp_id", row(exp_id=""), "missing_exp_id"),
    ("blank exp_id", row(exp_id="   "), "missing_exp_id"),
    ("empty variant", row(exp_variant_id=""), "missing_exp_variant_id"),
    ("empty unit_type", row(unit_type=""), "bad_unit_type"),
    ("unit_type starting with a digit", row(unit_type="1user"), "bad_unit_type"),
    ("unit_type with a hyphen", row(unit_type="user-id"), "bad_unit_type"),
    ("unit_type with a space", row(unit_type="user id"), "bad_unit_type"),
    ("empty unit_id", row(unit_id=""), "missing_unit_id"),
    ("tab unit_id", row(unit_id="\t"), "missing_unit_id"),
    ("empty goal", row(goal=""), "bad_goal"),
    ("goal with a hyphen", row(goal="add-to-cart"), "bad_goal"),
    ("goal with parentheses", row(goal="purchase(x)"), "bad_goal"),
    ("goal with an accent", row(goal="café"), "bad_goal"),
    ("injection goal", row(goal=INJECTION), "bad_goal"),
    ("negative count", row(count="-1"), "bad_count"),
    ("fraction count", row(count="1.5"), "bad_count"),
    ("text count", row(count="abc"), "bad_count"),
    ("count above int64", row(count="9223372036854775808"), "bad_count"),
    ("count 2^31 (squares of sums would leave HUGEINT)", row(count="2147483648"), "bad_count"),
    ("int64 max count", row(count="9223372036854775807"), "bad_count"),
    ("exponent count", row(count="1e3"), "bad_count"),
    ("hex count", row(count="0x10"), "bad_count"),
    ("text value", row(value="abc"), "bad_value"),
    ("NaN value", row(value="NaN"), "bad_value"),
    ("inf value", row(value="inf"), "bad_value"),
    ("overflowing value", row(value="1e400"), "bad_value"),
    ("value below 1e-100", row(value="9.9e-101"), "value_out_of_range"),
    ("negative value below 1e-100", row(value="-1e-200"), "value_out_of_range"),
    ("value above 1e100", row(value="1.01e100"), "value_out_of_range"),
    ("NUL in exp_id", row(exp_id="exp\x00-1"), "nul_character"),
    ("NUL in exp_variant_id", row(exp_variant_id="a\x00"), "nul_character"),
    ("NUL in unit_id", row(unit_id="u\x001"), "nul_character"),
    ("NUL before a bad date", row(unit_id="\x00", date="x"), "nul_character"),
    ("decimal comma", row(value="1,5"), "bad_value"),
    ("double sign", row(value="--1"), "bad_value"),
    ("date before goal", row(date="2026-10-32", goal="a b"), "bad_date"),
    ("exp_id before count", row(exp_id="", count="x"), "missing_exp_id"),
    ("goal before value", row(goal="a.b", value="x"), "bad_goal"),
    ("count before value", row(count="-2", value="x"), "bad_count"),
]

# (case, cells, stored (date, exp_id, exp_variant_id, unit_type, unit_id, goal, count, value))
ACCEPTED: list[tuple[str, dict[str, str], tuple[Any, ...]]] = [
    ("plain", row(), ("2026-10-05", "exp-1", "a", "user", "u1", "purchase", 2, 9.5)),
    ("empty count and value", row(count="", value=""), ("2026-10-05", "exp-1", "a", "user", "u1", "purchase", 1, 0.0)),
    ("zero count", row(count="0"), ("2026-10-05", "exp-1", "a", "user", "u1", "purchase", 0, 9.5)),
    ("padded count", row(count=" 7 "), ("2026-10-05", "exp-1", "a", "user", "u1", "purchase", 7, 9.5)),
    ("count 3.0", row(count="3.0"), ("2026-10-05", "exp-1", "a", "user", "u1", "purchase", 3, 9.5)),
    ("count +4", row(count="+4"), ("2026-10-05", "exp-1", "a", "user", "u1", "purchase", 4, 9.5)),
    ("count 2^31 - 1", row(count="2147483647"), ("2026-10-05", "exp-1", "a", "user", "u1", "purchase", 2**31 - 1, 9.5)),
    ("count 1.", row(count="1."), ("2026-10-05", "exp-1", "a", "user", "u1", "purchase", 1, 9.5)),
    ("value 1e100", row(value="1e100"), ("2026-10-05", "exp-1", "a", "user", "u1", "purchase", 2, 1e100)),
    ("value -1e-100", row(value="-1e-100"), ("2026-10-05", "exp-1", "a", "user", "u1", "purchase", 2, -1e-100)),
    ("negative value", row(value="-0.25"), ("2026-10-05", "exp-1", "a", "user", "u1", "purchase", 2, -0.25)),
    ("exponent value", row(value="1e3"), ("2026-10-05", "exp-1", "a", "user", "u1", "purchase", 2, 1000.0)),
    ("leading dot", row(value=".5"), ("2026-10-05", "exp-1", "a", "user", "u1", "purchase", 2, 0.5)),
    (
        "offset west",
        row(date="2026-10-05T23:30:00-02:00"),
        ("2026-10-06", "exp-1", "a", "user", "u1", "purchase", 2, 9.5),
    ),
    (
        "offset east",
        row(date="2026-10-05T00:30:00+01:00"),
        ("2026-10-04", "exp-1", "a", "user", "u1", "purchase", 2, 9.5),
    ),
    (
        "lower-case t and z",
        row(date="2026-10-05t23:00:00z"),
        ("2026-10-05", "exp-1", "a", "user", "u1", "purchase", 2, 9.5),
    ),
    ("space and minutes", row(date="2026-10-05 10:00"), ("2026-10-05", "exp-1", "a", "user", "u1", "purchase", 2, 9.5)),
    (
        "padded ids",
        row(exp_id=" exp-1 ", unit_id="\tu1 "),
        ("2026-10-05", "exp-1", "a", "user", "u1", "purchase", 2, 9.5),
    ),
    ("unit_type _x9, goal 0", row(unit_type="_x9", goal="0"), ("2026-10-05", "exp-1", "a", "_x9", "u1", "0", 2, 9.5)),
    (
        "injection ids",
        row(exp_id=INJECTION, unit_id='r"); DELETE FROM events;--'),
        ("2026-10-05", INJECTION, "a", "user", 'r"); DELETE FROM events;--', "purchase", 2, 9.5),
    ),
    (
        "unicode, comma and newline",
        row(exp_variant_id="vär é 🎉", unit_id="a,b\nc"),
        ("2026-10-05", "exp-1", "vär é 🎉", "user", "a,b\nc", "purchase", 2, 9.5),
    ),
]


def stored_events(wh: Warehouse) -> list[tuple[Any, ...]]:
    """The events table as plain tuples (batch_id dropped), dimensions last in name order, sorted."""
    frame = wh.read_table("events")
    dims = sorted(c for c in frame.columns if c.startswith("dim_"))
    rows = []
    for r in frame.to_dict("records"):
        rows.append(
            (
                pd.Timestamp(r["date"]).date().isoformat(),
                *(r[c] for c in COLUMNS[1:6]),
                int(r["count"]),
                float(r["value"]),
                *(None if pd.isna(r[d]) else r[d] for d in dims),
            )
        )
    return sorted(rows, key=repr)


def rejected(wh: Warehouse) -> list[tuple[int, int, str]]:
    """(batch_id, row_number, reason) of every rejected row, sorted."""
    frame = wh.read_table("rejected_events")
    return sorted(
        (int(b), int(n), str(r)) for b, n, r in frame[["batch_id", "row_number", "reason"]].itertuples(index=False)
    )


def test_malformed_rows_rejected_with_their_reason(warehouse: Warehouse, tmp_path: Path) -> None:
    rows = [row()] + [cells for _, cells, _ in MALFORMED]
    result = warehouse.ingest_events(write_csv(tmp_path / "e.csv", rows))
    assert result.as_dict() == {
        "received": len(rows),
        "accepted": 1,
        "rejected": len(MALFORMED),
        "rejected_by_reason": dict(sorted(Counter(r for _, _, r in MALFORMED).items(), key=lambda kv: (-kv[1], kv[0]))),
    }
    got = {n: reason for _, n, reason in rejected(warehouse)}
    assert {case: got.get(i) for i, (case, _, _) in enumerate(MALFORMED, start=2)} == {
        case: reason for case, _, reason in MALFORMED
    }
    frame = warehouse.read_table("rejected_events")
    first = frame[frame["row_number"] == 2]["row_json"].iloc[0]
    assert json.loads(first) == {**VALID, "date": None}
    batches = warehouse.read_table("event_batches")
    n = len(rows)
    assert batches[["batch_id", "received", "accepted", "rejected"]].values.tolist() == [[1, n, 1, n - 1]]
    assert warehouse.event_loss_counts() == (n, 1, n - 1)


def test_json_rows_rejected_with_their_reason(warehouse: Warehouse, tmp_path: Path) -> None:
    lines = [
        json.dumps(VALID),
        "nope",
        "[1, 2]",
        "42",
        '{"date": "2026-10-05", "date": "2026-10-06"}',
        json.dumps(VALID | {"count": True}),
        json.dumps(VALID | {"value": [1]}),
        json.dumps(VALID | {"date": 20261005}),
        json.dumps(VALID | {"unit_id": None}),
        json.dumps({k: v for k, v in VALID.items() if k != "goal"}),
        json.dumps(VALID | {"count": 2.0, "value": 12}),
        json.dumps(VALID)[:-1] + ', "value": -Infinity}',  # forms DuckDB's parser takes and JSON does not
        json.dumps(VALID)[:-1] + ", }",
        json.dumps(VALID | {"shop": [1, 2]}).replace("2]", "2,]"),
        '{"date": "2026-10-05",}',
        json.dumps(VALID | {"shop": "NaN, inf,}"}),  # the same inside a string: accepted
    ]
    result = warehouse.ingest_events(write_lines(tmp_path / "e.ndjson", lines))
    assert (result.received, result.accepted, result.rejected) == (16, 3, 13)
    assert rejected(warehouse) == [
        (1, 2, "invalid_json"),
        (1, 3, "not_an_object"),
        (1, 4, "not_an_object"),
        (1, 5, "duplicate_field"),
        (1, 6, "bad_count"),
        (1, 7, "bad_value"),
        (1, 8, "bad_date"),
        (1, 9, "missing_unit_id"),
        (1, 10, "bad_goal"),
        (1, 12, "invalid_json"),
        (1, 13, "invalid_json"),
        (1, 14, "invalid_json"),
        (1, 15, "invalid_json"),
    ]
    frame = warehouse.read_table("rejected_events")
    assert frame[frame["row_number"] == 2]["row_json"].iloc[0] == "nope"  # a JSON row is kept as it came
    assert stored_events(warehouse) == [  # the last column: dimension shop
        ("2026-10-05", "exp-1", "a", "user", "u1", "purchase", 2, 12.0, None),
        ("2026-10-05", "exp-1", "a", "user", "u1", "purchase", 2, 9.5, "NaN, inf,}"),
        ("2026-10-05", "exp-1", "a", "user", "u1", "purchase", 2, 9.5, None),
    ]


def test_valid_rows_stored_exactly(warehouse: Warehouse, tmp_path: Path) -> None:
    result = warehouse.ingest_events(write_csv(tmp_path / "e.csv", [cells for _, cells, _ in ACCEPTED]))
    assert (result.received, result.accepted, result.rejected) == (len(ACCEPTED), len(ACCEPTED), 0)
    assert stored_events(warehouse) == sorted((want for _, _, want in ACCEPTED), key=repr)
    assert warehouse.read_table("rejected_events").empty


def test_count_and_value_columns_are_optional(warehouse: Warehouse, tmp_path: Path) -> None:
    rows = [{k: v for k, v in VALID.items() if k not in ("count", "value")}]
    warehouse.ingest_events(write_csv(tmp_path / "e.csv", rows))
    assert stored_events(warehouse) == [("2026-10-05", "exp-1", "a", "user", "u1", "purchase", 1, 0.0)]


FORMAT_ROWS = [
    row(Country="FR", price="120"),
    row(unit_id="u2", goal="view", count="1", value="0.1", Country="DE", price="9.99"),
    row(unit_id="u3", goal="click", count="3", value="-2.5", Country="", price="1000"),
    row(unit_id="u4", goal="bad-goal", Country="US", price="5"),
]


def test_csv_parquet_ndjson_give_identical_events(open_wh: WarehouseFactory, tmp_path: Path) -> None:
    typed = pa.table(
        {
            "date": pa.array([date(2026, 10, 5)] * 4),
            "exp_id": ["exp-1"] * 4,
            "exp_variant_id": ["a"] * 4,
            "unit_type": ["user"] * 4,
            "unit_id": ["u1", "u2", "u3", "u4"],
            "goal": ["purchase", "view", "click", "bad-goal"],
            "count": pa.array([2, 1, 3, 2], pa.int64()),
            "value": [9.5, 0.1, -2.5, 9.5],
            "Country": ["FR", "DE", None, "US"],
            "price": ["120", "9.99", "1000", "5"],
        }
    )
    pq.write_table(typed, tmp_path / "e.parquet")
    json_rows = [
        {k: (int(v) if k == "count" else float(v) if k == "value" else v or None) for k, v in r.items()}
        for r in FORMAT_ROWS
    ]
    files = [
        write_csv(tmp_path / "e.csv", FORMAT_ROWS),
        tmp_path / "e.parquet",
        write_lines(tmp_path / "e.ndjson", [json.dumps(r) for r in json_rows]),
        write_lines(tmp_path / "e.json", [json.dumps(json_rows, indent=2)]),
    ]
    want = [
        ("2026-10-05", "exp-1", "a", "user", "u1", "purchase", 2, 9.5, "FR", "120"),
        ("2026-10-05", "exp-1", "a", "user", "u2", "view", 1, 0.1, "DE", "9.99"),
        ("2026-10-05", "exp-1", "a", "user", "u3", "click", 3, -2.5, None, "1000"),
    ]
    for path in files:
        wh = open_wh()
        wh.execute("DELETE FROM events")
        wh.execute("DELETE FROM rejected_events")
        result = wh.ingest_events(path)
        assert (result.received, result.accepted, result.rejected_by_reason) == (4, 3, {"bad_goal": 1}), path
        assert stored_events(wh) == sorted(want, key=repr), path
        assert [(n, r) for _, n, r in rejected(wh)] == [(4, "bad_goal")], path
        assert wh.event_dimensions() == ["country", "price"]
        wh.close()


def test_dimensions_added_on_first_sight(warehouse: Warehouse, tmp_path: Path) -> None:
    assert warehouse.event_dimensions() == []
    warehouse.ingest_events(write_csv(tmp_path / "a.csv", [row(Country=" FR ", element="")]))
    assert warehouse.event_dimensions() == ["country", "element"]
    warehouse.ingest_events(write_csv(tmp_path / "b.csv", [row(unit_id="u2")]))
    warehouse.ingest_events(write_csv(tmp_path / "c.csv", [row(unit_id="u3", price="12", country="DE")]))
    assert warehouse.event_dimensions() == ["country", "element", "price"]
    base = ("2026-10-05", "exp-1", "a", "user")
    assert stored_events(warehouse) == [
        (*base, "u1", "purchase", 2, 9.5, "FR", None, None),
        (*base, "u2", "purchase", 2, 9.5, None, None, None),
        (*base, "u3", "purchase", 2, 9.5, "DE", None, "12"),
    ]
    assert warehouse.event_loss_counts() == (3, 3, 0)


def test_injection_strings_stored_verbatim(warehouse: Warehouse, tmp_path: Path) -> None:
    nasty = ["Robert'); DROP TABLE events;--", '"; DELETE FROM event_batches; --', "' OR '1'='1", "$1 %(x)s ?"]
    rows = [row(exp_id=s, exp_variant_id=s, unit_id=s, note=s) for s in nasty]
    warehouse.ingest_events(write_csv(tmp_path / "e.csv", rows))
    events = warehouse.read_table("events")
    assert sorted(events["exp_id"]) == sorted(nasty) and sorted(events["dim_note"]) == sorted(nasty)
    assert (events["unit_id"] == events["exp_variant_id"]).all()


def snapshot(wh: Warehouse) -> tuple[Any, ...]:
    """Everything intake writes: the three tables and the dimension columns."""
    return (
        stored_events(wh),
        rejected(wh),
        wh.event_loss_counts(),
        len(wh.read_table("event_batches")),
        wh.event_dimensions(),
    )


# Each file-level error and what its message must name.
FILE_ERRORS = {
    "unknown extension": "unknown events file extension '.txt'",
    "missing file": "no such file",
    "missing goal": "missing required column(s) goal ",
    "Goal instead of goal": "missing required column(s) goal ",
    "Count instead of count": "column 'Count' is written 'count' (the fixed columns are in lower case)",
    "VALUE instead of value": "column 'VALUE' is written 'value'",
    "json array with a trailing comma": "not a valid JSON array",
    "json array with NaN": "not a valid JSON array",
    "dimension with a space": "column 'my dim' is not a valid dimension name",
    "dimension starting with a digit": "column '1st' is not a valid dimension name",
    "dimension of 60 characters": f"column '{'d' * 60}' is not a valid dimension name",
    "empty header cell": "column '' is not a valid dimension name",
    "case collision": "columns 'country' and 'Country' collide",
    "duplicate column": "columns 'newdim' and 'newdim' collide",
    "ragged row": "cannot read CSV: line 3: Expected Number of Columns: 9 Found: 10",
    "csv line over 2,000,000 bytes": "cannot read CSV: line 2 is longer than 2,000,000 bytes, the reader's limit",
    "ndjson line over 2,000,000 bytes": "cannot read JSON: line 2 is longer than 2,000,000 bytes, the reader's limit",
    "csv last line over 32 MiB": "cannot read CSV: its last line is longer than 2,000,000 bytes, the reader's limit",
    "ndjson last line over 32 MiB": "cannot read JSON: its last line is longer than 2,000,000 bytes, the reader's "
    "limit",
    "ndjson line over 32 MiB then blank lines": "cannot read JSON: a line is longer than 2,000,000 bytes, the reader's "
    "limit",
    "empty file": "no header row",
    "corrupt parquet": "cannot read Parquet",
    "parquet without unit_id": "missing required column(s) unit_id ",
    "ndjson key not an identifier": "column 'new dim' is not a valid dimension name",
    "ndjson key ending with a line end": "column 'country\\n' is not a valid dimension name",
    "ndjson without goal": "missing required column(s) exp_id, exp_variant_id, unit_type, unit_id, goal ",
    "truncated json array": "not a valid JSON array",
    "not UTF-8": "not UTF-8 text",
    "parquet list of float16": "cannot read Parquet cells as text (columns: ",
}


def _bad_files(tmp: Path) -> dict[str, Path]:
    """One file per file-level error (the keys of FILE_ERRORS)."""
    header = ",".join(COLUMNS)
    line = ",".join(VALID[c] for c in COLUMNS)
    files = {
        "unknown extension": write_lines(tmp / "e.txt", [header, line]),
        "missing file": tmp / "absent.csv",
        "missing goal": write_lines(tmp / "nogoal.csv", [header.replace(",goal", ""), line.replace(",purchase", "")]),
        "Goal instead of goal": write_lines(tmp / "Goal.csv", [header.replace("goal", "Goal"), line]),
        "Count instead of count": write_lines(tmp / "Count.csv", [header.replace("count", "Count"), line]),
        "VALUE instead of value": write_lines(tmp / "V.ndjson", [json.dumps(VALID | {"VALUE": 3})]),
        "json array with a trailing comma": write_lines(tmp / "tc.json", [f"[{json.dumps(VALID)},]"]),
        "json array with NaN": write_lines(tmp / "nan.json", [f'[{json.dumps(VALID)[:-1]}, "value": NaN}}]']),
        "dimension with a space": write_lines(tmp / "space.csv", [header + ",my dim", line + ",x"]),
        "dimension starting with a digit": write_lines(tmp / "digit.csv", [header + ",1st", line + ",x"]),
        "dimension of 60 characters": write_lines(tmp / "long.csv", [header + "," + "d" * 60, line + ",x"]),
        "empty header cell": write_lines(tmp / "emptyhead.csv", [header + ",", line + ",x"]),
        "case collision": write_lines(tmp / "case.csv", [header + ",country,Country", line + ",FR,DE"]),
        "duplicate column": write_lines(tmp / "dup.csv", [header + ",newdim,newdim", line + ",a,b"]),
        "ragged row": write_lines(tmp / "ragged.csv", [header + ",newdim", line + ",a", line + ",a,b"]),
        "csv line over 2,000,000 bytes": write_lines(
            tmp / "longline.csv", [header + ",newdim", line + "," + "x" * 2_000_000]
        ),
        "ndjson line over 2,000,000 bytes": write_lines(
            tmp / "longline.ndjson", [json.dumps(VALID), json.dumps(VALID | {"newdim": "x" * 2_000_000})]
        ),
        "csv last line over 32 MiB": write_lines(tmp / "last.csv", [header, line, line[:-1] + "x" * 34_000_000]),
        "ndjson last line over 32 MiB": write_lines(
            tmp / "last.ndjson", [json.dumps(VALID), json.dumps(VALID | {"newdim": "x" * 34_000_000})]
        ),
        "ndjson line over 32 MiB then blank lines": write_lines(
            tmp / "blank.ndjson", [json.dumps(VALID), json.dumps(VALID | {"newdim": "x" * 34_000_000}) + "\r\n\r"]
        ),
        "empty file": write_lines(tmp / "empty.csv", []),
        "corrupt parquet": write_lines(tmp / "bad.parquet", ["PAR1 not really"]),
        "parquet without unit_id": tmp / "nounit.parquet",
        "ndjson key not an identifier": write_lines(tmp / "key.ndjson", [json.dumps(VALID | {"new dim": 1})]),
        "ndjson key ending with a line end": write_lines(tmp / "nl.ndjson", [json.dumps(VALID | {"country\n": 1})]),
        "ndjson without goal": write_lines(tmp / "nogoal.ndjson", [json.dumps({"date": "2026-10-05"})]),
        "truncated json array": write_lines(tmp / "trunc.json", ['[{"date": "2026-10-05"}, ']),
    }
    (tmp / "latin1.csv").write_bytes(f"{header},newdim\n{line},caf\xe9\n".encode("latin-1"))
    files["not UTF-8"] = tmp / "latin1.csv"
    pq.write_table(pa.table({c: [VALID[c]] for c in COLUMNS if c != "unit_id"}), tmp / "nounit.parquet")
    halves = pa.array([[np.float16(1.5)]], pa.list_(pa.float16()))  # DuckDB reads no Arrow float16
    pq.write_table(pa.table({**{c: [VALID[c]] for c in COLUMNS}, "sizes": halves}), tmp / "halves.parquet")
    files["parquet list of float16"] = tmp / "halves.parquet"
    return files


def test_file_level_errors_change_nothing(warehouse: Warehouse, tmp_path: Path) -> None:
    warehouse.ingest_events(write_csv(tmp_path / "good.csv", [row(Country="FR"), row(goal="x-y")]))
    before = snapshot(warehouse)
    assert before[2] == (2, 1, 1)
    files = _bad_files(tmp_path)
    assert set(files) == set(FILE_ERRORS)
    for case, path in files.items():
        with pytest.raises(AggassetsError) as err:
            warehouse.ingest_events(path)
        message = str(err.value)
        assert message.startswith(f"{path}: ") and FILE_ERRORS[case] in message and "\n" not in message, case
        if (
            case in ("ragged row", "csv line over 2,000,000 bytes", "ndjson line over 2,000,000 bytes")
            or "32 MiB" in case
        ):
            assert message == f"{path}: {FILE_ERRORS[case]}"  # the reader's reason only, no advice, no line
        assert snapshot(warehouse) == before, case


def test_cli_events_ingest(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'cli.duckdb'}"
    a = write_csv(tmp_path / "a.csv", [row(), row(count="x")])
    b = write_lines(tmp_path / "b.ndjson", [json.dumps(VALID), "oops", json.dumps(VALID | {"date": "2026-1-1"})])
    assert main(["--warehouse", url, "events", "ingest", str(a), str(b)]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.count("\n") == 1
    assert json.loads(out) == {
        "received": 5,
        "accepted": 2,
        "rejected": 3,
        "rejected_by_reason": {"bad_count": 1, "invalid_json": 1, "bad_date": 1},
    }
    bad = write_lines(tmp_path / "c.csv", ["date,exp_id", "2026-10-05,e"])
    assert main(["--warehouse", url, "events", "ingest", str(a), str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"aggassets: error: {bad}: missing required column(s) exp_variant_id, unit_type")
    with open_warehouse(url) as wh:  # the good file listed before the bad one was not stored either
        assert wh.event_loss_counts() == (5, 2, 3)
    assert main(["--warehouse", url, "events", "ingest", str(b)]) == 2  # its content is stored already
    assert "this content was ingested already; pass --again" in capsys.readouterr().err
    assert main(["--warehouse", url, "events", "ingest", "--again", str(b)]) == 0
    with open_warehouse(url) as wh:
        assert wh.event_loss_counts() == (8, 3, 5)


def test_timestamps_in_parquet_taken_as_utc_dates(warehouse: Warehouse, tmp_path: Path) -> None:
    stamps = [datetime(2026, 10, 5, 23, 30, tzinfo=UTC), datetime(2026, 10, 6, 0, 15, tzinfo=UTC)]
    table = pa.table({c: [VALID[c]] * 2 for c in COLUMNS if c not in ("date", "count", "value")}).append_column(
        "date", pa.array(stamps, pa.timestamp("us", tz="Europe/Paris"))
    )
    pq.write_table(table, tmp_path / "t.parquet")
    warehouse.ingest_events(tmp_path / "t.parquet")
    assert [e[0] for e in stored_events(warehouse)] == ["2026-10-05", "2026-10-06"]


def test_demo_events_ingest_with_the_planted_rejections(warehouse: Warehouse, tmp_path: Path) -> None:
    paths = generate_events(tmp_path / "demo", seed=3, scale=0.01)
    assert [p.suffix for p in paths] == [".csv", ".parquet", ".ndjson"]
    rows = [
        len(paths[0].read_text().splitlines()) - 1,
        pq.read_metadata(paths[1]).num_rows,
        len([x for x in paths[2].read_text().splitlines() if x.strip()]),
    ]
    results = [warehouse.ingest_events(p) for p in paths]
    assert [r.received for r in results] == rows
    assert [r.rejected_by_reason for r in results] == [
        {"bad_count": 1, "bad_date": 1, "bad_goal": 1, "missing_unit_id": 1},
        {"bad_unit_type": 1, "bad_value": 1, "missing_unit_id": 1},
        {"bad_count": 1, "invalid_json": 1, "missing_exp_variant_id": 1},
    ]
    assert warehouse.event_loss_counts() == (sum(rows), sum(rows) - 10, 10)
    assert warehouse.event_dimensions() == ["country", "element", "price", "product"]
    per_exp = warehouse.fetch("""
        SELECT exp_id, min(date) AS first, max(date) AS last, count(DISTINCT unit_id) AS units,
               sum(CASE WHEN goal = 'exposure' THEN 1 ELSE 0 END) AS exposures,
               count(DISTINCT CASE WHEN goal = 'exposure' THEN unit_id END) AS exposed
        FROM events GROUP BY exp_id ORDER BY exp_id""")
    got = {r["exp_id"]: r for r in per_exp.to_dict("records")}
    ranges = {
        "checkout-button-conversion": ("2026-10-05", "2026-10-25", 400),
        "product-page-layout": ("2026-11-01", "2026-11-30", 300),
        "recommendations-three-way": ("2026-10-12", "2026-11-08", 800),
    }
    assert sorted(got) == sorted(ranges)
    for exp_id, (first, last, units) in ranges.items():
        r = got[exp_id]
        assert (
            first <= pd.Timestamp(r["first"]).date().isoformat() <= pd.Timestamp(r["last"]).date().isoformat() <= last
        ), exp_id
        assert r["units"] == r["exposures"] == r["exposed"] == units, exp_id  # one exposure per unit


def test_events_content_ingested_already_is_refused_on_each_engine(
    capsys: pytest.CaptureFixture[str], warehouse_url: str, tmp_path: Path
) -> None:
    """README: events content the warehouse holds already is refused as for measures; --again stores it."""
    path = write_lines(tmp_path / "e.ndjson", [json.dumps(VALID)])
    assert main(["--warehouse", warehouse_url, "events", "ingest", str(path)]) == 0
    capsys.readouterr()
    assert main(["--warehouse", warehouse_url, "events", "ingest", str(path)]) == 2
    assert "this content was ingested already; pass --again" in capsys.readouterr().err
    with open_warehouse(warehouse_url) as wh:
        assert wh.event_loss_counts() == (1, 1, 0)
    assert main(["--warehouse", warehouse_url, "events", "ingest", "--again", str(path)]) == 0
    with open_warehouse(warehouse_url) as wh:
        assert wh.event_loss_counts() == (2, 2, 0)


def test_a_file_stored_meanwhile_by_another_command_names_the_files_stored_before_it(
    capsys: pytest.CaptureFixture[str], warehouse_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each events file is its own batch, as for measures: when another command stores one of them between
    the early check and the writer's lock, the error names it and the files stored before it."""
    first = write_lines(tmp_path / "first.ndjson", [json.dumps(VALID)])
    meanwhile = write_lines(tmp_path / "meanwhile.ndjson", [json.dumps({**VALID, "unit_id": "u-2"})])
    assert main(["--warehouse", warehouse_url, "events", "ingest", str(meanwhile)]) == 0
    capsys.readouterr()
    early = cli._new_contents  # the other command stores `meanwhile` after this check: it passes
    monkeypatch.setattr(cli, "_new_contents", lambda wh, paths, again, events=False: early(wh, paths, True, events))
    assert main(["--warehouse", warehouse_url, "events", "ingest", str(first), str(meanwhile)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"{meanwhile}: this content was ingested already" in err and f"(stored before it: {first})" in err
    with open_warehouse(warehouse_url) as wh:
        assert wh.event_loss_counts() == (2, 2, 0)  # `meanwhile` once, `first` stored


def test_parquet_float16_and_decimal256_columns_are_read_exactly(warehouse: Warehouse, tmp_path: Path) -> None:
    """Arrow types DuckDB does not take (float16, decimal256) are read as their exact decimal text."""
    table = pa.table({
        **{c: [VALID[c]] * 2 for c in COLUMNS if c not in ("count", "value", "unit_id")}, "unit_id": ["u1", "u2"],
        "count": pa.array([3, 70], pa.decimal256(50, 0)), "value": pa.array(np.array([1.5, 0.1], np.float16)),
        "price": pa.array([Decimal("123.45"), Decimal("0.01")], pa.decimal256(50, 2)),
    })  # fmt: skip
    pq.write_table(table, tmp_path / "t.parquet")
    result = warehouse.ingest_events(tmp_path / "t.parquet")
    assert (result.received, result.accepted) == (2, 2)
    base = ("2026-10-05", "exp-1", "a", "user")
    float16_tenth = 0.0999755859375  # float16's nearest to 0.1, exactly
    assert stored_events(warehouse) == [
        (*base, "u1", "purchase", 3, 1.5, "123.45"),
        (*base, "u2", "purchase", 70, float16_tenth, "0.01"),
    ]


def test_an_ndjson_file_is_read_line_by_line_even_when_it_starts_with_an_array(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """README: .ndjson / .jsonl hold one JSON value per line, whatever the first line; only .json may be an
    array. A first line `[1, 2]` is one rejected row (it refused the whole file), and a JSON array written
    over several lines of an .ndjson file is not read as an array (it was accepted)."""
    first = write_lines(tmp_path / "first.ndjson", ["[1, 2]", json.dumps(VALID), json.dumps(row(unit_id="u2"))])
    result = warehouse.ingest_events(first)
    assert (result.received, result.accepted, result.rejected_by_reason) == (3, 2, {"not_an_object": 1})
    spread = write_lines(tmp_path / "spread.jsonl", ["[", json.dumps(row(unit_id="u3")) + ",", json.dumps(VALID), "]"])
    result = warehouse.ingest_events(spread)
    assert (result.received, result.accepted) == (4, 1)
    assert sorted(r for _, _, r in rejected(warehouse)) == [
        "invalid_json",
        "invalid_json",
        "invalid_json",
        "not_an_object",
    ]


def test_the_number_of_event_dimensions_is_bounded(
    warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each dimension is a column: one file of thousands of keys exhausted DuckDB's memory, files adding keys
    filled PostgreSQL's 1,600 columns for good. A file over the bound, or one that would take the warehouse
    over it, is refused and stores nothing."""
    keys = {f"d{i}": "x" for i in range(events_intake.MAX_DIMENSIONS + 1)}
    wide = write_lines(tmp_path / "wide.ndjson", [json.dumps(VALID | keys)])
    with pytest.raises(AggassetsError, match=r"wide\.ndjson: 501 dimension columns, over the 500 the warehouse keeps"):
        warehouse.ingest_events(wide)
    monkeypatch.setattr(events_intake, "MAX_DIMENSIONS", 3)  # the warehouse's bound, small enough to reach
    warehouse.ingest_events(write_csv(tmp_path / "a.csv", [row(country="FR", device="phone")]))
    before = snapshot(warehouse)
    more = write_csv(tmp_path / "b.csv", [row(country="FR", os="ios", browser="x")])
    with pytest.raises(
        AggassetsError, match=r"b\.csv: its 2 new dimension\(s\) would make 4 event dimensions, over the 3"
    ):
        warehouse.ingest_events(more)
    assert snapshot(warehouse) == before and warehouse.event_dimensions() == ["country", "device"]
    warehouse.ingest_events(write_csv(tmp_path / "c.csv", [row(os="ios")]))  # up to the bound
    assert sorted(warehouse.event_dimensions()) == ["country", "device", "os"]
