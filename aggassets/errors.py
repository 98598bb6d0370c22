"""Errors that the CLI reports as one line and a non-zero exit code."""

from pathlib import Path


class AggassetsError(Exception):
    """Bad input or an impossible request: the message is shown to the user as is."""


class AlreadyIngested(AggassetsError):
    """Content the warehouse holds already (same SHA-256), found under the writer's lock."""


def require_file(path: Path) -> None:
    """Raise AggassetsError unless `path` is an existing file (saying whether it is missing or a folder)."""
    if not path.is_file():
        raise AggassetsError(f"{path}: {'a directory, not a file' if path.is_dir() else 'no such file'}")
