"""Every raw row carries the integer key of its measure, createdBy and groups (measure_keys), which the
refresh groups by; warehouses from before the key ids gain them when opened."""

import json
import random
import string
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import psycopg2
import pytest

from aggassets.errors import AggassetsError
from aggassets.warehouse import duckdb_sql, open_warehouse
from aggassets.warehouse.aggregates_sql import KEY_TEXTS
from aggassets.warehouse.base import Warehouse
from aggassets.warehouse.intake_fast import fast_accepted_sql
from aggassets_tests.warehouse.engines import require_pg
from aggassets_tests.warehouse.support import (
    DEFINITIONS,
    TABLES,
    aggregates,
    assert_matches,
    expected,
    frame,
    generate,
    ingest,
    measure,
    refresh_all,
    window,
)

FIRST = date(2022, 1, 24)
DAYS = [FIRST + timedelta(days=i) for i in range(40)]
TEXTS = ["measure_name", "created_by", "group1", "group2", "group3"]


def key_tuples(rows: pd.DataFrame) -> list[tuple[str, ...]]:
    """The distinct key texts of the rows, in code point order (UTF-8 byte order)."""
    return sorted({tuple(str(v) for v in row) for row in rows[TEXTS].itertuples(index=False)})


def stored_keys(wh: Warehouse) -> dict[tuple[str, ...], int]:
    """measure_keys as {texts: key_id}, checking that no id or text tuple appears twice."""
    keys = wh.read_table("measure_keys")
    mapping = {tuple(str(v) for v in row[1:]): int(row[0]) for row in keys[["key_id", *TEXTS]].itertuples(index=False)}
    assert len(mapping) == len(keys) == keys["key_id"].nunique()
    return mapping


def assert_grains_match(wh: Warehouse, items: list[dict[str, Any]], days: list[date]) -> None:
    """Refresh every grain over the days; each equals numpy over the items."""
    windows = refresh_all(wh, days)
    for grain in TABLES:
        assert_matches(aggregates(wh, grain), expected(frame(items), grain, *windows[grain]))


def assert_raw_rows_keyed(wh: Warehouse) -> None:
    """Every raw row's key_id is the one measure_keys gives its texts."""
    keys = stored_keys(wh)
    raw = wh.read_table("raw_measures")
    assert raw["key_id"].notna().all()
    for row in raw[["key_id", *TEXTS]].itertuples(index=False):
        assert keys[tuple(str(v) for v in row[1:])] == int(row[0])


def test_every_key_keeps_one_id_across_batches(warehouse: Warehouse, tmp_path: Path) -> None:
    """One id per distinct key of the accepted items (none for items refused by validation), the same for every row of
    the key, kept when a later batch brings the key again; new keys get ids of their own."""
    warehouse.sync_definitions(DEFINITIONS)
    first = generate(seed=31, n=400, first=FIRST, days=20, names=["visits-daily", "duration-daily"])
    ingest(warehouse, tmp_path, first, lines=['{"measureName": "visits-daily"}', "not json"])
    before = stored_keys(warehouse)
    assert len(before) == len(key_tuples(frame(first)))
    assert_raw_rows_keyed(warehouse)

    second = generate(seed=32, n=300, first=FIRST, days=20, names=["duration-daily", "storage-monthly"])
    second.append(measure("errors-daily", 2, FIRST.isoformat(), "a new app"))
    ingest(warehouse, tmp_path, second)
    after = stored_keys(warehouse)
    assert len(after) == len(key_tuples(frame(first + second)))
    assert {k: after[k] for k in before} == before
    assert_raw_rows_keyed(warehouse)


def test_postgres_numbers_keys_in_byte_order(postgres_url: str, tmp_path: Path) -> None:
    """PostgreSQL gives a batch's new keys the ids after the others, in byte order of their texts."""
    with open_warehouse(postgres_url) as wh:
        wh.sync_definitions(DEFINITIONS)
        first = generate(seed=31, n=400, first=FIRST, days=20, names=["visits-daily", "duration-daily"])
        ingest(wh, tmp_path, first)
        raw = wh.read_table("raw_measures")
        first_keys = key_tuples(raw)
        assert stored_keys(wh) == {k: i for i, k in enumerate(first_keys, start=1)}
        ingest(wh, tmp_path, generate(seed=32, n=300, first=FIRST, days=20, names=["duration-daily", "errors-daily"]))
        after = wh.read_table("raw_measures")
        new_keys = [k for k in key_tuples(after[after["seq"] > raw["seq"].max()]) if k not in set(first_keys)]
        assert len(new_keys) > 1
        wanted = {k: i for i, k in enumerate(first_keys + new_keys, start=1)}
        assert stored_keys(wh) == wanted


def key_hash(*texts: str) -> int:
    """DuckDB's 63-bit hash of five key texts (the first id it gives a key)."""
    return int(duckdb.sql("SELECT (hash($1, $2, $3, $4, $5) >> 1)::BIGINT", params=list(texts)).fetchall()[0][0])


def test_duckdb_gives_a_key_whose_hash_is_taken_an_id_below_zero(tmp_path: Path) -> None:
    """A new key whose hash is already another key's id gets -1 (then -2, ...); its rows and aggregates
    stay its own."""
    with open_warehouse(f"duckdb:///{tmp_path}/w.duckdb") as wh:
        wh.sync_definitions(DEFINITIONS)
        taken = key_hash("errors-daily", "", "", "", "")
        wh.execute(f"INSERT INTO measure_keys VALUES ({taken}, 'visits-daily', 'x', 'y', 'z', '')")
        items = [measure("errors-daily", v, DAYS[0].isoformat()) for v in (1.0, 2.0, 4.0)]
        items += generate(seed=37, n=300, first=FIRST, days=10)
        ingest(wh, tmp_path, items)
        keys = stored_keys(wh)
        assert keys[("errors-daily", "", "", "", "")] == -1
        assert keys[("visits-daily", "x", "y", "z", "")] == taken
        assert_raw_rows_keyed(wh)
        assert_grains_match(wh, items, DAYS[:10])


def test_duckdb_keeps_the_id_a_key_holds_when_its_hash_differs(tmp_path: Path) -> None:
    """Texts that hold an id already (stored by a DuckDB whose hash differed) keep it: the batch's rows
    of that key are given it."""
    with open_warehouse(f"duckdb:///{tmp_path}/w.duckdb") as wh:
        wh.sync_definitions(DEFINITIONS)
        wh.execute("INSERT INTO measure_keys VALUES (12345, 'errors-daily', 'drive', '', '', '')")
        items = [measure("errors-daily", v, DAYS[1].isoformat(), "drive") for v in (3.0, 5.0)]
        items += generate(seed=38, n=300, first=FIRST, days=10)
        ingest(wh, tmp_path, items)
        assert stored_keys(wh)[("errors-daily", "drive", "", "", "")] == 12345
        assert_raw_rows_keyed(wh)
        assert_grains_match(wh, items, DAYS[:10])


def test_the_refresh_groups_by_key_ids_whatever_their_numbers(warehouse: Warehouse, tmp_path: Path) -> None:
    """Key ids are only labels: renumbered (in reverse, in both tables), every grain still equals numpy;
    and a row's key texts come from its id (a key's createdBy renamed in measure_keys alone shows there)."""
    warehouse.sync_definitions(DEFINITIONS)
    items = generate(seed=33, n=900, first=FIRST, days=40)
    ingest(warehouse, tmp_path, items)
    for table in ("measure_keys", "raw_measures"):
        warehouse.execute(f"UPDATE {table} SET key_id = 1000 - key_id")
    assert_grains_match(warehouse, items, DAYS)

    renamed = next(k for k in stored_keys(warehouse) if k[0] == "errors-daily" and k[1] == "drive")
    warehouse.execute(
        "UPDATE measure_keys SET created_by = 'renamed' WHERE measure_name = 'errors-daily' AND created_by = 'drive'"
    )
    assert len([k for k in stored_keys(warehouse) if k[1] == "renamed"]) == 1 and renamed
    windows = refresh_all(warehouse, DAYS)
    rows = frame(items)
    rows.loc[(rows["measure_name"] == "errors-daily") & (rows["created_by"] == "drive"), "created_by"] = "renamed"
    assert_matches(aggregates(warehouse, "day"), expected(rows, "day", *windows["day"]))


def test_keys_of_kilobytes_of_text(warehouse: Warehouse, tmp_path: Path) -> None:
    """Keys whose texts take several KiB (random letters, which do not compress) are stored, keyed and
    aggregated like any other, also when a warehouse from before key ids holds them."""
    warehouse.sync_definitions(DEFINITIONS)
    rng = random.Random(39)
    long_texts = ["".join(rng.choice(string.ascii_letters) for _ in range(n)) for n in (2700, 6000, 15000)]
    items = [
        measure("visits-daily", float(v), DAYS[v % 5].isoformat(), "app", group1=t, group2="os")
        for t in long_texts
        for v in range(6)
    ]
    items += [measure("errors-daily", 1.0, DAYS[0].isoformat(), long_texts[1][:255])]
    items += generate(seed=40, n=200, first=FIRST, days=5)
    result = ingest(warehouse, tmp_path, items)
    assert (result.accepted, result.rejected) == (len(items), 0)
    assert_raw_rows_keyed(warehouse)
    assert_grains_match(warehouse, items, DAYS[:5])
    warehouse.execute("ALTER TABLE raw_measures DROP COLUMN key_id")
    warehouse.execute("DROP TABLE measure_keys")
    warehouse.setup()
    assert_raw_rows_keyed(warehouse)
    assert len(stored_keys(warehouse)) == len(key_tuples(frame(items)))


def test_a_warehouse_from_before_key_ids_gains_them(warehouse: Warehouse, tmp_path: Path) -> None:
    """Opening a warehouse whose raw_measures lacks key_id (and without measure_keys) adds them, keys every
    stored row, and later batches and refreshes go on as in a new one."""
    warehouse.sync_definitions(DEFINITIONS)
    items = generate(seed=34, n=700, first=FIRST, days=40)
    ingest(warehouse, tmp_path, items)
    warehouse.execute("ALTER TABLE raw_measures DROP COLUMN key_id")
    warehouse.execute("DROP TABLE measure_keys")
    warehouse.setup()
    assert len(stored_keys(warehouse)) == len(key_tuples(frame(items)))
    assert_raw_rows_keyed(warehouse)

    late = generate(seed=35, n=200, first=FIRST, days=40)
    ingest(warehouse, tmp_path, late)
    assert_raw_rows_keyed(warehouse)
    windows = refresh_all(warehouse, DAYS)
    rows = frame(items + late)
    for grain in TABLES:
        assert_matches(aggregates(warehouse, grain), expected(rows, grain, *windows[grain]))
        assert warehouse.check_violations(grain, *window(grain, DAYS)) == dict.fromkeys(
            warehouse.check_violations(grain, *window(grain, DAYS)), 0
        )


def key_id_nullable(wh: Warehouse) -> bool:
    """Whether raw_measures.key_id may be NULL."""
    found = wh.fetch(
        "SELECT is_nullable FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = 'raw_measures' AND column_name = 'key_id'"
    )
    return found.iloc[0, 0] == "YES"


def test_a_writer_storing_no_key_id_fails_once_ids_are_required(warehouse: Warehouse, tmp_path: Path) -> None:
    """A new warehouse, and one migrated from before key ids, require a key id on every raw row: a writer
    that stores none (an older release) fails, rather than leaving rows the refresh would not see."""
    warehouse.sync_definitions(DEFINITIONS)
    ingest(warehouse, tmp_path, generate(seed=41, n=50, first=FIRST, days=5))
    old_writer = (
        "INSERT INTO raw_measures (seq, measure_name, start_date, created_by, group1, group2, group3, value, "
        "received_at) VALUES (1000000, 'errors-daily', DATE '2022-01-24', 'old', '', '', '', 1.0, "
        "TIMESTAMP '2022-02-01')"
    )
    assert not key_id_nullable(warehouse)
    with pytest.raises(Exception, match=r"(?i)null"):
        warehouse.execute(old_writer)
    warehouse.execute("ALTER TABLE raw_measures DROP COLUMN key_id")
    warehouse.setup()
    assert not key_id_nullable(warehouse)
    with pytest.raises(Exception, match=r"(?i)null"):
        warehouse.execute(old_writer)


def test_a_migration_stopped_half_way_is_finished_when_opened(warehouse: Warehouse, tmp_path: Path) -> None:
    """key_id present but nullable, some rows without one (a migration stopped before requiring ids, or
    rows of an older writer in between): opening the warehouse keys those rows and requires ids."""
    warehouse.sync_definitions(DEFINITIONS)
    items = generate(seed=42, n=400, first=FIRST, days=10)
    ingest(warehouse, tmp_path, items)
    warehouse.execute("ALTER TABLE raw_measures ALTER COLUMN key_id DROP NOT NULL")
    warehouse.execute("UPDATE raw_measures SET key_id = NULL WHERE created_by = 'drive'")
    assert key_id_nullable(warehouse)
    warehouse.setup()
    assert not key_id_nullable(warehouse)
    assert_raw_rows_keyed(warehouse)
    assert_grains_match(warehouse, items, DAYS[:10])


def test_duckdb_keys_right_under_a_hash_that_collides_all_the_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a hash of 7 values (so that keys of one batch share it, and new keys take known keys' hashes),
    every key still gets an id of its own, across batches and a migration, and the aggregates equal numpy."""
    weak = f"(hash({KEY_TEXTS}) % 7)::BIGINT"
    monkeypatch.setattr(duckdb_sql, "KEY_HASH", weak)
    monkeypatch.setattr(duckdb_sql, "INSERT_RAW_FAST", duckdb_sql._insert_raw(fast_accepted_sql(duckdb_sql._ITEMS)))
    monkeypatch.setattr(
        duckdb_sql, "INSERT_RAW_CAREFUL", duckdb_sql._insert_raw("SELECT * FROM staged WHERE reason IS NULL")
    )
    monkeypatch.setattr(
        duckdb_sql,
        "FILL_KEY_IDS",
        [f"UPDATE raw_measures SET key_id = {weak} WHERE key_id IS NULL", *duckdb_sql.BATCH_KEY_IDS],
    )
    with open_warehouse(f"duckdb:///{tmp_path}/w.duckdb") as wh:
        wh.sync_definitions(DEFINITIONS)
        batches = [generate(seed=43 + i, n=300, first=FIRST, days=10) for i in range(3)]
        careful = measure("errors-daily", 2.0, "2022-01-25", "careful")
        escaped = json.dumps(careful).replace('"2022-01-25"', '"2022-01-2\\u0035"')  # the careful path
        for n, batch in enumerate(batches):
            ingest(wh, tmp_path, batch, lines=[escaped] if n == 1 else [])
            assert_raw_rows_keyed(wh)
        keys = stored_keys(wh)
        assert len(keys) > 7 and sum(1 for i in keys.values() if i < 0) >= len(keys) - 7
        wh.execute("ALTER TABLE raw_measures DROP COLUMN key_id")
        wh.execute("DROP TABLE measure_keys")
        wh.setup()
        assert_raw_rows_keyed(wh)
        items = [i for b in batches for i in b] + [careful]
        assert_grains_match(wh, items, DAYS[:10])


def test_opening_a_keyed_warehouse_changes_no_key(warehouse: Warehouse, tmp_path: Path) -> None:
    """setup on a warehouse that has key ids leaves them as they are (no renumbering, no new rows)."""
    warehouse.sync_definitions(DEFINITIONS)
    ingest(warehouse, tmp_path, generate(seed=36, n=200, first=FIRST, days=10))
    warehouse.execute("UPDATE measure_keys SET key_id = key_id - 1000")
    warehouse.execute("UPDATE raw_measures SET key_id = key_id - 1000")
    before = (warehouse.read_table("measure_keys"), warehouse.read_table("raw_measures"))
    warehouse.setup()
    pd.testing.assert_frame_equal(warehouse.read_table("measure_keys"), before[0])
    pd.testing.assert_frame_equal(warehouse.read_table("raw_measures"), before[1])


def test_postgres_numbers_keys_differing_in_group3_only_in_byte_order(postgres_url: str, tmp_path: Path) -> None:
    """Two keys equal but for group3 ("b" then "a" in the file): byte order gives '"a"' id 1, '"b"' id 2."""
    with open_warehouse(postgres_url) as wh:
        wh.sync_definitions(DEFINITIONS)
        items = [
            measure("storage-monthly", 1.0, "2022-01-03", "app", group1="o", group2="p", group3=r) for r in ("b", "a")
        ]
        ingest(wh, tmp_path, items)
        assert stored_keys(wh) == {
            ("storage-monthly", "app", '"o"', '"p"', '"a"'): 1,
            ("storage-monthly", "app", '"o"', '"p"', '"b"'): 2,
        }


@pytest.fixture
def icu_database_url(postgres_url: str) -> Iterator[str]:
    """A URL of a new database whose default collation is ICU 'en' (a sorts before B), dropped after."""
    dsn = require_pg()
    name = "aggassets_icu_" + uuid.uuid4().hex[:8]
    con = psycopg2.connect(dsn)
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en' LOCALE 'C.UTF-8'")
    try:
        yield dsn.rsplit("/", 1)[0] + "/" + name
    finally:
        with con.cursor() as cur:
            cur.execute(f"DROP DATABASE {name} WITH (FORCE)")
        con.close()


def test_postgres_numbers_keys_in_byte_order_under_a_linguistic_collation(
    icu_database_url: str, tmp_path: Path
) -> None:
    """A database whose default collation is ICU 'en' (a < B): ids still follow byte order (B 0x42 < a 0x61)."""
    with open_warehouse(icu_database_url) as wh:
        wh.sync_definitions(DEFINITIONS)
        ingest(wh, tmp_path, [measure("errors-daily", 1.0, "2022-01-03", c) for c in ("a", "B")])
        assert stored_keys(wh) == {("errors-daily", "B", "", "", ""): 1, ("errors-daily", "a", "", "", ""): 2}


def test_duckdb_new_key_sharing_all_but_its_name_with_a_stored_key_takes_its_hash(tmp_path: Path) -> None:
    """errors-daily/drive first, latency-weekly/drive in a later batch: two keys, each with its own free
    hash as its id (no id below 0: no hash is taken)."""
    with open_warehouse(f"duckdb:///{tmp_path}/w.duckdb") as wh:
        wh.sync_definitions(DEFINITIONS)
        ingest(wh, tmp_path, [measure("errors-daily", 1.0, "2022-01-24", "drive")])
        ingest(wh, tmp_path, [measure("latency-weekly", 2.0, "2022-01-24", "drive")])
        keys = wh.read_table("measure_keys", order_by="measure_name")
        assert keys["key_id"].tolist() == [
            key_hash("errors-daily", "drive", "", "", ""),
            key_hash("latency-weekly", "drive", "", "", ""),
        ]


def test_opening_a_keyed_warehouse_runs_no_migration(warehouse: Warehouse, tmp_path: Path) -> None:
    """setup on a warehouse whose key ids are all there executes no UPDATE of raw_measures and no ALTER."""
    warehouse.sync_definitions(DEFINITIONS)
    ingest(warehouse, tmp_path, generate(seed=36, n=50, first=FIRST, days=5))
    seen: list[str] = []
    execute = warehouse.execute

    def recording(statement: str, params: Any = None) -> None:
        seen.append(statement)
        execute(statement, params)

    warehouse.execute = recording  # type: ignore[method-assign]
    warehouse.setup()
    assert not [s for s in seen if s.startswith(("UPDATE raw_measures", "ALTER TABLE raw_measures ALTER"))]


def test_read_table_refuses_a_column_name(warehouse: Warehouse) -> None:
    """key_id is a column added by an ALTER TABLE statement, not a table."""
    with pytest.raises(AggassetsError, match="unknown table 'key_id'"):
        warehouse.read_table("key_id")


def test_postgres_drops_the_unique_key_texts_constraint_of_development_versions(
    postgres_url: str, tmp_path: Path
) -> None:
    """A schema whose measure_keys has the UNIQUE constraint on its texts that development versions created
    loses it when opened: a key of 6,000 characters is then stored (a B-tree index refuses entries over
    2704 bytes, which failed the whole intake), and opening it again finds the schema complete."""
    with open_warehouse(postgres_url) as wh:
        wh.execute(
            "ALTER TABLE measure_keys ADD CONSTRAINT measure_keys_measure_name_created_by_group1_group2_group3_key "
            "UNIQUE (measure_name, created_by, group1, group2, group3)"
        )
    rng = random.Random(41)
    long_text = "".join(rng.choice(string.ascii_letters) for _ in range(6000))  # random: does not compress
    with open_warehouse(postgres_url) as wh:
        wh.sync_definitions(DEFINITIONS)
        result = ingest(
            wh, tmp_path, [measure("visits-daily", 1.0, DAYS[0].isoformat(), "app", group1=long_text, group2="os")]
        )
        assert (result.accepted, result.rejected) == (1, 0)
        assert wh._schema_complete()  # type: ignore[attr-defined]
        unique = wh.fetch(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() "
            "AND indexname LIKE 'measure_keys_measure%'"
        )
        assert int(unique.iloc[0, 0]) == 0
