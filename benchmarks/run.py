"""`make bench`: intake and refresh speed against floors and peers measured in the same run.

Environment: BENCH_DAYS (default 30), BENCH_PER_DAY (default 55000 per day measure, ~10M measures).
"""

import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from aggassets.catalog import load_measures
from aggassets.demo import generate
from aggassets.settings import definitions_dir, partitions_start
from aggassets.warehouse import open_warehouse
from aggassets.warehouse.base import GRAINS, period_end, period_start


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call."""
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def floor_intake(data: Path) -> int:
    """The floor: a bare DuckDB read_json of the same file into a table; its row count."""
    con = duckdb.connect()
    columns = ("{'measureName': 'VARCHAR', 'value': 'DOUBLE', 'startDate': 'VARCHAR', 'createdBy': 'VARCHAR', "
               "'group1': 'JSON', 'group2': 'JSON', 'group3': 'JSON'}")
    con.execute(f"CREATE TABLE t AS SELECT * FROM read_json('{data}', format = 'newline_delimited', "
                f"columns = {columns})")
    return int(con.execute("SELECT count(*) FROM t").fetchall()[0][0])


def floor_refresh(path: str) -> None:
    """The floor: one bare DuckDB GROUP BY with quantile_cont per grain over the same raw table."""
    con = duckdb.connect(path, read_only=True)
    for grain in ("day", "week", "month"):
        con.execute(f"""CREATE TEMP TABLE f_{grain} AS SELECT measure_name, date_trunc('{grain}', start_date) p,
            created_by, group1, group2, group3, count(*), sum(value), min(value), max(value), avg(value),
            stddev_samp(value), quantile_cont(value, [0.25, 0.5, 0.75])
            FROM raw_measures GROUP BY ALL""")
    con.close()


def pandas_refresh(raw: pd.DataFrame) -> None:
    """A straightforward pandas implementation of the three grains."""
    for freq in ("D", "W-MON", "MS"):
        frame = raw.assign(p=raw["start_date"].dt.to_period(freq[0] if freq != "W-MON" else "W-SUN").dt.start_time)
        grouped = frame.groupby(["measure_name", "p", "created_by", "group1", "group2", "group3"])["value"]
        stats = grouped.agg(["count", "sum", "min", "max", "mean", "std"])
        stats = stats.join(grouped.quantile([0.25, 0.5, 0.75]).unstack())
        assert len(stats) > 0


def main() -> int:
    """Run every measurement and print ratios."""
    days, per_day = int(os.environ.get("BENCH_DAYS", 30)), int(os.environ.get("BENCH_PER_DAY", 55000))
    catalog = load_measures(definitions_dir())
    first = date(2025, 1, 6)
    last = first + timedelta(days=days - 1)
    with tempfile.TemporaryDirectory() as tmp:
        t_gen, (data, _) = timed(lambda: generate(catalog, Path(tmp), first, last,
                                                  {"day": per_day, "week": per_day // 3, "month": per_day}))
        size = data.stat().st_size
        print(f"generated {size / 2**20:.0f} MiB of NDJSON in {t_gen:.1f}s")
        t_floor, n = timed(lambda: floor_intake(data))
        db = Path(tmp) / "bench.duckdb"
        with open_warehouse(f"duckdb:///{db}") as wh:
            wh.sync_definitions(catalog.measures)
            t_ingest, result = timed(lambda: wh.ingest_file(data, catalog.measures, partitions_start()))
            rss_ingest = peak_rss_mib()
            windows = {g: (period_start(g, first), period_end(g, period_start(g, last))) for g in GRAINS}
            t_refresh, _ = timed(lambda: [wh.refresh(g, *windows[g]) for g in windows])
        rss = peak_rss_mib()
        t_floor_refresh, _ = timed(lambda: floor_refresh(str(db)))
        raw = duckdb.connect(str(db), read_only=True).execute("SELECT * FROM raw_measures").df()
        t_pandas, _ = timed(lambda: pandas_refresh(raw))
    lines = [
        f"measures: {n:,} ({result.accepted:,} accepted) over {days} days",
        f"ingest: {t_ingest:.1f}s = {n / t_ingest:,.0f} measures/s; floor read_json {t_floor:.1f}s; "
        f"ratio {t_ingest / t_floor:.2f}x (target <= 2x, >= 1M/s)",
        f"refresh day+week+month with quartiles: {t_refresh:.1f}s; floor GROUP BY {t_floor_refresh:.1f}s; "
        f"ratio {t_refresh / t_floor_refresh:.2f}x (target <= 3x)",
        f"pandas groupby: {t_pandas:.1f}s; aggassets is {t_pandas / t_refresh:.1f}x faster (target >= 10x)",
        f"peak RSS: {rss_ingest:,.0f} MiB after ingest, {rss:,.0f} MiB after refresh (target <= 2048 MiB)",
    ]
    try:
        from benchmarks import bench_experiments
    except ImportError:
        pass
    else:
        lines += bench_experiments.run()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
