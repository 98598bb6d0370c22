"""Where things live: warehouse URL, catalog folder, inbox folder, first partition (env overrides)."""

import argparse
import os
from datetime import date
from pathlib import Path

from aggassets.errors import AggassetsError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_START = "2020-01-01"


def warehouse_url() -> str:
    """AGGASSETS_WAREHOUSE, else the embedded DuckDB file under data/."""
    default = f"duckdb:///{PROJECT_ROOT / 'data' / 'aggassets.duckdb'}"
    return os.environ.get("AGGASSETS_WAREHOUSE") or default


def definitions_dir() -> Path:
    """AGGASSETS_DEFINITIONS, else the project's definitions/ folder."""
    return Path(os.environ.get("AGGASSETS_DEFINITIONS") or PROJECT_ROOT / "definitions")


def inbox_dir() -> Path:
    """AGGASSETS_INBOX, else data/inbox under the project."""
    return Path(os.environ.get("AGGASSETS_INBOX") or PROJECT_ROOT / "data" / "inbox")


def iso_day(text: str) -> date:
    """A date written exactly YYYY-MM-DD (date.fromisoformat alone also takes 20260101 and 2026-W01);
    ValueError otherwise."""
    if len(text) != 10 or text[4] != "-" or text[7] != "-":
        raise ValueError(f"not a date (YYYY-MM-DD): {text!r}")
    return date.fromisoformat(text)


def date_argument(text: str) -> date:
    """An argparse type: YYYY-MM-DD (a bad one is the command's own one-line error)."""
    try:
        return iso_day(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def days_argument(text: str) -> int:
    """An argparse type: a whole number of days, 0 or more."""
    try:
        days = int(text)
    except ValueError:
        days = -1
    if days < 0:
        raise argparse.ArgumentTypeError(f"not a whole number of days >= 0: {text!r}")
    return days


def partitions_start() -> date:
    """First day of every partitions definition (AGGASSETS_PARTITIONS_START, default 2020-01-01); a value
    that is not a date is an AggassetsError naming the variable."""
    text = os.environ.get("AGGASSETS_PARTITIONS_START") or DEFAULT_START
    try:
        return iso_day(text)
    except ValueError as exc:
        raise AggassetsError(f"AGGASSETS_PARTITIONS_START={text!r} is not a valid YYYY-MM-DD date") from exc
