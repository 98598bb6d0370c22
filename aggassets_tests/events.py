"""Test helpers for experiments: events written straight into the warehouse, generated experiments."""

import pandas as pd
import pyarrow as pa

from aggassets.warehouse.base import Warehouse


def insert_events(wh: Warehouse, events: pd.DataFrame) -> None:
    """Write events straight into the events table (adding dim_ columns), bypassing intake validation."""
    text = "TEXT" if wh.sql.__name__.endswith("postgres_sql") else "VARCHAR"
    frame = events.assign(batch_id=1)
    with wh.transaction():
        for col in [c for c in frame.columns if c.startswith("dim_")]:
            wh.execute(f"ALTER TABLE events ADD COLUMN IF NOT EXISTS {col} {text}")
        wh.stage("test_events", pa.Table.from_pandas(frame, preserve_index=False))
        cols = ", ".join(frame.columns)
        wh.execute(f"INSERT INTO events ({cols}) SELECT {cols} FROM test_events")
