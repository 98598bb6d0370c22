"""A measures file read into numbered items: JSON array, {"measures": [...]} or NDJSON, in file order."""

import json
import mmap
import re
import tempfile
from pathlib import Path

import duckdb
import pyarrow as pa

from aggassets.errors import AggassetsError, require_file
from aggassets.warehouse.json_documents import (
    MEASURES_DOCUMENT,
    NotAnArrayDocument,
    document_items,
    skip,
    streamed_array_items,
    where_broken,
)
from aggassets.warehouse.values import last_line_length

# One row per received item: the item's number and its payload text, as it came.
# The file's lines in file order; a line is an item unless blank (JSON whitespace only). $delim is a
# character the file does not hold, so that every line is read whole.
_READ_LINES = """
SELECT payload FROM read_csv($path, columns = {'payload': 'VARCHAR'}, header = false,
    delim = $delim, quote = '', escape = '', auto_detect = false, strict_mode = false, max_line_size = $max_line)
WHERE CASE WHEN starts_with(payload, '{') THEN true ELSE trim(payload, chr(32) || chr(9) || chr(13)) <> '' END
"""
# DuckDB's own default: a file with a longer line is read again with room for its longest line (rare: the
# reader's buffers grow with it), so that an oversized item is rejected on its own, not the whole file.
_MAX_LINE = 2_097_152
_CSV_LINE = re.compile(r"CSV Error on Line: (\d+)")
# Column delimiters for the line reader, in order of preference: control characters no JSON text holds
# outside a malformed line.
_DELIMITERS = [chr(c) for c in (30, 31, 29, 28, 1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 14, 15)]
_DOCUMENT_ITEMS = "SELECT payload FROM document_items"  # an Arrow table of items delimited by Python
# The source of a document whose elements Python delimits block by block (_insert_streamed).
_STREAMED_ARRAY = "streamed array"
_NOT_JSON = object()
_DEEP = object()  # a JSON value nested deeper than Python's decoder goes


def _first_line(path: Path) -> object:
    """The JSON value of the file's first non-blank line (read up to 1 MiB), _NOT_JSON when it is none,
    _DEEP when it is nested too deep to tell (or there is no such line: None)."""
    with open(path, "rb") as fh:
        for raw in iter(lambda: fh.readline(1 << 20), b""):
            line = raw.lstrip(b"\xef\xbb\xbf").strip(b" \t\r\n")
            if line:
                try:
                    return json.loads(line, parse_int=str)
                except RecursionError:
                    return _DEEP
                except ValueError:
                    return _NOT_JSON
    return None


def _free_delimiter(path: Path) -> str | None:
    """A delimiter character the file does not hold (one scan per candidate until one is absent)."""
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for delim in _DELIMITERS:
            if data.find(delim.encode()) < 0:
                return delim
    return None


def _python_lines(text: str) -> list[str]:
    """The items of NDJSON text split as DuckDB's reader splits it (at LF, CR LF or a lone CR), blank
    lines left out: for a file holding every candidate delimiter (rare)."""
    return [line for line in re.split(r"\r\n|\n|\r", text.removeprefix("\ufeff")) if line.strip(" \t")]


def _read_text(path: Path) -> str:
    """The file's text, line ends as they are."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AggassetsError(f"{path}: not UTF-8 text") from exc


# A JSON array document whose elements DuckDB's reader delimits (about 3x faster than Python's decoder):
# only when DuckDB finds it valid JSON and it holds none of the forms DuckDB's parser allows but JSON and
# the Python path do not (NaN or Infinity spelt any other way, a trailing comma; a match inside a string
# only sends the file down the Python path). DuckDB's array reader alone is lenient about separators.
_LENIENT_FORMS = r"[:,\[][ \t\r\n]*[-+]?(?i:nan|inf)|,[ \t\r\n]*[\]}]"
_PLAIN_ARRAY = r"""
SELECT regexp_matches(doc, '^[ \t\r\n]*\[') AND json_valid(doc) AND NOT regexp_matches(doc, $lenient)
FROM (SELECT CASE WHEN starts_with(content, chr(65279)) THEN content[2:] ELSE content END AS doc
      FROM read_text($path))
"""
_ARRAY_ITEMS = "SELECT json AS payload FROM read_json_objects($path, format = 'array', compression = 'none')"


# DuckDB's check parses the whole text at once (about 3.5x its size in memory, and slower than linear):
# a larger document is split by Python.
_CHECKED_ARRAY_MAX_BYTES = 256 * 2**20
_JSON_SPACE = b" \t\r\n"
_MEASURES_OPENING = re.compile(rb'(?:\xef\xbb\xbf)?[ \t\r\n]*\{[ \t\r\n]*"measures"[ \t\r\n]*:[ \t\r\n]*\[')


def _opens_array(path: Path) -> bool:
    """Whether the file opens with '[' or {"measures": [ (BOM and whitespace aside, in its first 64 KiB)."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    return head.removeprefix(b"\xef\xbb\xbf").lstrip(_JSON_SPACE).startswith(b"[") or bool(
        _MEASURES_OPENING.match(head)
    )


def _array_file(path: Path, scratch: Path) -> Path | None:
    """A file holding just the document's array, for DuckDB's reader: the file itself when it opens with
    '[', a copy of the array of {"measures": [...]} (written in `scratch`), None for anything else."""
    if path.stat().st_size > _CHECKED_ARRAY_MAX_BYTES or not _opens_array(path):
        return None
    data = path.read_bytes()
    opening = _MEASURES_OPENING.match(data)
    if opening is None:
        return path
    closing = len(data.rstrip(_JSON_SPACE)) - 1  # the object's '}', then its array's ']' before it
    end = len(data[:closing].rstrip(_JSON_SPACE)) if data[closing : closing + 1] == b"}" else 0
    if data[end - 1 : end] != b"]":
        return None
    array = scratch / "measures-array.json"
    array.write_bytes(data[opening.end() - 1 : end])
    return array


def _plain_array(con: duckdb.DuckDBPyConnection, path: Path) -> bool:
    """Whether DuckDB's reader may delimit the file's elements (see _PLAIN_ARRAY)."""
    try:
        return bool(con.execute(_PLAIN_ARRAY, {"path": str(path), "lenient": _LENIENT_FORMS}).fetchall()[0][0])
    except duckdb.Error:  # not UTF-8, or larger than a DuckDB string: the Python path says why
        return False


def _registered(con: duckdb.DuckDBPyConnection, items: list[str]) -> tuple[str, dict[str, object]]:
    """Items from Python, as the query _DOCUMENT_ITEMS."""
    con.register("document_items", pa.table({"payload": pa.array(items, pa.string())}))
    return _DOCUMENT_ITEMS, {}


def _items_source(con: duckdb.DuckDBPyConnection, path: Path, scratch: Path) -> tuple[str, dict[str, object]]:
    """A query of the file's items (one `payload` column, in file order) and its parameters (it may read
    a file written in the folder `scratch`)."""
    path = Path(path)
    require_file(path)
    if path.stat().st_size == 0:
        with open(path, "rb") as fh:
            if fh.read(1):  # DuckDB's readers go by the size: they would read nothing of it
                raise AggassetsError(f"{path}: its size reads as 0 but it holds data; copy it to a regular file")
        return "SELECT NULL::VARCHAR AS payload WHERE false", {}
    first = _first_line(path)
    # NDJSON when the first line is an item on its own; else the file is one document, unless it is not
    # JSON as a whole: then NDJSON again (its first items malformed), if it does not open an array or
    # {"measures": [ (a broken document, whatever its first line: `[...]` then more lines, say).
    if not (isinstance(first, dict) and "measures" not in first):
        array = _array_file(path, scratch)
        if array is not None and _plain_array(con, array):
            return _ARRAY_ITEMS, {"path": str(array)}
        if _opens_array(path):
            return _STREAMED_ARRAY, {}
        document = _document_source(con, path)
        if document is not None:
            return document
    delim = _free_delimiter(path)
    if delim is None:
        return _registered(con, _python_lines(_read_text(path)))
    # a last line over the limit is read with room from the start: DuckDB would drop it without an error
    room = _MAX_LINE if last_line_length(path) <= _MAX_LINE else _longest_line(path) + 2
    return _READ_LINES, {"path": str(path), "delim": delim, "max_line": room}


def _document_source(con: duckdb.DuckDBPyConnection, path: Path) -> tuple[str, dict[str, object]] | None:
    """The items of the file as one JSON document, delimited by Python; None when it is not one (NDJSON
    whose first items are malformed). A broken array document is refused."""
    text = _read_text(path)
    items = document_items(text)
    if items is not None:
        return _registered(con, items)
    body = text.removeprefix("\ufeff")
    if skip(body, 0, "[") >= 0 or MEASURES_DOCUMENT.match(body):
        raise AggassetsError(f"{path}: not a valid JSON document (it breaks at {where_broken(text)})")
    return None


# The items of `lines` numbered from 1: rowids of a table filled by one statement are consecutive
# (read_items checks it) but start at a large number inside a transaction; $row0 is the first one.
ITEMS = "SELECT rowid - $row0 + 1 AS item_no, payload FROM lines"


def _longest_line(path: Path) -> int:
    """Bytes of the file's longest line, read in blocks (one line may be larger than memory allows twice)."""
    longest = current = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            start = 0
            while (end := block.find(b"\n", start)) >= 0:
                longest, current, start = max(longest, current + end - start), 0, end + 1
            current += len(block) - start
    return max(longest, current)


def _read_error(path: Path, exc: duckdb.Error) -> AggassetsError:
    """A one-line error for a file DuckDB cannot read."""
    message = str(exc)
    line = _CSV_LINE.search(message)
    if "not utf-8 encoded" in message.lower():
        return AggassetsError(f"{path}: not UTF-8 text" + (f" (line {line.group(1)})" if line else ""))
    return AggassetsError(f"{path}: cannot read lines: {message.splitlines()[0] if message else type(exc).__name__}")


# DuckDB's errors for a line longer than the reader's limit: over it, or (a line of 32 MiB or more among
# others) its parallel reader giving up; both are read again with room for the longest line.
_LONG_LINE_ERRORS = ("max_line_size", "does not support a full read")


def _insert_streamed(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Fill the temp table `lines` with the elements of the file's array document, delimited by Python block
    by block; a file that is not such a document is read whole (_document_source): one value, or refused."""
    con.execute("CREATE OR REPLACE TEMP TABLE lines (payload VARCHAR)")
    try:
        for batch in streamed_array_items(path):
            con.register("document_items", pa.table({"payload": pa.array(batch, pa.string())}))
            con.execute(f"INSERT INTO lines {_DOCUMENT_ITEMS}")
    except NotAnArrayDocument:
        document = _document_source(con, path)
        if document is None:  # it opens with '[' or {"measures": [: never NDJSON
            raise AggassetsError(f"{path}: not a valid JSON document") from None
        _create_lines(con, path, *document)


def _create_lines(con: duckdb.DuckDBPyConnection, path: Path, source: str, params: dict[str, object]) -> None:
    """Fill the temp table `lines` from the source of _items_source; a file whose line or element is
    longer than DuckDB's reader allows is read again (lines with room for the longest, a document's
    elements delimited by Python)."""
    if source is _STREAMED_ARRAY:
        _insert_streamed(con, path)
        return
    statement = f"CREATE OR REPLACE TEMP TABLE lines AS {source}"
    try:
        con.execute(statement, params)
    except duckdb.Error as exc:
        if source is _ARRAY_ITEMS:
            _insert_streamed(con, path)
            return
        if source is not _READ_LINES or not any(m in str(exc) for m in _LONG_LINE_ERRORS):
            raise _read_error(path, exc) from exc
        try:
            con.execute(statement, {**params, "max_line": _longest_line(path) + 2})
        except duckdb.Error as again:
            raise _read_error(path, again) from again


def read_items(con: duckdb.DuckDBPyConnection, path: Path) -> tuple[int, int]:
    """Read the file's items into the temp table `lines` (payload) of `con`, in file order.

    Returns ($row0 of ITEMS, number of items). An unreadable file raises AggassetsError. Call it outside
    an explicit transaction: a file with a line longer than DuckDB's reader allows is read again.
    """
    path = Path(path)
    try:
        with tempfile.TemporaryDirectory(prefix="aggassets-items-") as scratch:
            _create_lines(con, path, *_items_source(con, path, Path(scratch)))
    finally:
        con.unregister("document_items")  # the Python-delimited items, when registered (a no-op else)
    first, last, n = con.execute("SELECT min(rowid), max(rowid), count(*) FROM lines").fetchall()[0]
    if n and last - first + 1 != n:
        raise AggassetsError(f"{path}: items are not numbered consecutively")
    return int(first or 0), int(n)
