"""Errors that the CLI reports as one line and a non-zero exit code."""

import os
from pathlib import Path


class AggassetsError(Exception):
    """Bad input or an impossible request: the message is shown to the user as is."""


class WarehouseUnavailable(AggassetsError):
    """The warehouse cannot be opened now: another process holds the DuckDB file (after a few seconds'
    wait), or the PostgreSQL server does not accept the connection."""


class AlreadyIngested(AggassetsError):
    """Content the warehouse holds already (same SHA-256), found under the writer's lock."""


class FileChanged(AggassetsError):
    """The file changed while it was read (a writer still at work): nothing of it was stored."""


def utf8_name(path: Path) -> bool:
    """Whether the path is UTF-8 text (a name in another encoding reads as lone surrogates)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def require_file(path: Path) -> None:
    """Raise AggassetsError unless `path` is an existing file (saying whether it is missing or a folder)
    whose name is UTF-8 text (DuckDB takes paths as UTF-8 only)."""
    if not utf8_name(path):
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise AggassetsError(f"{shown}: the file name is not UTF-8 text; rename the file")
    if not path.is_file():
        kind = "a directory, not a file" if path.is_dir() else "not a regular file" if path.exists() else "no such file"
        raise AggassetsError(f"{path}: {kind}")
