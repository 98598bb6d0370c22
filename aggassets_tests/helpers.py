"""Test helpers for the Dagster layer: generated measure files and resources on a temp warehouse."""

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from aggassets.settings import PROJECT_ROOT

DEFINITIONS = PROJECT_ROOT / "definitions"


def make_measures(first: date, days: int, per_day: int, seed: int = 1) -> list[dict[str, Any]]:
    """Valid connection-count-daily and session-duration-daily measures, `per_day` each a day."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for d in range(days):
        day = (first + timedelta(days=d)).isoformat()
        for name, key in (("connection-count-daily", "device"), ("session-duration-daily", "device")):
            values = rng.integers(0, 20, per_day) if name.startswith("conn") else rng.lognormal(4, 1, per_day)
            devices = rng.choice(["desktop", "mobile"], per_day)
            rows += [
                {"measureName": name, "value": float(v), "startDate": day, "group1": {key: str(g)}}
                for v, g in zip(values, devices, strict=True)
            ]
    return rows


def write_ndjson(path: Path, rows: list[dict[str, Any]], extra_lines: tuple[str, ...] = ()) -> Path:
    """Write rows (and raw extra lines) as NDJSON."""
    path.write_text("\n".join([json.dumps(r) for r in rows] + list(extra_lines)) + "\n", encoding="utf-8")
    return path
