"""The engines side by side (same tables, same results), transactions, PostgreSQL connection options."""

import json
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg2
import pyarrow as pa
import pytest
from psycopg2 import sql as pgsql

from aggassets.errors import AggassetsError
from aggassets.warehouse import open_warehouse
from aggassets.warehouse.base import Warehouse
from aggassets.warehouse.postgres_engine import PostgresWarehouse, split_url
from aggassets.warehouse.values import utc_now
from aggassets_tests.warehouse.engines import WarehouseFactory, drop_schema, require_pg
from aggassets_tests.warehouse.support import (
    DEFINITIONS,
    FIRST_DAY,
    TABLES,
    aggregates,
    assert_matches,
    frame,
    generate,
    ingest,
    measure,
    refresh_all,
    window,
)

RUN_TIMES = {"received_at", "computed_at", "materialized_at"}  # wall-clock times of each engine's run
KEY_IDS = {"key_id"}  # labels each engine gives its own way (test_measure_keys.py)
ALL_TABLES = [
    *TABLES.values(),
    "measure_definitions",
    "intake_batches",
    "inbox",
    "raw_measures",
    "rejected_measures",
    "sealed_moments",
    "frozen_quartiles",
    "partition_materializations",
    "measure_keys",
]
EXPERIMENT_TABLES = [
    "event_batches", "events", "rejected_events", "experiment_goals", "experiment_goal_products",
    "experiment_metrics", "experiment_checks", "experiment_exposures",
]  # fmt: skip


def scenario(wh: Warehouse, folder: Path, purge_at: datetime) -> dict[str, Any]:
    """Intake (with rejects), refresh, purge, late and sealed measures, refresh: everything observable."""
    wh.sync_definitions(DEFINITIONS)
    items = generate(seed=21, n=700, first=date(2022, 1, 24), days=28)
    first, second = folder / "first.ndjson", folder / "second.json"
    first.write_text("\n".join([*map(json.dumps, items), "not json", '{"value": 1}']) + "\n", encoding="utf-8")
    late = generate(seed=22, n=150, first=date(2022, 1, 24), days=28)
    second.write_text(json.dumps(late), encoding="utf-8")
    days = list(frame(items)["day"])
    out: dict[str, Any] = {"intake": [wh.ingest_file(first, DEFINITIONS, FIRST_DAY).as_dict()]}
    for grain in TABLES:
        wh.refresh(grain, *window(grain, days))
    out["purge"] = wh.purge(30, now=purge_at)
    out["intake"].append(wh.ingest_file(second, DEFINITIONS, FIRST_DAY).as_dict())
    out["late"] = wh.late_partitions().drop(columns="last_received")
    for grain in TABLES:
        result = wh.refresh(grain, *window(grain, days))
        out[f"refresh {grain}"] = (result.rows, result.released, result.suppressed, result.preview)
        out[f"checks {grain}"] = wh.check_violations(grain, *window(grain, days))
        out[f"released {grain}"] = [wh.released(grain, d.name, *window(grain, days)) for d in DEFINITIONS]
    for table in ALL_TABLES:
        data = wh.read_table(table)
        data = data.drop(columns=[c for c in data.columns if c in RUN_TIMES | KEY_IDS])
        keys = [c for c in data.columns if data[c].dtype.kind != "f"]
        out[table] = data.sort_values(keys, kind="stable").reset_index(drop=True)
    out["loss"] = wh.loss_counts()
    return out


def assert_same(left: Any, right: Any, where: str) -> None:
    """Equal values (floats to 1e-9 relative), frames with equal dtypes."""
    if isinstance(left, pd.DataFrame):
        pd.testing.assert_frame_equal(left, right, check_exact=False, rtol=1e-9, atol=1e-9, obj=where)
    elif isinstance(left, (list, tuple)):
        assert len(left) == len(right), where
        for i, (a, b) in enumerate(zip(left, right, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(left, dict):
        assert left.keys() == right.keys(), where
        for k in left:
            assert_same(left[k], right[k], f"{where}.{k}")
    elif isinstance(left, float):
        assert left == pytest.approx(right, rel=1e-9, abs=1e-9), where
    else:
        assert left == right, where


@pytest.mark.postgres
def test_engines_give_identical_tables_and_results(tmp_path: Path, postgres_url: str) -> None:
    """The same inputs through DuckDB and PostgreSQL: every table and every result agree."""
    purge_at = utc_now() + timedelta(days=31)
    with open_warehouse(f"duckdb:///{tmp_path / 'side.duckdb'}") as duck:
        left = scenario(duck, tmp_path, purge_at)
    with open_warehouse(postgres_url) as pg:
        right = scenario(pg, tmp_path, purge_at)
    assert left["purge"] and left["intake"][1]["rejected_by_reason"].get("quartile_key_sealed")
    assert_same(left, right, "duckdb vs postgres")


def test_transaction_rolls_back_on_error(open_wh: WarehouseFactory) -> None:
    """An error inside a transaction leaves nothing behind; the connection stays usable."""
    wh = open_wh()
    wh.sync_definitions(DEFINITIONS)
    with pytest.raises(RuntimeError), wh.transaction():
        wh.stage("staged", pa.table({"x": [1, 2]}))
        wh.execute("DELETE FROM measure_definitions")
        raise RuntimeError("boom")
    assert len(wh.read_table("measure_definitions")) == len(DEFINITIONS)
    with wh.transaction():
        wh.stage("staged", pa.table({"x": [3]}))
        assert wh.fetch("SELECT x FROM staged")["x"].tolist() == [3]
    assert open_wh().read_table("measure_definitions")["name"].tolist() != []


def test_committed_data_seen_by_a_new_connection(open_wh: WarehouseFactory, tmp_path: Path) -> None:
    """Opening the warehouse again keeps its tables and rows (setup is idempotent)."""
    wh = open_wh()
    wh.sync_definitions(DEFINITIONS)
    path = tmp_path / "m.ndjson"
    path.write_text(json.dumps(measure("errors-daily", 1, "2022-01-03")) + "\n", encoding="utf-8")
    wh.ingest_file(path, DEFINITIONS, FIRST_DAY)
    again = open_wh()
    assert again.loss_counts() == (1, 1, 0)
    assert sorted(again.read_table("measure_definitions")["name"]) == sorted(d.name for d in DEFINITIONS)
    with pytest.raises(AggassetsError, match="unknown table"):
        again.read_table("pg_user; --")


# --- PostgreSQL only ---------------------------------------------------------------------------


def test_split_url_takes_our_schema_parameter_out() -> None:
    """`schema` is ours; every other query parameter goes to libpq."""
    assert split_url("postgres://u@h:5/db?schema=s1&sslmode=disable") == ("postgresql://u@h:5/db?sslmode=disable", "s1")
    assert split_url("postgresql://u@h/db") == ("postgresql://u@h/db", None)
    # the rest exactly as written: a socket URL keeps its empty host, percent-encoded options stay encoded
    assert split_url("postgresql:///db?schema=a_b%31") == ("postgresql:///db", "a_b1")
    with pytest.raises(AggassetsError, match="invalid PostgreSQL schema name 'a b'"):
        split_url("postgresql:///db?schema=a%20b")
    options = "options=-c%20statement_timeout%3D600000"
    assert split_url(f"postgresql://h/db?{options}&schema=s") == (f"postgresql://h/db?{options}", "s")


def test_a_libpq_option_in_the_url_reaches_the_server(postgres_url: str) -> None:
    with PostgresWarehouse(postgres_url + "&options=-c%20statement_timeout%3D600001") as wh:
        assert wh.fetch("SHOW statement_timeout").iloc[0, 0] == "600001ms"


def test_bad_schema_name_and_unreachable_server_are_clear_errors() -> None:
    """Neither reaches SQL: a clear AggassetsError instead."""
    with pytest.raises(AggassetsError, match="schema name"):
        PostgresWarehouse("postgresql://postgres@127.0.0.1:1/postgres", schema='x"; DROP SCHEMA public; --')
    with pytest.raises(AggassetsError, match="cannot connect"):
        open_warehouse("postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=2")


@pytest.mark.postgres
def test_schema_through_libpq_options() -> None:
    """`?options=-csearch_path%3D<schema>` puts the tables in that (existing) schema."""
    dsn = require_pg()
    schema = f"aggassets_test_opt_{datetime.now(UTC).strftime('%H%M%S%f')}"
    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    try:
        admin.cursor().execute(pgsql.SQL("CREATE SCHEMA {}").format(pgsql.Identifier(schema)))
        sep = "&" if "?" in dsn else "?"
        with open_warehouse(f"{dsn}{sep}options=-csearch_path%3D{schema}") as wh:
            tables = wh.fetch(
                "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = %(s)s", {"s": schema}
            )
            assert int(tables["n"].iloc[0]) == len(ALL_TABLES) + len(EXPERIMENT_TABLES)
    finally:
        admin.close()
        drop_schema(dsn, schema)


@pytest.mark.postgres
def test_stage_round_trips_every_value(postgres_url: str) -> None:
    """COPY staging keeps floats bit for bit, NULL apart from '', quotes, commas, newlines, dates."""
    floats = [0.1 + 0.2, 1e-300, -2.5e300, 123456789.123456789, None, 0.0]
    texts = ["plain", "", None, 'quo"te, comma\nnewline', "é 漢 \u2028", "nul\x00byte"]
    table = pa.table(
        {
            "f": pa.array(floats, pa.float64()),
            "s": texts,
            "i": [1, None, -(2**62), 0, 5, 6],
            "b": [True, False, None, True, True, False],
            "n": pa.nulls(6),
            "d": [date(2022, 1, 3), None, date(1999, 12, 31), date(2022, 1, 3), date(2022, 1, 3), date(2022, 1, 3)],
            "t": [datetime(2022, 1, 3, 4, 5, 6, 789), None, None, None, None, None],
            "k": pa.array(["a", "b", "a", "a", "b", "b"]).dictionary_encode(),
        }
    )
    with open_warehouse(postgres_url) as wh, wh.transaction():
        wh.stage("roundtrip", table)
        got = wh.fetch("SELECT * FROM roundtrip")
        assert got["f"].tolist()[:4] == floats[:4] and np.isnan(got["f"].iloc[4])
        assert [None if pd.isna(v) else v for v in got["s"]] == [*texts[:5], "nul\ufffdbyte"]
        assert got["i"].tolist()[2] == -(2**62) and pd.isna(got["i"].iloc[1])
        assert got["d"].iloc[2] == pd.Timestamp("1999-12-31") and got["t"].iloc[0] == pd.Timestamp(
            table["t"][0].as_py()
        )
        assert got["n"].isna().all() and got["k"].tolist() == ["a", "b", "a", "a", "b", "b"]
        got = wh.fetch("SELECT %(a)s::BIGINT + 1 AS a, %(b)s AS b", {"a": np.int64(2), "b": np.float64(0.5)})
        assert (got["a"].iloc[0], got["b"].iloc[0]) == (3, 0.5)


@pytest.mark.postgres
def test_writers_of_one_schema_are_serialised(postgres_url: str) -> None:
    """A write transaction holds the schema's writer lock until it ends."""
    with open_warehouse(postgres_url) as first, open_warehouse(postgres_url) as second:
        probe = "SELECT pg_try_advisory_xact_lock(hashtext('aggassets:' || current_schema())) AS free"
        with first.transaction():
            assert not bool(second.fetch(probe)["free"].iloc[0])
        assert bool(second.fetch(probe)["free"].iloc[0])


def test_a_reader_does_not_wait_for_a_writer(postgres_url: str) -> None:
    """Opening a complete warehouse and syncing an unchanged catalog write nothing: a query runs while
    another connection holds the writer lock (lock_timeout would fail it if it waited)."""
    with open_warehouse(postgres_url) as writer:
        writer.sync_definitions(DEFINITIONS)
        lock_timeout = "&options=-c%20lock_timeout%3D2000"
        # the writer holds the schema's writer lock, as a refresh does
        with writer.transaction(), open_warehouse(postgres_url + lock_timeout) as reader:
            reader.sync_definitions(DEFINITIONS)
            assert reader.released("day", "errors-daily", date(2022, 1, 1), date(2022, 2, 1), None) == []


def _random_rounds(wh: Warehouse, folder: Path, seed: int) -> dict[str, pd.DataFrame]:
    """Four rounds of intake, refresh, purge at a random age and horizon, refresh; after each purge the
    aggregates must be what they were before it. Returns the final aggregates."""
    rng = random.Random(seed)
    wh.sync_definitions(DEFINITIONS)
    days: list[date] = []
    start = utc_now()
    for round_no in range(4):
        items = generate(seed=seed * 10 + round_no, n=rng.randint(50, 400), first=date(2022, 1, 24), days=28)
        days += list(frame(items)["day"])
        ingest(wh, folder, items=items)
        refresh_all(wh, days)
        before = {grain: aggregates(wh, grain) for grain in TABLES}
        wh.purge(rng.choice([0, 1, 30, 90]), now=start + timedelta(days=rng.choice([0, 5, 40, 120, 400])))
        refresh_all(wh, days)
        for grain in TABLES:
            assert_matches(aggregates(wh, grain), before[grain])
        received, accepted, rejected = wh.loss_counts()
        assert received == accepted + rejected
    return {grain: aggregates(wh, grain) for grain in TABLES}


@pytest.mark.parametrize("seed", [1, 5])
def test_random_rounds_of_intake_and_purge_agree_on_both_engines(tmp_path: Path, postgres_url: str, seed: int) -> None:
    """Random intakes, late measures, purges and sealed keys: no purge changes a figure, and DuckDB and
    PostgreSQL end with the same aggregates."""
    with open_warehouse(f"duckdb:///{tmp_path / 'rounds.duckdb'}") as duck:
        left = _random_rounds(duck, tmp_path, seed)
        assert duck.fetch("SELECT count(*) FROM rejected_measures WHERE reason = 'quartile_key_sealed'").iloc[0, 0]
    with open_warehouse(postgres_url) as pg:
        right = _random_rounds(pg, tmp_path, seed)
    for grain in TABLES:
        assert_matches(left[grain], right[grain])
