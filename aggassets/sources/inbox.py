"""The inbox folder: measure files dropped there are ingested once, then moved aside."""

import contextlib
import json
import os
import shutil
import time
from datetime import date
from pathlib import Path
from typing import Any

from aggassets.catalog import MeasureCatalog
from aggassets.errors import AggassetsError, AlreadyIngested, FileChanged, WarehouseUnavailable, utf8_name
from aggassets.warehouse import Warehouse
from aggassets.warehouse.values import file_sha256, file_state

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
    """The inbox's measure files (not those in processed/ or failed/), links named so included."""
    if not inbox.is_dir():
        return []
    return [p for p in inbox.iterdir() if (p.is_symlink() or p.is_file()) and p.suffix.lower() in SUFFIXES]


def inbox_file(name: str, inbox: Path) -> Path:
    """`name` as a measure file of the inbox folder itself: a run may name no other file (it would ingest
    and move it)."""
    path = Path(name)
    if path.parent.resolve() != inbox.resolve() or path.suffix.lower() not in SUFFIXES or path.name in ("", ".."):
        raise AggassetsError(f"{name}: not a file of the inbox folder {inbox} (a {', '.join(SUFFIXES)} file in it)")
    return path


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
    MID_LINE_SETTLE_SECONDS when they end mid-line or are empty), by name."""
    now = time.time() if now is None else now
    pending = []
    for path in measure_files(inbox):
        if path.is_symlink():  # set aside by set_aside_unreadable
            continue
        stat = path.stat()
        age = now - stat.st_mtime
        unfinished = stat.st_size == 0 or ends_mid_line(path)  # an empty file: created, not yet written
        if utf8_name(path) and age >= SETTLE_SECONDS and (age >= MID_LINE_SETTLE_SECONDS or not unfinished):
            pending.append(path)
    return sorted(pending)


LINKED = "a symbolic link: the inbox reads only files dropped in it (copy the file in instead); not followed"
MISNAMED = "the file name is not UTF-8 text; rename the file and drop it again"


def set_aside_unreadable(inbox: Path) -> list[tuple[Path, str]]:
    """Move to failed/, with a .reason, the measure files no run may take: names that are not UTF-8 (left by
    zip, SMB or FTP tools: Dagster's run keys, configs and DuckDB's paths are UTF-8) and symbolic links
    (moved as links: the inbox never reads a file outside itself). (moved path, reason) of each."""
    moved = []
    for path in measure_files(inbox):
        reason = MISNAMED if not utf8_name(path) else LINKED if path.is_symlink() else None
        if reason:
            moved.append((_fail(path, reason), reason))
    return moved


def _fail(path: Path, reason: str) -> Path:
    """Move `path` to failed/ beside its `.reason` file (a new file: never written through a link), written
    first: when it cannot be (a full disk), nothing is left of it and the file stays where it was, for a
    retry (it went to failed/ beside an empty `.reason`). The moved path."""
    target = _free_name(path, _own_folder(path.parent / "failed"), NAME_MAX - len(".reason"), ".reason")
    note = target.with_name(target.name + ".reason")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        with os.fdopen(os.open(note, flags, 0o644), "w", encoding="utf-8") as fh:
            fh.write(f"{reason}\n")
    except OSError:
        with contextlib.suppress(OSError):
            note.unlink()
        raise
    shutil.move(str(path), target)
    return target


def _fitted(stem: str, tail: str, room: int) -> str:
    """stem + tail, the stem cut by whole characters to fit `room` bytes (file systems' name limit)."""
    while len(os.fsencode(stem + tail)) > room and stem:
        stem = stem[:-1]
    return stem + tail


def _own_folder(folder: Path) -> Path:
    """processed/ or failed/, a folder of the inbox itself: a link would move files elsewhere."""
    if folder.is_symlink():
        raise AggassetsError(f"{folder} is a symbolic link: the inbox moves files only into its own folders")
    return folder


def _taken(target: Path, beside: str) -> bool:
    """Whether the name, or the file beside it, exists (a dangling link included)."""
    return any(os.path.lexists(p) for p in (target, target.with_name(target.name + beside) if beside else target))


def _free_name(path: Path, folder: Path, room: int = NAME_MAX, beside: str = "") -> Path:
    """Where `path` goes in `folder` (created), never over an earlier file of the same name (nor, with
    `beside`, the file `name + beside`); a name that would be too long with the `.N` that keeps it apart
    (or the `.reason` beside it) loses the end of its stem."""
    _own_folder(folder).mkdir(parents=True, exist_ok=True)
    target = folder / _fitted(path.stem, path.suffix, room)
    n = 1
    while _taken(target, beside):
        target = folder / _fitted(path.stem, f".{n}{path.suffix}", room)
        n += 1
    return target


def _move(path: Path, folder: Path) -> Path:
    """Move `path` into `folder` under a free name (_free_name)."""
    target = _free_name(path, folder)
    shutil.move(str(path), target)
    return target


def process_file(warehouse: Warehouse, path: Path, catalog: MeasureCatalog, first_day: date) -> dict[str, Any]:
    """Ingest one inbox file (at most once, by content hash), then move it to processed/ or failed/."""
    inbox = path.parent
    for folder in ("processed", "failed"):  # before anything is stored: the file stays in the inbox
        _own_folder(inbox / folder)
    if path.is_symlink():
        return {"file": path.name, "status": "failed", "reason": LINKED, "moved_to": str(_fail(path, LINKED))}
    try:
        state = file_state(path)  # before the hash: the content hashed is the content stored
        sha = file_sha256(path)
        if warehouse.file_seen(sha):  # before reading the file; ingest_file checks again under the lock
            raise AlreadyIngested(f"{path}: ingested already")
        result = warehouse.ingest_file(path, catalog.measures, first_day, sha256=sha, once=True, unchanged_since=state)
    except AlreadyIngested:
        moved = _move(path, inbox / "processed")
        return {"file": path.name, "status": "already_ingested", "moved_to": str(moved)}
    except FileChanged as exc:  # a writer still at work: the file stays for a later run, once it settles
        return {"file": path.name, "status": "still_changing", "reason": str(exc)}
    except WarehouseUnavailable:  # the warehouse's fault, not the file's: it stays for the run's retry
        raise
    except (AggassetsError, OSError) as exc:  # OSError: a file that cannot be read (permissions, I/O)
        reason = str(exc) if isinstance(exc, AggassetsError) else f"{path}: cannot read: {exc.strerror or exc}"
        moved = _fail(path, reason)
        return {"file": path.name, "status": "failed", "reason": reason, "moved_to": str(moved)}
    moved = _move(path, inbox / "processed")
    return {"file": path.name, "status": "ingested", **result.as_dict(), "moved_to": str(moved)}
