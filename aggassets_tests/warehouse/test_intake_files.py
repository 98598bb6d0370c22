"""Intake of whole files: items kept exactly as they came, whatever the file's layout or bytes."""

import contextlib
import json
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import psycopg2
import pytest

from aggassets.catalog import MeasureCatalog
from aggassets.errors import AggassetsError, AlreadyIngested
from aggassets.sources.inbox import process_file
from aggassets.warehouse import intake_files, json_documents, open_warehouse, postgres_sql
from aggassets.warehouse.base import Warehouse
from aggassets.warehouse.postgres_engine import split_url
from aggassets.warehouse.values import file_sha256
from aggassets_tests.warehouse.support import DEFINITIONS, FIRST_DAY

MEASURE = {"measureName": "errors-daily", "value": 1, "startDate": "2022-01-03"}
ITEM = json.dumps(MEASURE)


def ingest_text(warehouse: Warehouse, path: Path, text: str) -> dict[str, object]:
    """Write the text to the file, ingest it with the test catalog and return the result."""
    warehouse.sync_definitions(DEFINITIONS)
    path.write_text(text, encoding="utf-8", newline="")
    return warehouse.ingest_file(path, DEFINITIONS, FIRST_DAY).as_dict()


def payloads(warehouse: Warehouse) -> list[str]:
    """The inbox's payloads in seq order."""
    return warehouse.read_table("inbox", order_by="seq")["payload"].tolist()


def reasons(warehouse: Warehouse) -> list[str]:
    """The rejected measures' reasons in seq order."""
    return warehouse.read_table("rejected_measures", order_by="seq")["reason"].tolist()


def test_control_characters_in_lines_are_kept_whole(warehouse: Warehouse, tmp_path: Path) -> None:
    """Record-separator and unit-separator bytes (the line reader's usual delimiters) do not cut a line."""
    lines = [ITEM + "\x1e junk", "\x1e" + ITEM, ITEM, "\x1f" + ITEM + "\x1f", ITEM.replace("errors", "errors\x1e")]
    result = ingest_text(warehouse, tmp_path / "rs.ndjson", "\n".join(lines) + "\n")
    assert (result["received"], result["accepted"]) == (5, 1)
    assert payloads(warehouse) == lines
    assert reasons(warehouse) == ["invalid_json"] * 4  # a raw control character is not JSON, in a string too


def test_lines_of_json_whitespace_are_not_items(warehouse: Warehouse, tmp_path: Path) -> None:
    """Lines holding only spaces, tabs or a carriage return are skipped, as empty lines are."""
    text = "\t\n" + ITEM + "\n \t \r\n\t\t\n" + ITEM + "\r\n\n"
    assert ingest_text(warehouse, tmp_path / "tabs.ndjson", text)["received"] == 2
    assert ingest_text(warehouse, tmp_path / "blank.ndjson", "  \n\t\n \r\n")["received"] == 0


def test_array_items_are_stored_as_written(warehouse: Warehouse, tmp_path: Path) -> None:
    """A JSON document's items keep their own text (number forms, escapes, layout) in the inbox."""
    items = [
        '{"measureName": "errors-daily", "value": 1E2, "startDate": "2022-01-03"}',
        '{\n    "measureName": "errors-\\u0064aily",\n    "value": 0.1000000000000000055511151231257827,\n'
        '    "startDate": "2022-01-04"\n  }',
        '{"measureName":"errors-daily","value":-0,"startDate":"2022-01-05","createdBy":"a, [b] {c}"}',
    ]
    for name, text in [
        ("array.json", "[" + ",\n  ".join(items) + "\n]\n"),
        ("measures.json", '{ "measures" : [ ' + " , ".join(items) + " ] }"),
    ]:
        result = ingest_text(warehouse, tmp_path / name, text)
        assert (result["received"], result["accepted"]) == (3, 3)
        assert payloads(warehouse)[-3:] == items
    values = warehouse.read_table("raw_measures", order_by="seq")["value"].tolist()
    assert values == [100.0, 0.1, 0.0] * 2


def test_size_limit_is_the_same_in_every_layout(warehouse: Warehouse, tmp_path: Path) -> None:
    """An item over 16 KiB as written is oversized in an array as on its own line."""
    padded = ITEM[:-1] + " " * 17_000 + "}"
    assert ingest_text(warehouse, tmp_path / "a.json", f"[{padded}, {ITEM}]")["rejected_by_reason"] == {"oversized": 1}
    assert ingest_text(warehouse, tmp_path / "b.ndjson", f"{padded}\n{ITEM}\n")["rejected_by_reason"] == {
        "oversized": 1
    }
    assert payloads(warehouse) == [padded, ITEM] * 2


def test_pretty_printed_object_is_validated_as_written(warehouse: Warehouse, tmp_path: Path) -> None:
    """One measure over several lines is one item, stored as written: a duplicate key is not lost."""
    text = '{\n  "measureName": "errors-daily",\n  "value": "oops",\n  "value": 1,\n  "startDate": "2022-01-03"\n}'
    result = ingest_text(warehouse, tmp_path / "dup.json", "\ufeff" + text + "\n")
    assert result["rejected_by_reason"] == {"duplicate_field": 1}
    assert payloads(warehouse) == [text]


def test_items_not_strict_json_are_rejected_not_fatal(warehouse: Warehouse, tmp_path: Path) -> None:
    """A one-line file with a trailing comma, a bare inf or a very deep member: one rejected item each."""
    deep = ITEM[:-1] + ', "z": ' + "[" * 1200 + "]" * 1200 + "}"
    cases = {
        "comma.ndjson": (ITEM[:-1] + ",}", "invalid_json"),
        "inf.ndjson": (ITEM.replace('"value": 1', '"value": inf'), "value_not_finite"),
        "deep.ndjson": (deep, "unknown_field"),
        "deep-second.ndjson": ("{bad\n" + deep, "invalid_json"),
    }
    for name, (text, reason) in cases.items():
        result = ingest_text(warehouse, tmp_path / name, text + "\n")
        assert result["accepted"] == 0 and reason in result["rejected_by_reason"], name
    assert payloads(warehouse)[-1] == deep


def test_ndjson_with_odd_first_lines_stays_ndjson(warehouse: Warehouse, tmp_path: Path) -> None:
    """A first line over 64 KiB, 101 malformed lines, `inf`: still one item a line. (A first line that opens
    an array is a broken array document: test_intake.test_unreadable_files_raise_and_write_nothing.)"""
    long_item = json.dumps(MEASURE | {"createdBy": "x" * 70_000})
    cases = {
        "string-first.ndjson": ('"text"\n' + ITEM, {"not_an_object": 1}),
        "long-first.ndjson": (long_item + "\n" + ITEM, {"oversized": 1}),
        "bad-first.ndjson": ("{bad\n" * 101 + ITEM, {"invalid_json": 101}),
        "inf-lines.ndjson": (
            "\n".join([ITEM.replace('"value": 1', '"value": inf')] * 2 + [ITEM]),
            {"value_not_finite": 2},
        ),
    }
    for name, (text, rejected) in cases.items():
        result = ingest_text(warehouse, tmp_path / name, text + "\n")
        assert (result["accepted"], result["rejected_by_reason"]) == (1, rejected), name


def test_empty_documents_and_lone_values(warehouse: Warehouse, tmp_path: Path) -> None:
    """An empty array is an empty batch; a document that is one non-object value is one item."""
    for name, text in [("a.json", "[]"), ("b.json", '{"measures": []}'), ("c.json", "\ufeff[\r\n]\r\n")]:
        assert ingest_text(warehouse, tmp_path / name, text)["received"] == 0, name
    result = ingest_text(warehouse, tmp_path / "d.json", ' "just text" \n')
    assert result["rejected_by_reason"] == {"not_an_object": 1} and payloads(warehouse) == ['"just text"']


@pytest.mark.parametrize("end", ["\r\n", "\r"], ids=["CRLF", "lone CR"])
def test_a_file_holding_every_delimiter_candidate_is_still_read_line_by_line(
    warehouse: Warehouse, tmp_path: Path, end: str
) -> None:
    """The reader's delimiter must be absent from the file; when every candidate is there, Python splits, and
    like DuckDB's reader it ends a line at CRLF and at a lone CR too (old Mac line ends)."""
    junk = "".join(chr(c) for c in (30, 31, 29, 28, *range(1, 9), 11, 12, 14, 15))
    lines = [ITEM, "{" + junk + "}", ITEM.replace('"value": 1', '"value": 2')]
    result = ingest_text(warehouse, tmp_path / "junk.ndjson", end.join(lines) + end + "\t" + end)
    assert (result["received"], result["accepted"], result["rejected_by_reason"]) == (3, 2, {"invalid_json": 1})
    assert payloads(warehouse) == lines


def test_document_elements_are_delimited_not_judged_by_python(warehouse: Warehouse, tmp_path: Path) -> None:
    """Deep nesting, raw control characters and NaN in one element: that element is rejected, not the file."""
    deep = "[" * 1000 + "]" * 1000
    tab = ITEM.replace('"errors-daily"', '"errors\tdaily"')
    crlf = ITEM.replace(", ", ",\r\n  ")
    text = f"[{ITEM},\r\n {deep}, {tab}, NaN, {crlf}]"
    result = ingest_text(warehouse, tmp_path / "mixed.json", text)
    assert (result["received"], result["accepted"]) == (5, 2)
    assert result["rejected_by_reason"] == {"not_an_object": 1, "invalid_json": 2}
    assert payloads(warehouse) == [ITEM, deep, tab, "NaN", crlf]
    deep_object = '{"a": ' * 1000 + "1" + "}" * 1000
    result = ingest_text(warehouse, tmp_path / "deep-first.ndjson", f"{deep_object}\n{ITEM}\n")  # NDJSON still
    assert (result["received"], result["accepted"]) == (2, 1)


@contextlib.contextmanager
def two_writers_at_once(
    postgres_url: str, work: Callable[[Warehouse, int], str]
) -> Iterator[tuple[list[str], Warehouse]]:
    """Two warehouses run work(warehouse, i) at the same moment; yields the sorted outcomes and the first one.
    The moment is forced: a third connection holds the writer lock until both wait for it (their backends'
    advisory waits in pg_locks)."""
    warehouses = [open_warehouse(postgres_url) for _ in range(2)]
    warehouses[0].sync_definitions(DEFINITIONS)
    pids = [int(wh.fetch("SELECT pg_backend_pid() AS pid")["pid"].iloc[0]) for wh in warehouses]
    dsn, schema = split_url(postgres_url)
    gate = psycopg2.connect(dsn)

    def waiting() -> int:
        with gate.cursor() as cur:  # the gate's own transaction sees pg_locks as it is now
            cur.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND pid = ANY(%s)", (pids,)
            )
            return int(cur.fetchone()[0])

    try:
        with gate.cursor() as cur:
            cur.execute("SET search_path TO %s", (schema,))
            cur.execute(postgres_sql.WRITER_LOCK)  # held until the gate commits
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(work, wh, i) for i, wh in enumerate(warehouses)]
            deadline = time.monotonic() + 60
            while waiting() < 2 and time.monotonic() < deadline:  # a guard against a hang, not a timing test
                time.sleep(0.05)
            assert waiting() == 2  # both passed the early seen-check and wait for the writer lock
            gate.commit()
            outcomes = sorted(f.result(timeout=60) for f in futures)
        yield outcomes, warehouses[0]
    finally:
        gate.close()
        for wh in warehouses:
            wh.close()


def test_content_stored_once_even_by_two_writers_at_once(postgres_url: str, tmp_path: Path) -> None:
    """Two connections given the same content at the same moment (PostgreSQL allows concurrent writers):
    the seen-check runs under the writer lock, so one stores it and the other is refused."""
    path = tmp_path / "same.ndjson"
    path.write_text(ITEM + "\n", encoding="utf-8")
    sha = file_sha256(path)

    def ingest(wh: Warehouse, _: int) -> str:
        try:
            wh.ingest_file(path, DEFINITIONS, FIRST_DAY, sha256=sha, once=True)
        except AlreadyIngested:
            return "refused"
        return "stored"

    with two_writers_at_once(postgres_url, ingest) as (outcomes, wh):
        assert outcomes == ["refused", "stored"]
        assert wh.loss_counts() == (1, 1, 0)
        wh.ingest_file(path, DEFINITIONS, FIRST_DAY, sha256=sha)  # --again: stored once more
        assert wh.loss_counts() == (2, 2, 0)


def test_two_inbox_files_of_one_content_at_once_are_stored_once(postgres_url: str, tmp_path: Path) -> None:
    """Two inbox runs given files of the same content at the same moment: one ingests it, the other finds it
    ingested already under the writer lock (README: inbox files are ingested at most once, by content)."""
    paths = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        paths.append(tmp_path / folder / "same.ndjson")
        paths[-1].write_text(ITEM + "\n", encoding="utf-8")
    catalog = MeasureCatalog(tuple(DEFINITIONS))

    def process(wh: Warehouse, i: int) -> str:
        return str(process_file(wh, paths[i], catalog, FIRST_DAY)["status"])

    with two_writers_at_once(postgres_url, process) as (outcomes, wh):
        assert outcomes == ["already_ingested", "ingested"]
        assert wh.loss_counts() == (1, 1, 0)


def test_an_object_nested_deeper_than_python_goes_is_one_element(warehouse: Warehouse, tmp_path: Path) -> None:
    """A document element of objects nested 1,000 deep is delimited by its braces: that element is judged
    (its one key is unknown), the file is read."""
    deep_object = '{"a": ' * 1000 + "1" + "}" * 1000
    result = ingest_text(warehouse, tmp_path / "deep.json", f"[{ITEM}, {deep_object}]")
    assert (result["received"], result["accepted"]) == (2, 1)
    assert payloads(warehouse) == [ITEM, deep_object]


def test_integers_of_more_than_4300_digits_do_not_make_a_document_unreadable(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """Python refuses to convert an integer of more than 4,300 digits; documents holding one are still
    read, each item judged as on its own line: a lone number is not_an_object, a number as createdBy
    invalid_created_by, a pretty-printed object with such a group invalid_group1 (it was read as 7
    lines of invalid_json)."""
    digits = "1" * 4301
    assert ingest_text(warehouse, tmp_path / "a.json", f"[{ITEM}, {digits}]")["rejected_by_reason"] == {
        "not_an_object": 1
    }
    by = json.dumps({**MEASURE, "createdBy": 1}).replace(": 1}", f": {digits}}}")
    result = ingest_text(warehouse, tmp_path / "m.json", f'{{"measures": [{by}, {ITEM}]}}')
    assert (result["accepted"], result["rejected_by_reason"]) == (1, {"invalid_created_by": 1})
    grouped = {"measureName": "visits-daily", "value": 1, "startDate": "2022-01-03", "group2": {"os": "o"}}
    pretty = json.dumps({**grouped, "group1": {"device": 1}}, indent=2).replace('"device": 1', f'"device": {digits}')
    result = ingest_text(warehouse, tmp_path / "p.json", pretty)
    assert (result["received"], result["rejected_by_reason"]) == (1, {"invalid_group1": 1})


def test_a_line_of_more_than_32_mib_among_others_is_one_oversized_item(warehouse: Warehouse, tmp_path: Path) -> None:
    """DuckDB's parallel reader gives up on a line of 32 MiB or more among others (it read such a line
    alone): the file is read again with room for it, the line being one oversized item."""
    long_line = json.dumps({**MEASURE, "createdBy": "x" * (33 * 2**20)})
    result = ingest_text(warehouse, tmp_path / "long.ndjson", f"{ITEM}\n{long_line}\n{ITEM}\n")
    assert (result["received"], result["accepted"], result["rejected_by_reason"]) == (3, 2, {"oversized": 1})


@pytest.mark.parametrize("end", ["\n", "", "\r\n\n"])
def test_a_last_line_of_more_than_32_mib_is_one_oversized_item(warehouse: Warehouse, tmp_path: Path, end: str) -> None:
    """DuckDB's reader dropped such a last line without an error (received 2): nothing may be lost."""
    long_line = json.dumps({**MEASURE, "createdBy": "x" * (40 * 2**20)})
    result = ingest_text(warehouse, tmp_path / "long.ndjson", f"{ITEM}\n{ITEM}\n{long_line}{end}")
    assert (result["received"], result["accepted"], result["rejected_by_reason"]) == (3, 2, {"oversized": 1})


def test_ndjson_with_a_huge_integer_on_its_first_line_stays_ndjson(warehouse: Warehouse, tmp_path: Path) -> None:
    """NDJSON whose first item holds a 4,301-digit group integer is still read as NDJSON from its first
    line (not as a whole document first): bytes that are not UTF-8 on line 3 are named by line."""
    warehouse.sync_definitions(DEFINITIONS)
    path = tmp_path / "huge.ndjson"
    grouped = {"measureName": "visits-daily", "value": 1, "startDate": "2022-01-03", "group2": {"os": "o"}}
    first = json.dumps({**grouped, "group1": {"device": 1}}).replace('"device": 1', '"device": ' + "1" * 4301)
    path.write_bytes((first + "\n" + ITEM + "\n").encode() + b'{"measureName": "caf\xe9"}\n')
    with pytest.raises(AggassetsError, match=r"huge.ndjson: not UTF-8 text \(line 3\)$"):
        warehouse.ingest_file(path, DEFINITIONS, FIRST_DAY)


def read_file_items(path: Path, text: str, con: duckdb.DuckDBPyConnection | None = None) -> list[str] | str:
    """The items read_items finds in the text written to path, or the error it raises (on `con`, left
    without `lines`, or on a connection of its own)."""
    path.write_text(text, encoding="utf-8", newline="")
    own = con is None
    con = duckdb.connect() if con is None else con
    try:
        intake_files.read_items(con, path)
        return [payload for (payload,) in con.execute("SELECT payload FROM lines ORDER BY rowid").fetchall()]
    except AggassetsError as exc:
        return f"error: {str(exc).removeprefix(str(path) + ': ')}"
    finally:
        con.execute("DROP TABLE IF EXISTS lines")
        if own:
            con.close()


@pytest.fixture
def duckdb_reader_used(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records, per document, whether DuckDB's array reader was allowed to delimit its elements."""
    verdicts: list[bool] = []
    plain_array = intake_files._plain_array

    def recording(con: duckdb.DuckDBPyConnection, path: Path) -> bool:
        verdicts.append(plain_array(con, path))
        return verdicts[-1]

    monkeypatch.setattr(intake_files, "_plain_array", recording)
    return verdicts


BROKEN = "error: not a valid JSON document"


def broken(line: int, column: int) -> str:
    """The error of a broken document, where it breaks (counted by hand in the cases below)."""
    return f"{BROKEN} (it breaks at line {line}, column {column})"


@pytest.mark.parametrize(
    ("text", "expected", "by_duckdb"),
    [
        ('[1, {"a": [2, 3]} ,\r\n "s"]\n', ["1", '{"a": [2, 3]}', '"s"'], True),
        ('\ufeff{ "measures" :\n [ {"a": "}"}, "]" ]\n}\n', ['{"a": "}"}', '"]"'], True),
        ("[[" + "[" * 1500 + "]" * 1500 + "]]", ["[" + "[" * 1500 + "]" * 1500 + "]"], True),
        # DuckDB's reader alone would read these: a ']' as a separator, a truncated array, trailing commas
        ("[1, 2] 3]", broken(1, 8), False),
        ("[1, 2,", broken(1, 7), False),
        ('[{"v": 1}, ]', broken(1, 12), False),
        ('[{"v": 1,}]', broken(1, 10), False),
        ('{"measures": [1, ]}', broken(1, 18), False),
        # DuckDB's parser reads nan and inf in any case; JSON (and the Python path) only NaN, Infinity, -Infinity
        ('[{"v": nan}]', broken(1, 8), False),
        ("[-NaN]", broken(1, 2), False),
        ("[infinity]", broken(1, 2), False),
        ('[{"v": NaN}, -Infinity]', ['{"v": NaN}', "-Infinity"], False),
        # a lenient-looking string only sends the file down the Python path
        ('["nan, ]", {"k": "[inf"}]', ['"nan, ]"', '{"k": "[inf"}'], False),
        # not one array under "measures": one object, judged as an item
        ('{"measures": [1], "x": [2]}', ['{"measures": [1], "x": [2]}'], False),
        ('{"measures": [1]}}', broken(1, 18), None),
        ('{"measures": [1]]', broken(1, 17), None),
        ('{"measures": [[1]]]', broken(1, 19), None),
        ("[1]\n[2]\n", broken(2, 1), False),
        ('[\n  {"a": 1},\n  {"b": 2\n]', broken(4, 1), False),  # the element's missing '}': where ']' came
    ],
)
def test_duckdb_delimits_only_documents_python_reads_the_same(
    tmp_path: Path, duckdb_reader_used: list[bool], text: str, expected: list[str] | str, by_duckdb: bool | None
) -> None:
    """DuckDB's array reader (faster than Python's decoder) delimits a document's elements only when the
    document is strict JSON: elements as written, and every non-JSON form refused as before."""
    assert read_file_items(tmp_path / "doc.json", text) == expected
    assert duckdb_reader_used == ([] if by_duckdb is None else [by_duckdb])


def test_an_element_of_32_mib_is_delimited_by_python(tmp_path: Path, duckdb_reader_used: list[bool]) -> None:
    """DuckDB's reader refuses an element of 32 MiB or more: Python delimits that document (it is valid)."""
    big = json.dumps({**MEASURE, "createdBy": "x" * (33 * 2**20)})
    assert read_file_items(tmp_path / "big.json", f"[{ITEM},\n{big}, {ITEM}]") == [ITEM, big, ITEM]
    assert duckdb_reader_used == [True]


def random_documents(seed: int, n: int) -> list[str]:
    """Seeded random edits of array and {"measures": [...]} documents (brackets, commas, quotes, numbers
    cut anywhere, NaN, BOMs, multi-byte characters, control bytes)."""
    rng = random.Random(seed)
    bases = [
        f'[{ITEM}, 3, "s", null, [1, {{"b": [true, false]}}], -2e3, {{"c": "\\u00e9\\n"}}]',
        '[\n  {"a": 1},\n  {"b": "NaN inf"}\r\n]\n',
        '[{"v": NaN}, {"v": -Infinity}]',
        '\ufeff [{"a": []}, {}, []]',
        '{"measures": [1, {"a": 2}]}',
        '\ufeff{ "measures" :\n[\n{"a": "}"},\n"]"\n]\n}\n',
        '[12345, 1.5e10, "caf\u00e9 \u20ac \U0001f600", true, false, null]   \n',
    ]
    edits = [*',[]{}":\\ \t\r\n\x0b\x00naNIfe0-+.1', "NaN", "\u00e9", "\ufeff", '"measures":']
    cases = []
    for _ in range(n):
        text = rng.choice(bases)
        for _ in range(rng.randint(0, 3)):
            i, edit = rng.randrange(len(text) + 1), rng.choice(edits)
            text = rng.choice([text[:i] + edit + text[i:], text[:i] + text[i + 1 :], text[:i] + edit + text[i + 1 :]])
        cases.append(text)
    return cases


def test_random_documents_read_alike_by_both_delimiters(tmp_path: Path, duckdb_reader_used: list[bool]) -> None:
    """Seeded random edits of documents (random_documents): the items, or the refusal, are those of the
    Python path alone (DuckDB's reader switched off)."""
    cases = random_documents(20261206, 300)
    con = duckdb.connect()  # one connection: connecting took most of the time
    fast = [read_file_items(tmp_path / "doc.json", text, con) for text in cases]
    assert 30 <= sum(duckdb_reader_used) < len(cases)  # both paths taken, often
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(intake_files, "_array_file", lambda path, scratch: None)
        python_only = [read_file_items(tmp_path / "doc.json", text, con) for text in cases]
    assert [(t, f) for t, f, p in zip(cases, fast, python_only, strict=True) if f != p] == []


def test_a_document_over_the_checked_size_is_delimited_by_python(
    tmp_path: Path, duckdb_reader_used: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB's check holds the whole text in memory: above its size limit (lowered here to the file's
    size minus one byte) Python delimits the document, with the same items."""
    text = f"[{ITEM}, {ITEM}]"
    monkeypatch.setattr(intake_files, "_CHECKED_ARRAY_MAX_BYTES", len(text))
    assert read_file_items(tmp_path / "at.json", text) == [ITEM, ITEM]
    monkeypatch.setattr(intake_files, "_CHECKED_ARRAY_MAX_BYTES", len(text) - 1)
    assert read_file_items(tmp_path / "over.json", text) == [ITEM, ITEM]
    assert duckdb_reader_used == [True]


@pytest.mark.parametrize(
    "text",
    [
        b'[1, "caf\xe9"]',
        b'{"measures": [1, "caf\xe9"]}',
        b'[{"a": 1}, 2]\xc3',  # a character cut off at the end of the file (Python's decoder refuses it)
        b'{"measures": [1]}\xc3',
    ],
)
def test_a_document_that_is_not_utf8_is_refused_as_such(tmp_path: Path, text: bytes) -> None:
    """DuckDB's check fails on bytes that are not UTF-8: the Python path names the file's fault."""
    path = tmp_path / "latin1.json"
    path.write_bytes(text)
    with pytest.raises(AggassetsError, match=r"latin1.json: not UTF-8 text$"):
        intake_files.read_items(duckdb.connect(), path)


def test_documents_read_block_by_block_read_as_whole_texts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Python delimits a document block by block (bounded memory): read in blocks of 1 to 7 bytes (values,
    whitespace, multi-byte characters and numbers cut anywhere), the items or the refusal are those of
    the whole text read at once (document_items), for 250 random documents."""
    cases = random_documents(20261207, 250)
    con = duckdb.connect()  # one connection: connecting took most of the time
    monkeypatch.setattr(intake_files, "_array_file", lambda path, scratch: None)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(intake_files, "_opens_array", lambda path: False)  # the whole-text path only
        whole = [read_file_items(tmp_path / "doc.json", text, con) for text in cases]
    streamed: list[Path] = []
    stream = json_documents.streamed_array_items

    def recording(path: Path) -> Iterator[list[str]]:
        streamed.append(path)
        return stream(path)

    monkeypatch.setattr(intake_files, "streamed_array_items", recording)
    monkeypatch.setattr(json_documents, "STREAM_HEAD_BYTES", 32)  # the longest opening
    monkeypatch.setattr(json_documents, "_BATCH_CHARS", 5)
    for block in (1, 2, 3, 7):
        monkeypatch.setattr(json_documents, "STREAM_BLOCK_BYTES", block)
        by_blocks = [read_file_items(tmp_path / "doc.json", text, con) for text in cases]
        assert [(t, w, b) for t, w, b in zip(cases, whole, by_blocks, strict=True) if w != b] == []
    assert len(streamed) >= 4 * 200  # most documents open as an array, and were streamed


def test_a_streamed_document_holds_a_few_blocks_and_reads_a_long_element_in_growing_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading a document of 200 blocks holds no more than a few blocks of its text at once, and an element
    of 1,000 blocks is read in a few growing reads (not once per block, which would be quadratic)."""
    long_element = json.dumps({**MEASURE, "createdBy": "x" * 1_024_000})
    path = tmp_path / "doc.json"
    path.write_text("[" + ",\n".join([ITEM] * 3_000 + [long_element, ITEM]) + "]", encoding="utf-8")
    held: list[int] = []  # characters held after each read
    more = json_documents._StreamedText.more

    def recording(self: json_documents._StreamedText, at_least: int = 0) -> bool:
        read = more(self, at_least)
        held.append(len(self.text))
        return read

    monkeypatch.setattr(json_documents._StreamedText, "more", recording)
    monkeypatch.setattr(json_documents, "STREAM_BLOCK_BYTES", 1024)
    monkeypatch.setattr(json_documents, "STREAM_HEAD_BYTES", 32)  # the longest opening
    monkeypatch.setattr(json_documents, "_BATCH_CHARS", 4096)
    items = [item for batch in json_documents.streamed_array_items(path) for item in batch]
    assert items == [ITEM] * 3_000 + [long_element, ITEM]
    short_blocks = 3_000 * (len(ITEM) + 2) // 1024  # the blocks of the 3,000 short items: about 200
    assert max(held[:short_blocks]) <= 3 * 1024
    assert short_blocks < len(held) < short_blocks + 40  # the long element: about log2(1000) reads more


def streamed_items(path: Path, text: str) -> list[str] | str:
    """The items streamed_array_items finds in the text written to path, or 'not an array'."""
    path.write_text(text, encoding="utf-8", newline="")
    try:
        return [item for batch in json_documents.streamed_array_items(path) for item in batch]
    except json_documents.NotAnArrayDocument:
        return "not an array"


@pytest.mark.parametrize("block", [1, 2, 3, 7, 64])
def test_the_stream_itself_delimits_every_array_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    """The stream gives the elements of every array document that the whole text holds (document_items),
    never falling back to reading the whole text (which would only cost memory): 'not an array' only for
    a text that is not a document or that is one other value (an object with more keys than "measures")."""
    monkeypatch.setattr(json_documents, "STREAM_BLOCK_BYTES", block)
    monkeypatch.setattr(json_documents, "STREAM_HEAD_BYTES", 32)  # the longest opening
    monkeypatch.setattr(json_documents, "_BATCH_CHARS", 5)
    mismatches, arrays = [], 0
    for text in random_documents(block, 1000):
        whole = json_documents.document_items(text)
        one_value = whole is not None and whole == [text.removeprefix("\ufeff").strip(" \t\r\n")]
        expected = "not an array" if whole is None or one_value else whole
        arrays += expected != "not an array"
        if (got := streamed_items(tmp_path / "doc.json", text)) != expected:
            mismatches.append((text, expected, got))
    assert mismatches == []
    assert arrays > 300


def test_a_streamed_document_is_handed_over_in_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Items go to DuckDB in batches of about _BATCH_CHARS characters (not all at once, which would hold the
    whole document's items in memory): 10 items of 11 characters, in batches of at least 20 characters."""
    monkeypatch.setattr(json_documents, "_BATCH_CHARS", 20)
    path = tmp_path / "doc.json"
    items = [json.dumps({"n": 1000 + i}) for i in range(10)]
    path.write_text("[" + ", ".join(items) + "]", encoding="utf-8")
    batches = list(json_documents.streamed_array_items(path))
    assert [len(batch) for batch in batches] == [2, 2, 2, 2, 2, 0]
    assert [item for batch in batches for item in batch] == items


def test_an_empty_file_is_an_empty_batch(warehouse: Warehouse, tmp_path: Path) -> None:
    """A 0-byte file holds no item: received = accepted = rejected = 0, and no row anywhere."""
    result = ingest_text(warehouse, tmp_path / "empty.ndjson", "")
    assert (result["received"], result["accepted"], result["rejected"]) == (0, 0, 0)
    assert warehouse.loss_counts() == (0, 0, 0)
    for table in ("inbox", "raw_measures", "rejected_measures"):
        assert warehouse.read_table(table).empty, table
