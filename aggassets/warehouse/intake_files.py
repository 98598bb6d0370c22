"""A measures file read into numbered items: JSON array, {"measures": [...]} or NDJSON, in file order."""

import json
import re
from pathlib import Path

import duckdb

from aggassets.errors import AggassetsError, require_file

# One row per received item: the item's number and its payload text, as it came.
# The file's lines in file order; a line is an item unless blank (trim only for lines not starting with '{').
_READ_LINES = """
SELECT payload FROM read_csv($path, columns = {'payload': 'VARCHAR'}, header = false,
    delim = chr(30), quote = '', escape = '', auto_detect = false, strict_mode = false, max_line_size = $max_line)
WHERE CASE WHEN starts_with(payload, '{') THEN true ELSE trim(payload) <> '' END
"""
# DuckDB's own default: a file with a longer line is read again with room for its longest line (rare: the
# reader's buffers grow with it), so that an oversized item is rejected on its own, not the whole file.
_MAX_LINE = 2_097_152
_CSV_LINE = re.compile(r"CSV Error on Line: (\d+)")

# A whole-file JSON document (array, {"measures": [...]} or one object); a leading byte order mark is
# ignored, as RFC 8259 allows (NDJSON: DuckDB's CSV reader skips it).
_READ_DOCUMENT = """
WITH doc AS (SELECT try_cast(ltrim(content, chr(65279)) AS JSON) AS j FROM read_text(?)),
elements AS (
  SELECT CASE WHEN json_type(j) = 'ARRAY' THEN j
              WHEN json_type(j) = 'OBJECT' AND json_type(j -> '$.measures') = 'ARRAY' THEN j -> '$.measures'
         END AS arr, j
  FROM doc
)
SELECT json_valid(j::VARCHAR) AS valid, json_type(j) AS kind, arr IS NOT NULL AS has_list,
       CASE WHEN arr IS NOT NULL THEN json_array_length(arr) END AS n
FROM elements
"""

_UNNEST_DOCUMENT = """
WITH doc AS (SELECT try_cast(ltrim(content, chr(65279)) AS JSON) AS j FROM read_text($path)),
arr AS (SELECT CASE WHEN json_type(j) = 'ARRAY' THEN j ELSE j -> '$.measures' END AS a FROM doc)
SELECT payload FROM (
  SELECT generate_subscripts(items, 1) AS item_no, unnest(items)::VARCHAR AS payload
  FROM (SELECT json_extract(a, '$[*]') AS items FROM arr)
) ORDER BY item_no
"""


def _file_format(path: Path) -> str:
    """'array' or 'document' (one JSON value for the whole file), 'ndjson' (one item a line), or
    'unsure' (a first line starting with '{' that is not JSON: a pretty-printed document, or NDJSON
    whose first item is malformed)."""
    with open(path, "rb") as fh:
        head = fh.read(65_536)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:  # unless a character is cut at the end of a full block
        if len(head) < 65_536 or exc.start < len(head) - 4:
            raise AggassetsError(f"{path}: not UTF-8 text") from exc
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not text:
        return "ndjson"
    if text[:1] == b"[":
        return "array"
    first_line = text.split(b"\n", 1)[0].strip()
    try:
        value = json.loads(first_line)
    except ValueError:
        return "unsure" if text[:1] == b"{" else "ndjson"
    return "document" if isinstance(value, dict) and set(value) == {"measures"} else "ndjson"


def _has_object_lines(path: Path) -> bool:
    """Whether any of the file's first 100 non-blank lines (within 64 KiB) is a JSON object on its own."""
    with open(path, "rb") as fh:
        lines = [x for x in fh.read(65_536).split(b"\n") if x.strip()][:100]
    for text in lines:
        try:
            if isinstance(json.loads(text), dict):
                return True
        except ValueError:
            continue
    return False


def _items_source(con: duckdb.DuckDBPyConnection, path: Path) -> tuple[str, str]:
    """A query of the file's items (one `payload` column, in file order) and its $path parameter."""
    path = Path(path)
    require_file(path)
    file_format = _file_format(path)
    if file_format == "ndjson":
        return _READ_LINES, str(path)
    try:
        valid, kind, has_list, _n = con.execute(_READ_DOCUMENT, [str(path)]).fetchall()[0]
    except duckdb.Error as exc:
        raise _read_error(path, exc) from exc
    if not valid and file_format == "unsure" and _has_object_lines(path):  # NDJSON, its first item malformed
        return _READ_LINES, str(path)
    if not valid:
        raise AggassetsError(f"{path}: not a valid JSON document")
    if not has_list:
        if kind == "OBJECT":  # one pretty-printed measure
            return "SELECT $path::VARCHAR AS payload", json.dumps(json.loads(path.read_text(encoding="utf-8-sig")))
        raise AggassetsError(f'{path}: expected a JSON array, {{"measures": [...]}} or NDJSON')
    return _UNNEST_DOCUMENT, str(path)


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


def read_items(con: duckdb.DuckDBPyConnection, path: Path) -> tuple[int, int]:
    """Read the file's items into the temp table `lines` (payload) of `con`, in file order.

    Returns ($row0 of ITEMS, number of items). An unreadable file raises AggassetsError. Call it outside
    an explicit transaction: a file with a line longer than DuckDB's reader allows is read again.
    """
    source, param = _items_source(con, Path(path))
    params: dict[str, object] = {"path": param} | ({"max_line": _MAX_LINE} if source is _READ_LINES else {})
    statement = f"CREATE OR REPLACE TEMP TABLE lines AS {source}"
    try:
        con.execute(statement, params)
    except duckdb.Error as exc:
        if source is not _READ_LINES or "max_line_size" not in str(exc):
            raise _read_error(path, exc) from exc
        params["max_line"] = _longest_line(Path(path)) + 2
        try:
            con.execute(statement, params)
        except duckdb.Error as again:
            raise _read_error(path, again) from again
    first, last, n = con.execute("SELECT min(rowid), max(rowid), count(*) FROM lines").fetchall()[0]
    if n and last - first + 1 != n:
        raise AggassetsError(f"{path}: items are not numbered consecutively")
    return int(first or 0), int(n)
