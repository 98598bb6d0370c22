"""JSON documents delimited into their items by Python's decoder: the elements of an array or of
{"measures": [...]}, each as written (never re-serialised), from a whole text or streamed from a file."""

import codecs
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from aggassets.errors import AggassetsError

_WHITESPACE = re.compile(r"[ \t\r\n]*")
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[][{}]')  # strings (skipped whole) and brackets
MEASURES_DOCUMENT = re.compile(r'[ \t\r\n]*\{[ \t\r\n]*"measures"[ \t\r\n]*:[ \t\r\n]*\[')


def _nested_end(text: str, i: int) -> int:
    """The end of the array or object opening at i, by its brackets outside strings (for values nested
    deeper than Python's decoder goes; DuckDB then judges the item); -1 when it does not close."""
    depth = 0
    for token in _TOKENS.finditer(text, i):
        mark = token.group()
        depth += 1 if mark in "[{" else -1 if mark in "]}" else 0
        if depth == 0:
            return token.end()
    return -1


def _decoder() -> json.JSONDecoder:
    """A decoder that only delimits values: integers stay text (Python refuses to convert one of more
    than 4,300 digits, which would make a whole document unreadable)."""
    return json.JSONDecoder(strict=False, parse_int=str)


def _value_end(decoder: json.JSONDecoder, text: str, i: int) -> int:
    """The end of the JSON value starting at i (-1 when there is none)."""
    try:
        return decoder.raw_decode(text, i)[1]
    except RecursionError:
        return _nested_end(text, i)
    except ValueError:
        return -1


class BrokenAt(Exception):
    """Where a document stops being well-formed: an index of its text."""

    def __init__(self, at: int) -> None:
        super().__init__(at)
        self.at = at


def _unreadable_at(decoder: json.JSONDecoder, text: str, i: int) -> int:
    """Where the value starting at i cannot be read on (the decoder's position; i when too deep)."""
    try:
        decoder.raw_decode(text, i)
    except json.JSONDecodeError as exc:
        return exc.pos
    except (RecursionError, ValueError):
        pass
    return i


def _array_items(text: str, start: int) -> tuple[list[str], int]:
    """The texts of a JSON array's elements, as they are written, from just after its '[' at `start`, and
    the position after its ']'; BrokenAt when it is not a well-formed array. Elements are only delimited
    here (control characters in strings, NaN and depth allowed): each is judged as an item."""
    decoder, items = _decoder(), []
    i = _WHITESPACE.match(text, start).end()
    if text.startswith("]", i):
        return items, i + 1
    while True:
        end = _value_end(decoder, text, i)
        if end < 0:
            raise BrokenAt(_unreadable_at(decoder, text, i))
        items.append(text[i:end])
        i = _WHITESPACE.match(text, end).end()
        if text.startswith("]", i):
            return items, i + 1
        if not text.startswith(",", i):
            raise BrokenAt(i)
        i = _WHITESPACE.match(text, i + 1).end()


def skip(text: str, i: int, expected: str = "") -> int:
    """The position after JSON whitespace from i, and after `expected` there (-1 when it is not there)."""
    i = _WHITESPACE.match(text, i).end()
    return i + len(expected) if text.startswith(expected, i) else -1


def _opening(text: str) -> tuple[str, re.Match[str] | None, int]:
    """The text without its byte order mark, its {"measures": [ opening (if any), and the position after
    the array's '[' (-1 when it opens no array)."""
    text = text.removeprefix("\ufeff")
    measures = MEASURES_DOCUMENT.match(text)
    return text, measures, measures.end() if measures else skip(text, 0, "[")


def document_items(text: str) -> list[str] | None:
    """A whole-file JSON document's items as written: the elements of an array or of
    {"measures": [...]}, else the one value (an object, or anything else: not_an_object); None when the
    text is not one JSON document."""
    text, measures, start = _opening(text)
    try:
        items, end = _array_items(text, start) if start >= 0 else ([], -1)
    except BrokenAt:
        end = -1
    if end >= 0:
        end = skip(text, end, "}") if measures else end
        if end >= 0 and skip(text, end) == len(text):
            return items
    head = skip(text, 0)
    end = _value_end(_decoder(), text, head)
    return [text[head:end]] if end >= 0 and skip(text, end) == len(text) else None


def where_broken(text: str) -> str:
    """Where a text opening an array or {"measures": [...]} stops being one such document: "line L,
    column C" (characters; what document_items refuses)."""
    text, measures, start = _opening(text)
    try:
        _, end = _array_items(text, start) if start >= 0 else ([], 0)
        closed = skip(text, end, "}") if measures else end
        at = _WHITESPACE.match(text, end if closed < 0 else closed).end()
    except BrokenAt as broken:
        at = broken.at
    return f"line {text.count(chr(10), 0, at) + 1}, column {at - text.rfind(chr(10), 0, at)}"


class NotAnArrayDocument(Exception):
    """The streamed file is not one well-formed array document (the whole-text path decides what it is)."""


# Bytes read at a time (a block more is read while an element or a run of whitespace reaches the end of what
# was read, at least as much again as that element has so far: growing reads, a linear time); the first
# read holds the document's opening, '[' or {"measures": [, else the whole-text path reads the file.
STREAM_BLOCK_BYTES = 1 << 24
STREAM_HEAD_BYTES = 1 << 16
# What may still follow a number's text read so far ("-2e" reads as -2 until the exponent's digits come):
# a value followed by nothing else before the end of what was read is read again with more text.
_NUMBER_GOES_ON = re.compile(r"[-+.eE0-9]*")
# Items handed over at a time.
_BATCH_CHARS = 1 << 23


class _StreamedText:
    """A file's text read in blocks: `text` holds what was read and not yet dropped; `after` is set to the
    index after the array's ']' by _streamed_elements."""

    def __init__(self, fh: BinaryIO, path: Path) -> None:
        self.fh, self.path = fh, path
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.text, self.ended, self.after = "", False, -1

    def more(self, at_least: int = 0) -> bool:
        """Read another block (at least `at_least` bytes); False at the end of the file."""
        if self.ended:
            return False
        raw = self.fh.read(max(STREAM_BLOCK_BYTES, at_least))
        self.ended = not raw
        try:
            self.text += self.decoder.decode(raw, final=self.ended)
        except UnicodeDecodeError as exc:
            raise AggassetsError(f"{self.path}: not UTF-8 text") from exc
        return True

    def drop_before(self, i: int) -> int:
        """Forget the text before i (already handed over); returns i's new index."""
        if i < STREAM_BLOCK_BYTES:
            return i
        self.text = self.text[i:]
        return 0

    def skip(self, i: int) -> int:
        """The index of the first character that is not JSON whitespace from i (len(text) at the end)."""
        while True:
            i = _WHITESPACE.match(self.text, i).end()
            if i < len(self.text) or not self.more():
                return i

    def value_end(self, decoder: json.JSONDecoder, i: int) -> int:
        """The end of the JSON value starting at i (-1 when there is none): a value that may go on past the
        text read so far (a number cut short, say: _NUMBER_GOES_ON) is read again with more text."""
        while True:
            end = _value_end(decoder, self.text, i)
            if (end >= 0 and not _NUMBER_GOES_ON.fullmatch(self.text, end)) or not self.more(len(self.text) - i):
                return end


def _streamed_elements(text: _StreamedText, i: int) -> Iterator[str]:
    """The elements of the array whose '[' ends just before i, each as written; ends after its ']'.
    The loop reads `text.text` directly and calls the reading methods only at the end of what was read."""
    decoder, whitespace, goes_on = _decoder(), _WHITESPACE.match, _NUMBER_GOES_ON.fullmatch
    i = text.skip(i)
    if text.text.startswith("]", i):
        text.after = i + 1
        return
    while True:
        read = text.text
        end = _value_end(decoder, read, i)
        if end < 0 or goes_on(read, end):
            end = text.value_end(decoder, i)
            if end < 0:
                raise NotAnArrayDocument
            read = text.text
        yield read[i:end]
        i = whitespace(read, end).end()
        if i == len(read):
            i = text.skip(text.drop_before(i))
            read = text.text
        mark = read[i : i + 1]
        if mark == ",":
            i = whitespace(read, i + 1).end()
            if i == len(read) or i >= STREAM_BLOCK_BYTES:
                i = text.skip(text.drop_before(i))
        elif mark == "]":
            text.after = i + 1
            return
        else:
            raise NotAnArrayDocument


def streamed_array_items(path: Path) -> Iterator[list[str]]:
    """The items of an array document or of {"measures": [...]} in the file, as document_items gives
    them, in batches, reading the file in blocks (memory bounded by the largest element, not the file).
    Raises NotAnArrayDocument, possibly after some batches, when the file is not such a document (it may
    still be one JSON value: see document_items), AggassetsError when it is not UTF-8."""
    with open(path, "rb") as fh:
        text = _StreamedText(fh, path)
        text.more(STREAM_HEAD_BYTES)
        text.text = text.text.removeprefix("\ufeff")
        measures = MEASURES_DOCUMENT.match(text.text)
        start = measures.end() if measures else skip(text.text, 0, "[")
        if start < 0:
            raise NotAnArrayDocument
        batch: list[str] = []
        size = 0
        for item in _streamed_elements(text, start):
            batch.append(item)
            size += len(item)
            if size >= _BATCH_CHARS:
                yield batch
                batch, size = [], 0
        i = text.skip(text.after)
        if measures:
            if not text.text.startswith("}", i):
                raise NotAnArrayDocument
            i = text.skip(i + 1)
        if i < len(text.text):
            raise NotAnArrayDocument
        yield batch
