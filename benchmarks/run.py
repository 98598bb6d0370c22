"""`make bench`: intake and refresh speed against floors and peers measured in the same run.

Environment: BENCH_DAYS (default 30), BENCH_PER_DAY (default 64400 per day measure: 10.0M measures),
BENCH_EXPERIMENTS=0 to leave out the experiment benchmark.

Each part (generation, the intake floor, aggassets ingest + refresh, the refresh floor, the pandas peer)
runs in a fresh process, so each peak RSS (getrusage ru_maxrss of that process) is its own: the
"peak RSS" figure is the aggassets process's, which only opens the warehouse, ingests and refreshes.
"""

import multiprocessing
import os
import resource
import statistics
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
from aggassets.warehouse.values import GRAINS, period_end, period_start

FIRST = date(2025, 1, 6)


REPEATS = 3  # the refresh, its floor and the pandas peer: median of this many runs (they are idempotent)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call."""
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def median_time(fn: Callable[[], Any]) -> float:
    """Median seconds of REPEATS calls."""
    return statistics.median(timed(fn)[0] for _ in range(REPEATS))


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_subprocess(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) in a fresh process (its own peak RSS); its result."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def generate_data(folder: Path, days: int, per_day: int) -> tuple[float, Path]:
    """(seconds, path) of the generated NDJSON file: the demo's main file with its late file (late and
    malformed measures) at the end, as real traffic has a few bad items."""
    catalog = load_measures(definitions_dir())
    last = FIRST + timedelta(days=days - 1)
    t, (data, late) = timed(
        lambda: generate(catalog, folder, FIRST, last, {"day": per_day, "week": per_day // 3, "month": per_day})
    )
    with open(data, "ab") as out:
        out.write(late.read_bytes())
    return t, data


def connect(path: str = ":memory:", read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection without the progress bar (it would clutter the report)."""
    con = duckdb.connect(path, read_only=read_only)
    con.execute("SET enable_progress_bar = false")
    return con


_FLOOR_COLUMNS = (
    "{'measureName': 'VARCHAR', 'value': 'DOUBLE', 'startDate': 'VARCHAR', 'createdBy': 'VARCHAR', "
    "'group1': 'JSON', 'group2': 'JSON', 'group3': 'JSON'}"
)


def floor_intake(data: Path, database: str = ":memory:") -> tuple[float, int, float]:
    """The floor: a bare DuckDB read_json of the same file into a table (in memory, or in a database
    file as the intake writes); (seconds, rows, peak RSS). ignore_errors: the malformed lines would stop it."""
    con = connect(database)
    t, _ = timed(
        lambda: con.execute(
            f"CREATE TABLE t AS SELECT * FROM read_json('{data}', "
            f"format = 'newline_delimited', ignore_errors = true, columns = {_FLOOR_COLUMNS})"
        )
    )
    return t, int(con.execute("SELECT count(*) FROM t").fetchall()[0][0]), peak_rss_mib()


def floor_stored_intake(data: Path, database: str) -> float:
    """The least an intake that keeps DESIGN §4.2 does, with no check at all: every line stored as it came,
    numbered, in an inbox table (as the intake stores it), then the bare read_json floor into the same
    database file; seconds. It bounds the intake from below: above 2x the floor, `<= 2x` is out of reach."""
    con = connect(database)
    con.execute("SET memory_limit = '1.5GB'; SET preserve_insertion_order = false")
    con.execute("CREATE TABLE inbox (seq BIGINT, received_at TIMESTAMP, payload VARCHAR USING COMPRESSION zstd)")

    def run() -> None:
        con.execute("BEGIN")
        con.execute(
            f"CREATE TEMP TABLE lines AS SELECT payload FROM read_csv('{data}', columns = {{'payload': 'VARCHAR'}}, "
            "header = false, delim = chr(30), quote = '', escape = '', auto_detect = false)"
        )
        con.execute("INSERT INTO inbox SELECT rowid, now(), payload FROM lines")
        con.execute("DROP TABLE lines")
        con.execute(
            f"CREATE TABLE t AS SELECT * FROM read_json('{data}', "
            f"format = 'newline_delimited', ignore_errors = true, columns = {_FLOOR_COLUMNS})"
        )
        con.execute("COMMIT")

    return timed(run)[0]


# Seven years of partitions, all materialized before the intake (INSERT OR REPLACE: the refresh's own too), so
# every raw row is late for its day, week and month: the late-measure sensor's worst case after years of use.
_PARTITION_HISTORY = """INSERT OR REPLACE INTO partition_materializations (grain, period_start, materialized_at)
SELECT 'day', CAST(d AS DATE), TIMESTAMP '2000-01-01'
  FROM range(DATE '2019-01-01', DATE '2026-01-01', INTERVAL 1 DAY) t(d)
UNION ALL SELECT 'week', CAST(d AS DATE), TIMESTAMP '2000-01-01'
  FROM range(DATE '2018-12-31', DATE '2026-01-01', INTERVAL 7 DAY) t(d)
UNION ALL SELECT 'month', CAST(d AS DATE), TIMESTAMP '2000-01-01'
  FROM range(DATE '2019-01-01', DATE '2026-01-01', INTERVAL 1 MONTH) t(d)"""
# The least the late-measure query does: read every raw row's measure, day and receive time once.
_LATE_FLOOR = "SELECT measure_name, start_date, max(received_at) FROM raw_measures GROUP BY ALL"


def late_partitions_times(wh: Any) -> tuple[float, float]:
    """(the late-measure sensor's query, its floor): medians, seconds, after seven years of partitions."""
    wh.execute(_PARTITION_HISTORY)
    return median_time(wh.late_partitions), median_time(lambda: wh.fetch(_LATE_FLOOR))


def aggassets_run(data: Path, db: Path, days: int) -> dict[str, Any]:
    """Ingest the file into a new DuckDB warehouse, then refresh day + week + month over the whole range."""
    catalog = load_measures(definitions_dir())
    last = FIRST + timedelta(days=days - 1)
    windows = {g: (period_start(g, FIRST), period_end(g, period_start(g, last))) for g in GRAINS}
    with open_warehouse(f"duckdb:///{db}") as wh:
        wh.sync_definitions(catalog.measures)
        t_ingest, result = timed(lambda: wh.ingest_file(data, catalog.measures, partitions_start()))
        rss_ingest = peak_rss_mib()
        t_refresh = median_time(lambda: [wh.refresh(g, *windows[g]) for g in windows])
        t_late, t_late_floor = late_partitions_times(wh)
    return {
        "t_late": t_late,
        "t_late_floor": t_late_floor,
        "t_ingest": t_ingest,
        "received": result.received,
        "accepted": result.accepted,
        "t_refresh": t_refresh,
        "rss_ingest": rss_ingest,
        "rss": peak_rss_mib(),
    }


def floor_refresh(path: Path) -> tuple[float, float]:
    """The floor: one bare DuckDB GROUP BY with quantile_cont per grain over the same raw table."""

    def run() -> None:
        con = connect(str(path), read_only=True)
        for grain in GRAINS:
            con.execute(f"""CREATE TEMP TABLE f_{grain} AS SELECT measure_name, date_trunc('{grain}', start_date) p,
                created_by, group1, group2, group3, count(*), sum(value), min(value), max(value), avg(value),
                stddev_samp(value), quantile_cont(value, [0.25, 0.5, 0.75])
                FROM raw_measures GROUP BY ALL""")
        con.close()

    return median_time(run), peak_rss_mib()


def pandas_refresh(raw: pd.DataFrame) -> None:
    """A straightforward pandas implementation of the three grains."""
    for freq in ("D", "W-MON", "MS"):
        frame = raw.assign(p=raw["start_date"].dt.to_period(freq[0] if freq != "W-MON" else "W-SUN").dt.start_time)
        grouped = frame.groupby(["measure_name", "p", "created_by", "group1", "group2", "group3"])["value"]
        stats = grouped.agg(["count", "sum", "min", "max", "mean", "std"])
        stats = stats.join(grouped.quantile([0.25, 0.5, 0.75]).unstack())
        assert len(stats) > 0


def pandas_run(path: Path) -> tuple[float, float]:
    """The pandas peer over the raw columns it uses (loading them is not timed); (seconds, peak RSS)."""
    columns = "measure_name, start_date, created_by, group1, group2, group3, value"
    raw = connect(str(path), read_only=True).execute(f"SELECT {columns} FROM raw_measures").df()
    return median_time(lambda: pandas_refresh(raw)), peak_rss_mib()


def main() -> int:
    """Run every measurement, each part in its own process, and print ratios."""
    days, per_day = int(os.environ.get("BENCH_DAYS", 30)), int(os.environ.get("BENCH_PER_DAY", 64400))
    with tempfile.TemporaryDirectory() as tmp:
        t_gen, data = in_subprocess(generate_data, Path(tmp), days, per_day)
        print(f"generated {data.stat().st_size / 2**20:.0f} MiB of NDJSON in {t_gen:.1f}s", flush=True)
        t_floor, _, rss_floor = in_subprocess(floor_intake, data)
        t_floor_file, _, _ = in_subprocess(floor_intake, data, str(Path(tmp) / "floor.duckdb"))
        t_stored = in_subprocess(floor_stored_intake, data, str(Path(tmp) / "stored.duckdb"))
        db = Path(tmp) / "bench.duckdb"
        ours = in_subprocess(aggassets_run, data, db, days)
        t_floor_refresh, rss_floor_refresh = in_subprocess(floor_refresh, db)
        t_pandas, rss_pandas = in_subprocess(pandas_run, db)
    t_ingest, t_refresh, n = ours["t_ingest"], ours["t_refresh"], ours["received"]
    lines = [
        f"measures: {n:,} ({ours['accepted']:,} accepted) over {days} days",
        f"ingest: {t_ingest:.1f}s = {n / t_ingest:,.0f} measures/s; floor read_json {t_floor:.1f}s in memory, "
        f"{t_floor_file:.1f}s into a database file; ratio {t_ingest / t_floor:.2f}x / {t_ingest / t_floor_file:.2f}x "
        "(target <= 2x, >= 1M/s)",
        f"intake lower bound (every line stored numbered as it came, then the bare read_json, no check): "
        f"{t_stored:.1f}s = {t_stored / t_floor:.2f}x / {t_stored / t_floor_file:.2f}x the floors",
        f"refresh day+week+month with quartiles (median of {REPEATS}): {t_refresh:.2f}s; floor GROUP BY "
        f"{t_floor_refresh:.2f}s; "
        f"ratio {t_refresh / t_floor_refresh:.2f}x (target <= 3x)",
        f"pandas groupby (median of {REPEATS}): {t_pandas:.1f}s; aggassets is {t_pandas / t_refresh:.1f}x faster "
        "(target >= 10x)",
        f"late-measure sensor's query, every raw row late, 3,007 partitions (median of {REPEATS}): "
        f"{ours['t_late'] * 1e3:.0f} ms; floor GROUP BY of the raw rows by measure and day "
        f"{ours['t_late_floor'] * 1e3:.0f} ms; "
        f"ratio {ours['t_late'] / ours['t_late_floor']:.2f}x",
        f"peak RSS of the aggassets process: {ours['rss_ingest']:,.0f} MiB after ingest, {ours['rss']:,.0f} MiB "
        "after refresh (target <= 2048 MiB)",
        f"peak RSS of the other processes: read_json floor {rss_floor:,.0f} MiB, GROUP BY floor "
        f"{rss_floor_refresh:,.0f} MiB, pandas peer {rss_pandas:,.0f} MiB",
    ]
    if os.environ.get("BENCH_EXPERIMENTS", "1") != "0":
        from benchmarks import bench_experiments

        lines += bench_experiments.run()
    from benchmarks import bench_goals

    lines += bench_goals.run()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
