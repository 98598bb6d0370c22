"""The inbox folder: measure files dropped there are ingested once, then moved aside."""

import json
import os
import shutil
import time
from datetime import date
from pathlib import Path
from typing import Any

from aggassets.catalog import MeasureCatalog
from aggassets.errors import AggassetsError, AlreadyIngested, WarehouseUnavailable, utf8_name
from aggassets.warehouse import Warehouse
from aggassets.warehouse.values import file_sha256

SUFFIXES = (".json", ".ndjson", ".jsonl")
# A file changed this recently may still be being written: it waits for a later tick (drop files
# atomically, write then rename, to be safe whatever the writer's pauses).
SETTLE_SECONDS = 5.0
# A file whose last line has no line end and is not a whole JSON value (a writer paused mid-line) waits
# until unchanged this long: taken at 5 s, its end would be one broken item and the rest of the file,
# written after the move, never read.
MID_LINE_SETTLE_SECONDS = 300.0
_TAIL_BYTES = 1 << 20
NAME_MAX = 255  # bytes in a file name, on Linux's file systems


def measure_files(inbox: Path) -> list[Path]:
    """The inbox's measure files (not those in processed/ or failed/)."""
    if not inbox.is_dir():
        return []
    return [p for p in inbox.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES]


def ends_mid_line(path: Path) -> bool:
    """Whether the file's last line has no line end and is neither a whole JSON value nor a document's
    closing brackets (`]`, `}`, `]}`); of a last line longer than 1 MiB, whether it does not end with one."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(max(0, size - _TAIL_BYTES))
        tail = fh.read()
    if not tail or tail.endswith((b"\n", b"\r")):
        return False
    start = max(tail.rfind(b"\n"), tail.rfind(b"\r")) + 1
    last = tail[start:].strip(b" \t")
    if last.endswith((b"]", b"}")) and (not last.strip(b"]} \t") or (start == 0 and size > _TAIL_BYTES)):
        return False
    try:
        json.loads(last.removeprefix(b"\xef\xbb\xbf"), parse_int=str)
    except (ValueError, RecursionError):
        return True
    return False


def pending_files(inbox: Path, now: float | None = None) -> list[Path]:
    """Measure files waiting in the inbox, named in UTF-8 and unchanged for SETTLE_SECONDS (for
    MID_LINE_SETTLE_SECONDS when they end mid-line), by name."""
    now = time.time() if now is None else now
    pending = []
    for path in measure_files(inbox):
        age = now - path.stat().st_mtime
        if utf8_name(path) and age >= SETTLE_SECONDS and (age >= MID_LINE_SETTLE_SECONDS or not ends_mid_line(path)):
            pending.append(path)
    return sorted(pending)


def set_aside_misnamed(inbox: Path) -> list[Path]:
    """Move measure files whose names are not UTF-8 (left by zip, SMB or FTP tools) to failed/ with a
    .reason: no run can name them (Dagster's run keys, configs and DuckDB's paths are UTF-8)."""
    moved = []
    for path in measure_files(inbox):
        if not utf8_name(path):
            moved.append(_fail(path, "the file name is not UTF-8 text; rename the file and drop it again"))
    return moved


def _fail(path: Path, reason: str) -> Path:
    """Move `path` to failed/ beside its `.reason` file; the moved path."""
    moved = _move(path, path.parent / "failed", room=NAME_MAX - len(".reason"))
    moved.with_name(moved.name + ".reason").write_text(f"{reason}\n", encoding="utf-8")
    return moved


def _fitted(stem: str, tail: str, room: int) -> str:
    """stem + tail, the stem cut by whole characters to fit `room` bytes (file systems' name limit)."""
    while len(os.fsencode(stem + tail)) > room and stem:
        stem = stem[:-1]
    return stem + tail


def _move(path: Path, folder: Path, room: int = NAME_MAX) -> Path:
    """Move `path` into `folder`, never overwriting an earlier file of the same name; a name that would be
    too long with the `.N` that keeps it apart (or the `.reason` beside it) loses the end of its stem."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / _fitted(path.stem, path.suffix, room)
    n = 1
    while target.exists():
        target = folder / _fitted(path.stem, f".{n}{path.suffix}", room)
        n += 1
    shutil.move(str(path), target)
    return target


def process_file(warehouse: Warehouse, path: Path, catalog: MeasureCatalog, first_day: date) -> dict[str, Any]:
    """Ingest one inbox file (at most once, by content hash), then move it to processed/ or failed/."""
    inbox = path.parent
    try:
        sha = file_sha256(path)
        if warehouse.file_seen(sha):  # before reading the file; ingest_file checks again under the lock
            raise AlreadyIngested(f"{path}: ingested already")
        result = warehouse.ingest_file(path, catalog.measures, first_day, sha256=sha, once=True)
    except AlreadyIngested:
        moved = _move(path, inbox / "processed")
        return {"file": path.name, "status": "already_ingested", "moved_to": str(moved)}
    except WarehouseUnavailable:  # the warehouse's fault, not the file's: it stays for the run's retry
        raise
    except (AggassetsError, OSError) as exc:  # OSError: a file that cannot be read (permissions, I/O)
        reason = str(exc) if isinstance(exc, AggassetsError) else f"{path}: cannot read: {exc.strerror or exc}"
        moved = _fail(path, reason)
        return {"file": path.name, "status": "failed", "reason": reason, "moved_to": str(moved)}
    moved = _move(path, inbox / "processed")
    return {"file": path.name, "status": "ingested", **result.as_dict(), "moved_to": str(moved)}
