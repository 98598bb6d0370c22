"""Event intake limits from the README: the date bounds themselves, and the order of the rules."""

import contextlib
import csv
import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pytest

from aggassets.errors import AggassetsError
from aggassets.warehouse import events_intake, intake
from aggassets.warehouse.base import Warehouse
from aggassets_tests.warehouse.support import full_spill_folder, spill_error
from aggassets_tests.warehouse.test_events import (
    COLUMNS,
    VALID,
    rejected,
    row,
    snapshot,
    stored_events,
    write_csv,
    write_lines,
)


def test_the_first_and_last_days_of_the_date_range_are_accepted(warehouse: Warehouse, tmp_path: Path) -> None:
    """README: dates within 1900-01-01 .. 2999-12-31 (both included); a day outside is bad_date."""
    rows = [row(date="1900-01-01"), row(date="2999-12-31"), row(date="1899-12-31"), row(date="3000-01-01"),
            row(date="1900-01-01T00:30:00+00:00"), row(date="2999-12-31T23:59:59Z")]  # fmt: skip
    result = warehouse.ingest_events(write_csv(tmp_path / "e.csv", rows))
    assert (result.received, result.accepted, result.rejected) == (6, 4, 2)
    assert rejected(warehouse) == [(1, 3, "bad_date"), (1, 4, "bad_date")]
    assert [e[0] for e in stored_events(warehouse)] == ["1900-01-01", "1900-01-01", "2999-12-31", "2999-12-31"]


def test_the_first_failing_rule_in_readme_order_gives_the_reason(warehouse: Warehouse, tmp_path: Path) -> None:
    """README order: missing_exp_id before missing_exp_variant_id before bad_unit_type ... before bad_value."""
    rows = [
        row(exp_id="", exp_variant_id=""),
        row(exp_variant_id="", unit_type="1x"),
        row(unit_type="1x", unit_id=""),
        row(unit_id="", goal="a-b"),
        row(goal="a-b", count="-1"),
        row(count="-1", value="x"),
        row(exp_id=" ", exp_variant_id=" ", unit_type=" ", unit_id=" ", goal=" ", count="x", value="x"),
    ]
    warehouse.ingest_events(write_csv(tmp_path / "e.csv", rows))
    assert [reason for _, _, reason in rejected(warehouse)] == [
        "missing_exp_id", "missing_exp_variant_id", "bad_unit_type", "missing_unit_id", "bad_goal", "bad_count",
        "missing_exp_id",
    ]  # fmt: skip


def test_a_nul_character_in_a_key_or_dimension_rejects_the_row(warehouse: Warehouse, tmp_path: Path) -> None:
    """A NUL in unit_id or in a dimension rejects the row (nul_character): stored as U+FFFD (PostgreSQL text
    cannot hold it), `u\\x001` would merge with a unit `u\\ufffd1`. The rejected row's JSON text keeps it
    as the escape \\u0000, parsed back here."""
    rows = [row(unit_id="u\x001", shop="a"), row(shop="a\x00b"), row(unit_id="u\ufffd1", shop="a\ufffdb")]
    result = warehouse.ingest_events(write_csv(tmp_path / "e.csv", rows))
    assert (result.accepted, result.rejected) == (1, 2)
    assert stored_events(warehouse) == [
        ("2026-10-05", "exp-1", "a", "user", "u\ufffd1", "purchase", 2, 9.5, "a\ufffdb"),
    ]
    frame = warehouse.read_table("rejected_events", order_by="row_number")
    assert frame["reason"].tolist() == ["nul_character", "nul_character"]
    assert [json.loads(text)["unit_id"] for text in frame["row_json"]] == ["u\x001", "u1"]


def test_a_json_file_without_any_object_row_rejects_its_rows(warehouse: Warehouse, tmp_path: Path) -> None:
    """README: invalid_json and not_an_object are row reasons: a file of such rows has no object row to miss a
    column, so its rows are stored as rejected, not refused as a file without required columns."""
    result = warehouse.ingest_events(write_lines(tmp_path / "e.ndjson", ["nope", "[1, 2]", "42"]))
    assert (result.received, result.accepted, result.rejected) == (3, 0, 3)
    assert rejected(warehouse) == [(1, 1, "invalid_json"), (1, 2, "not_an_object"), (1, 3, "not_an_object")]


def test_header_names_are_trimmed_of_tabs_like_cells(warehouse: Warehouse, tmp_path: Path) -> None:
    """README: cells are trimmed of spaces, tabs, CR and LF; the header's cells too (`\\tgoal` is goal)."""
    path = tmp_path / "e.csv"
    header = "date,exp_id,exp_variant_id,unit_type,unit_id\t,\tgoal,count,value, Shop\t\n"
    path.write_text(header + "2026-10-05,exp-1,a,user,u1,purchase,2,9.5,north\n", encoding="utf-8")
    result = warehouse.ingest_events(path)
    assert (result.accepted, result.rejected) == (1, 0)
    assert stored_events(warehouse) == [("2026-10-05", "exp-1", "a", "user", "u1", "purchase", 2, 9.5, "north")]
    assert "dim_shop" in warehouse.read_table("events").columns


def test_a_byte_order_mark_at_the_start_of_a_csv_file_is_not_part_of_its_header(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """A UTF-8 byte order mark (as spreadsheet tools write "CSV UTF-8") is a signature, not the first column's
    name: the file reads as without it (README drops it at a file's start, as RFC 8259 lets a parser do)."""
    plain = write_csv(tmp_path / "plain.csv", [row()])
    marked = tmp_path / "marked.csv"
    marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    result = warehouse.ingest_events(marked)
    assert (result.accepted, result.rejected) == (1, 0)
    assert stored_events(warehouse) == [("2026-10-05", "exp-1", "a", "user", "u1", "purchase", 2, 9.5)]


def test_a_raw_nul_in_a_rejected_json_line_is_stored_as_the_replacement_character(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """A JSON row is kept as it came when rejected; PostgreSQL text cannot hold NUL (README), so a raw NUL of
    an invalid line becomes U+FFFD, on both engines."""
    path = tmp_path / "e.ndjson"
    path.write_bytes(json.dumps(VALID).encode() + b'\n{"unit_id": "u\x001"\n')
    result = warehouse.ingest_events(path)
    assert (result.received, result.accepted, result.rejected) == (2, 1, 1)
    assert rejected(warehouse) == [(1, 2, "invalid_json")]
    assert warehouse.read_table("rejected_events")["row_json"].tolist() == ['{"unit_id": "u\ufffd1"']


def test_a_byte_order_mark_at_the_start_of_a_json_file_is_dropped(warehouse: Warehouse, tmp_path: Path) -> None:
    """A JSON array or NDJSON events file starting with a UTF-8 byte order mark reads as without it (it was
    refused as `not a valid JSON array` for an array, while CSV and NDJSON read)."""
    array, lines = tmp_path / "array.json", tmp_path / "lines.ndjson"
    array.write_bytes(b"\xef\xbb\xbf" + json.dumps([VALID, VALID | {"unit_id": "u2"}]).encode())
    lines.write_bytes(b"\xef\xbb\xbf" + (json.dumps(VALID | {"unit_id": "u3"}) + "\n").encode())
    results = [warehouse.ingest_events(path) for path in (array, lines)]
    assert [(r.accepted, r.rejected) for r in results] == [(2, 0), (1, 0)]
    assert sorted(e[4] for e in stored_events(warehouse)) == ["u1", "u2", "u3"]


def test_a_csv_header_python_cannot_read_is_refused_and_nothing_is_stored(warehouse: Warehouse, tmp_path: Path) -> None:
    """A header cell longer than Python's csv field limit (131,072 characters by default) cannot be read as a
    header: the file is refused with one line saying so, and the warehouse is left as it was."""
    warehouse.ingest_events(write_csv(tmp_path / "good.csv", [row()]))
    before = snapshot(warehouse)
    header = ",".join(COLUMNS) + "," + "d" * (csv.field_size_limit() + 1)
    path = write_lines(tmp_path / "wide.csv", [header, ",".join(VALID.values()) + ",x"])
    with pytest.raises(AggassetsError) as err:
        warehouse.ingest_events(path)
    message = str(err.value)
    assert message.startswith(f"{path}: cannot read the CSV header") and "\n" not in message
    assert snapshot(warehouse) == before


def test_events_are_validated_in_a_bounded_duckdb_that_spills(
    warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The events file is validated in a DuckDB bounded in memory (unbounded, 10M events took the process
    to 3.4 GiB): a file larger than the bound spills (duckdb_temporary_files), and is stored exactly."""
    monkeypatch.setattr(intake, "VALIDATION_MEMORY_LIMIT", "128MB")
    seen: list[tuple[str, int]] = []
    bounded = events_intake.validation_connection

    @contextlib.contextmanager
    def recording(source: Path) -> Iterator[duckdb.DuckDBPyConnection]:
        with bounded(source) as con:
            yield con
            limit = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
            seen.append((limit, len(con.execute("SELECT * FROM duckdb_temporary_files()").fetchall())))

    monkeypatch.setattr(events_intake, "validation_connection", recording)
    path, n = tmp_path / "events.csv", 3_500_000
    duckdb.sql(f"""COPY (SELECT DATE '2026-10-12' + CAST(i % 28 AS INTEGER) AS date, 'big' AS exp_id,
        ['a', 'b'][i % 2 + 1] AS exp_variant_id, 'user' AS unit_type, 'u' || (i % 100000) AS unit_id,
        'click' AS goal, 1 + i % 3 AS count, i % 1000 AS value FROM range({n}) t(i)) TO '{path}' (HEADER)""")
    assert path.stat().st_size > 128 * 2**20
    result = warehouse.ingest_events(path)
    assert (result.received, result.accepted) == (n, n)
    i = np.arange(n)
    stored = warehouse.fetch("SELECT count(*) AS n, sum(count) AS c, sum(value) AS v FROM events").iloc[0]
    assert (int(stored["n"]), int(stored["c"]), float(stored["v"])) == (
        n,
        int((1 + i % 3).sum()),
        float((i % 1000).sum()),
    )
    ((limit, spilled),) = seen
    assert limit == "122.0 MiB" and spilled > 0


def test_a_spill_without_room_is_a_one_line_error_naming_the_folder(
    warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A validation that must spill to a full temporary folder says so (it read `cannot read CSV: Out of
    Memory Error ... max_temp_directory_size`), names the folder, and stores nothing."""
    spill = full_spill_folder(monkeypatch, tmp_path)
    path = tmp_path / "events.csv"
    duckdb.sql(f"""COPY (SELECT DATE '2026-10-12' + CAST(i % 28 AS INTEGER) AS date, 'big' AS exp_id,
        'a' AS exp_variant_id, 'user' AS unit_type, 'u' || i AS unit_id, 'click' AS goal, 1 AS count,
        i AS value FROM range(3500000) t(i)) TO '{path}' (HEADER)""")
    before = snapshot(warehouse)
    with pytest.raises(AggassetsError) as err:
        warehouse.ingest_events(path)
    assert str(err.value) == spill_error(path, spill)
    assert snapshot(warehouse) == before
    assert list(spill.iterdir()) == []  # the spill folder is removed
