"""The inbox folder: measure files dropped there are ingested once, then moved aside."""

import shutil
import time
from datetime import date
from pathlib import Path
from typing import Any

from aggassets.catalog import MeasureCatalog
from aggassets.errors import AggassetsError, AlreadyIngested
from aggassets.warehouse import Warehouse
from aggassets.warehouse.values import file_sha256

SUFFIXES = (".json", ".ndjson", ".jsonl")
# A file changed this recently may still be being written: it waits for a later tick (drop files
# atomically, write then rename, to be safe whatever the writer's pauses).
SETTLE_SECONDS = 5.0


def pending_files(inbox: Path, now: float | None = None) -> list[Path]:
    """Measure files waiting in the inbox (not in processed/ or failed/), unchanged for SETTLE_SECONDS,
    oldest name first."""
    if not inbox.is_dir():
        return []
    settled = (time.time() if now is None else now) - SETTLE_SECONDS
    files = (p for p in inbox.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    return sorted(p for p in files if p.stat().st_mtime <= settled)


def _move(path: Path, folder: Path) -> Path:
    """Move `path` into `folder`, never overwriting an earlier file of the same name."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    n = 1
    while target.exists():
        target = folder / f"{path.stem}.{n}{path.suffix}"
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
    except AggassetsError as exc:
        moved = _move(path, inbox / "failed")
        moved.with_name(moved.name + ".reason").write_text(f"{exc}\n", encoding="utf-8")
        return {"file": path.name, "status": "failed", "reason": str(exc), "moved_to": str(moved)}
    moved = _move(path, inbox / "processed")
    return {"file": path.name, "status": "ingested", **result.as_dict(), "moved_to": str(moved)}
