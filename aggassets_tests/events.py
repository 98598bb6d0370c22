"""Test helpers for experiments: events written straight into the warehouse, generated experiments."""

import pandas as pd
import pyarrow as pa

from aggassets.warehouse.base import Warehouse


def insert_events(wh: Warehouse, events: pd.DataFrame) -> None:
    """Write events straight into the events table (adding dim_ columns), bypassing intake validation."""
    frame = events.assign(batch_id=1)
    with wh.transaction():
        for col in [c for c in frame.columns if c.startswith("dim_")]:
            wh.execute(wh.sql.add_event_dimension(col.removeprefix("dim_")))
        wh.stage("test_events", pa.Table.from_pandas(frame, preserve_index=False))
        cols = ", ".join(frame.columns)
        wh.execute(f"INSERT INTO events ({cols}) SELECT {cols} FROM test_events")
