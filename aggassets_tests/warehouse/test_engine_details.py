"""Details of the warehouse the broader suites leave open: exactness of a narrow spread, URL parsing."""

import math
import time
from datetime import date, timedelta
from fractions import Fraction
from pathlib import Path

import pyarrow as pa

from aggassets.warehouse import open_warehouse
from aggassets.warehouse.base import Warehouse
from aggassets.warehouse.postgres_engine import split_url
from aggassets.warehouse.values import utc_now
from aggassets_tests.warehouse.support import (
    DEFINITIONS,
    TABLES,
    aggregates,
    assert_matches,
    ingest,
    measure,
    refresh_all,
)


def exact_std(values: list[float]) -> float:
    """The sample standard deviation of the values, computed in exact rational arithmetic, rounded once."""
    exact = [Fraction(v) for v in values]
    mean = sum(exact) / len(exact)
    return math.sqrt(float(sum((v - mean) ** 2 for v in exact) / (len(exact) - 1)))


def test_a_spread_of_a_few_percent_of_the_mean_is_exact(warehouse: Warehouse, tmp_path: Path) -> None:
    """DESIGN 4.3: exact to float64. Values within ~2% of their mean (m2 is 0.02% of the sum of squares): a
    one-pass m2 is off by ~1e-12 there, the exact second pass is within an ulp or two."""
    values = [11992.684, 12418.68, 12268.709]
    warehouse.sync_definitions(DEFINITIONS)
    ingest(warehouse, tmp_path, items=[measure("errors-daily", v, "2022-03-07") for v in values])
    warehouse.refresh("day", date(2022, 3, 7), date(2022, 3, 8))
    std = float(warehouse.read_table("daily_aggregates")["std"].iloc[0])
    assert math.isclose(std, exact_std(values), rel_tol=1e-14, abs_tol=0.0)


def test_split_url_keeps_the_last_schema_parameter() -> None:
    """As libpq does with a keyword given twice, the last `schema` wins (and neither reaches libpq)."""
    assert split_url("postgresql://h/db?schema=first&sslmode=disable&schema=second") == (
        "postgresql://h/db?sslmode=disable",
        "second",
    )


def test_a_table_staged_outside_a_transaction_stays_for_the_connection(postgres_url: str) -> None:
    """Only a transaction's staged tables go with its end (ON COMMIT DROP); one staged outside any stays."""
    with open_warehouse(postgres_url) as wh:
        wh.stage("loose", pa.table({"x": [1, 2, 3]}))
        assert wh.fetch("SELECT sum(x) AS s FROM loose")["s"].iloc[0] == 6
        with wh.transaction():
            wh.stage("within", pa.table({"x": [4]}))
            assert wh.fetch("SELECT x FROM within")["x"].tolist() == [4]
        assert wh.fetch("SELECT count(*) AS n FROM pg_tables WHERE tablename = 'within'")["n"].iloc[0] == 0


def test_refresh_summary_and_preview_release_at_the_threshold(warehouse: Warehouse, tmp_path: Path) -> None:
    """DESIGN 4.4 at the boundary (visits-daily's threshold is 3): a row of 3 is released, a row of 2 is
    suppressed and left out of the preview, which lists the released rows by count, largest first."""
    warehouse.sync_definitions(DEFINITIONS)
    counts = {"desktop": 4, "mobile": 3, "tablet": 2}
    items = [
        measure("visits-daily", 1.0, "2022-03-07", group1=device, group2="linux")
        for device, n in counts.items()
        for _ in range(n)
    ]
    ingest(warehouse, tmp_path, items=items)
    result = warehouse.refresh("day", date(2022, 3, 7), date(2022, 3, 8))
    assert (result.rows, result.released, result.suppressed) == (3, 2, 1)
    assert result.preview["count"].tolist() == [4, 3]


def test_checks_allow_an_average_an_ulp_outside_equal_values(warehouse: Warehouse, tmp_path: Path) -> None:
    """0.1 three times: the rounded sum over 3 is an ulp off 0.1 (above it on DuckDB, below on PostgreSQL's
    exact sum), which min <= avg <= max must tolerate; the row is correct."""
    warehouse.sync_definitions(DEFINITIONS)
    ingest(warehouse, tmp_path, items=[measure("errors-daily", 0.1, "2022-03-07") for _ in range(3)])
    result = warehouse.refresh("day", date(2022, 3, 7), date(2022, 3, 8), checks=True)
    row = warehouse.read_table("daily_aggregates").iloc[0]
    assert row["min"] == row["max"] == 0.1 and abs(row["avg"] - 0.1) <= math.ulp(0.1)
    assert result.violations == dict.fromkeys(result.violations or {}, 0)
    assert warehouse.stored_check_violations("day")["min_le_avg_le_max"] == 0


def test_sums_of_values_needing_17_digits_are_exact(warehouse: Warehouse, tmp_path: Path) -> None:
    """DESIGN 4.3: exact to float64. 0.1 + 0.2 needs 17 significant digits: a sum through 15-digit decimals
    would see 0.3 twice. Expected: twice the value (exact in binary)."""
    value = 0.1 + 0.2
    warehouse.sync_definitions(DEFINITIONS)
    ingest(warehouse, tmp_path, items=[measure("errors-daily", value, "2022-03-07") for _ in range(2)])
    warehouse.refresh("day", date(2022, 3, 7), date(2022, 3, 8))
    row = warehouse.read_table("daily_aggregates").iloc[0]
    assert (row["sum"], row["avg"], row["min"]) == (2 * value, value, value) != (0.6, 0.3, 0.3)


def test_stored_checks_leave_out_a_day_refreshed_for_another_catalog(warehouse: Warehouse, tmp_path: Path) -> None:
    """A day refreshed before errors-daily joined the catalog lacks its rows: not a wrong count but a partition
    its next refresh completes, so count_equals_raw leaves it out until then."""
    warehouse.sync_definitions([d for d in DEFINITIONS if d.name != "errors-daily"])
    items = [
        measure("errors-daily", 1.0, "2022-03-07"),
        measure("visits-daily", 2.0, "2022-03-07", group1="a", group2="b"),
    ]
    ingest(warehouse, tmp_path, items=items)
    warehouse.refresh("day", date(2022, 3, 7), date(2022, 3, 8))
    warehouse.sync_definitions(DEFINITIONS)
    assert warehouse.stored_check_violations("day")["count_equals_raw"] == 0
    warehouse.refresh("day", date(2022, 3, 7), date(2022, 3, 8))
    assert warehouse.read_table("daily_aggregates", "measure_name")["measure_name"].tolist() == [
        "errors-daily",
        "visits-daily",
    ]
    assert warehouse.stored_check_violations("day")["count_equals_raw"] == 0


def test_a_key_purged_in_two_steps_is_frozen_once_per_grain(warehouse: Warehouse, tmp_path: Path) -> None:
    """DESIGN 4.5: a quartile key's Monday values purged first, its Tuesday values (received later, same week)
    purged by a later purge: each grain's quartiles are frozen once, and every figure stays what it was."""
    warehouse.sync_definitions(DEFINITIONS)
    ingest(warehouse, tmp_path, items=[measure("duration-daily", v, "2022-03-07", group1="s") for v in (1, 2, 4)])
    time.sleep(0.01)
    between = utc_now()
    time.sleep(0.01)
    ingest(warehouse, tmp_path, items=[measure("duration-daily", v, "2022-03-08", group1="s") for v in (8, 16)])
    windows = refresh_all(warehouse, [date(2022, 3, 7), date(2022, 3, 8)])
    before = {grain: aggregates(warehouse, grain) for grain in TABLES}
    assert warehouse.purge(31, now=between + timedelta(days=31)) == {"duration-daily": 3}
    assert warehouse.purge(31, now=utc_now() + timedelta(days=31)) == {"duration-daily": 2}
    for grain, (start, end) in windows.items():
        warehouse.refresh(grain, start, end)
        assert_matches(aggregates(warehouse, grain), before[grain])
    frozen = warehouse.read_table("frozen_quartiles")
    assert sorted(frozen[["grain", "period_start"]].astype(str).itertuples(index=False, name=None)) == [
        ("day", "2022-03-07"),
        ("day", "2022-03-08"),
        ("month", "2022-03-01"),
        ("week", "2022-03-07"),
    ]
