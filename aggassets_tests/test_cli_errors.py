"""CLI failure paths: a warehouse that is not there, catalog errors listed together, odd arguments."""

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from aggassets.catalog import load_measures
from aggassets.cli import build_parser, main
from aggassets.errors import AggassetsError, WarehouseUnavailable
from aggassets.runs import instance_for_runs
from aggassets.warehouse import duckdb_path, open_warehouse, redacted
from aggassets.warehouse.postgres_engine import split_url
from aggassets_tests.helpers import DEFINITIONS, make_measures, write_ndjson


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process; (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "argv",
    [
        ("aggregates", "query", "--measure", "connection-count-daily", "--start", "2025-01-01", "--end", "2025-02-01"),
        ("refresh", "--start", "2025-01-01", "--end", "2025-01-02"),
        ("purge",),
    ],
)
def test_commands_that_read_refuse_a_missing_duckdb_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: tuple[str, ...]
) -> None:
    """A mistyped warehouse path is an error, not an empty answer from a new empty file."""
    missing = tmp_path / "typo" / "wh.duckdb"
    code, out, err = run(capsys, "--warehouse", f"duckdb:///{missing}", "--definitions", str(DEFINITIONS), *argv)
    assert (code, out) == (2, "") and f"no DuckDB warehouse at {missing}:" in err
    assert not missing.parent.exists()


@pytest.mark.postgres
@pytest.mark.parametrize("schema", ["a-b", "A%20b", "", "abc%0A"])
@pytest.mark.parametrize(
    "argv",
    [
        ("aggregates", "query", "--measure", "connection-count-daily", "--start", "2025-01-01", "--end", "2025-02-01"),
        ("refresh", "--start", "2025-01-01", "--end", "2025-01-02"),
        ("purge",),
        ("measures", "ingest", "MEASURES"),
    ],
)
def test_every_command_refuses_a_schema_name_that_is_not_an_identifier(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, postgres_url: str, schema: str, argv: tuple[str, ...]
) -> None:
    """The same error for every command (the reading ones said there was no warehouse in schema a-b, and an
    empty ?schema= read the connection's current schema, while ingest refused the name)."""
    measures = write_ndjson(tmp_path / "m.ndjson", make_measures(date(2025, 1, 1), 1, 3))
    url = postgres_url.rsplit("schema=", 1)[0] + "schema=" + schema
    argv = tuple(str(measures) if a == "MEASURES" else a for a in argv)
    code, out, err = run(capsys, "--warehouse", url, "--definitions", str(DEFINITIONS), *argv)
    name = schema.replace("%20", " ").replace("%0A", "\n")
    assert (code, out, err) == (2, "", f"aggassets: error: invalid PostgreSQL schema name {name!r}\n")


@pytest.mark.postgres
@pytest.mark.parametrize(
    "argv",
    [
        ("aggregates", "query", "--measure", "connection-count-daily", "--start", "2025-01-01", "--end", "2025-02-01"),
        ("refresh", "--start", "2025-01-01", "--end", "2025-01-02"),
        ("purge",),
        ("experiments", "run", "checkout-button-conversion", "--as-of", "2026-01-10"),
    ],
)
def test_commands_that_read_refuse_a_postgresql_schema_without_the_warehouse(
    capsys: pytest.CaptureFixture[str], postgres_url: str, argv: tuple[str, ...]
) -> None:
    """A mistyped ?schema= is an error, not `[]` from a schema created on the spot."""
    schema = postgres_url.rsplit("schema=", 1)[1]
    code, out, err = run(capsys, "--warehouse", postgres_url, "--definitions", str(DEFINITIONS), *argv)
    assert (code, out) == (2, "") and f"no aggassets warehouse in PostgreSQL schema {schema}:" in err
    con = psycopg2.connect(split_url(postgres_url)[0])
    try:
        with con.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %(s)s", {"s": schema})
            assert cur.fetchone() is None
    finally:
        con.close()
    open_warehouse(postgres_url).close()  # once the warehouse is there, the same command runs
    code, _, err = run(capsys, "--warehouse", postgres_url, "--definitions", str(DEFINITIONS), *argv)
    assert (code, err) == (0, "")


@pytest.mark.parametrize(
    "argv",
    [
        ("aggregates", "query", "--measure", "connection-count-daily", "--start", "2025-01-01", "--end", "2025-02-01"),
        ("measures", "ingest", "MEASURES"),
    ],
)
def test_a_schema_with_another_applications_inbox_is_refused_and_left_alone(
    capsys: pytest.CaptureFixture[str], postgres_url: str, tmp_path: Path, argv: tuple[str, ...]
) -> None:
    """Reading or ingesting into a schema whose `inbox` is another application's: one line, and not a table
    of ours created beside theirs."""
    dsn, schema = split_url(postgres_url)
    con = psycopg2.connect(dsn)
    con.autocommit = True

    def tables() -> list[str]:
        with con.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = %(s)s ORDER BY 1", {"s": schema})
            return [r[0] for r in cur.fetchall()]

    try:
        with con.cursor() as cur:
            cur.execute(f"CREATE SCHEMA {schema}")
            cur.execute(f"CREATE TABLE {schema}.inbox (id INT, subject TEXT, body TEXT)")
            cur.execute(f"CREATE TABLE {schema}.customers (id INT)")
        measures = write_ndjson(tmp_path / "m.ndjson", make_measures(date(2025, 3, 3), 1, 2))
        argv = tuple(str(measures) if a == "MEASURES" else a for a in argv)
        code, out, err = run(capsys, "--warehouse", postgres_url, "--definitions", str(DEFINITIONS), *argv)
        assert (code, out) == (2, "")
        assert f"PostgreSQL schema {schema} holds a table inbox that is not aggassets'" in err
        assert tables() == ["customers", "inbox"]
    finally:
        con.close()


def test_experiment_run_refuses_a_missing_duckdb_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "wh.duckdb"
    argv = ("experiments", "run", "checkout-button-conversion", "--as-of", "2026-01-10")
    code, _, err = run(capsys, "--warehouse", f"duckdb:///{missing}", "--definitions", str(DEFINITIONS), *argv)
    assert code == 2 and "no DuckDB warehouse at" in err and not missing.exists()


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("duckdb:///abs/x.duckdb", "/abs/x.duckdb"),
        ("duckdb:////abs/x.duckdb", "/abs/x.duckdb"),
        ("duckdb://rel/x.duckdb", "rel/x.duckdb"),
        ("duckdb:///:memory:", ":memory:"),
        ("duckdb://", ":memory:"),
        ("postgresql://postgres@127.0.0.1/db", None),
    ],
)
def test_duckdb_urls(url: str, path: str | None) -> None:
    assert duckdb_path(url) == path


QUERY = ("aggregates", "query", "--measure", "connection-count-daily", "--start", "2025-01-01", "--end", "2025-02-01")


@pytest.mark.parametrize("target", ["duckdb://", "duckdb:///:memory:", "duckdb://:memory:", "json", "csv", "query"])
@pytest.mark.parametrize(
    "argv",
    [("measures", "ingest"), QUERY, ("refresh", "--start", "2025-01-01", "--end", "2025-01-02"), ("purge",)],
)
def test_a_warehouse_url_that_would_keep_nothing_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, target: str, argv: tuple[str, ...]
) -> None:
    """In memory, a JSON or CSV file (DuckDB opens those as an in-memory database over them) or a query
    string (it would name a new file): an error, where success would have stored nothing."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "x.json").write_text('{"definitions": []}')
    (data / "x.csv").write_text("a,b\n1,2\n")
    urls = {"json": f"duckdb:///{data / 'x.json'}", "csv": f"duckdb:///{data / 'x.csv'}"}
    url = urls.get(target, f"duckdb:///{data / 'w.duckdb'}?schema=s" if target == "query" else target)
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    items = write_ndjson(tmp_path / "m.ndjson", make_measures(date(2025, 1, 1), 1, 3))
    args = (*argv, str(items)) if argv[0] == "measures" else argv
    code, out, err = run(capsys, "--warehouse", url, "--definitions", str(DEFINITIONS), *args)
    assert (code, out) == (2, "") and len(err.strip().splitlines()) == 1
    assert ("in-memory" in err) == target.startswith("duckdb:") and ("not a DuckDB database file" in err) == (
        target in urls
    )
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before


def test_catalog_validation_lists_measure_and_experiment_errors_together(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog"
    shutil.copytree(DEFINITIONS, catalog)
    measures = json.loads((catalog / "measures.json").read_text())
    measures["definitions"][0]["aggregationPeriod"] = "year"
    (catalog / "measures.json").write_text(json.dumps(measures))
    experiment = catalog / "experiments" / "product-page-layout.json"
    experiment.write_text(experiment.read_text().replace('"id": "product-page-layout"', '"id": "renamed"'))
    for argv in (("--definitions", str(catalog), "definitions", "validate"), ("definitions", "validate", str(catalog))):
        code, out, err = run(capsys, *argv)
        assert (code, out) == (2, "") and len(err.strip().splitlines()) == 1
        assert "definitions.0.aggregationPeriod" in err and "id 'renamed' must equal the file name" in err
    code, _, err = run(capsys, "definitions", "validate", str(experiment))  # the file alone: the same rule
    assert code == 2 and "id 'renamed' must equal the file name 'product-page-layout'" in err


def test_odd_arguments_are_one_line_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    same_day = ("aggregates", "query", "--measure", "connection-count-daily", "--start", "2025-01-01")
    code, out, err = run(capsys, "--definitions", str(DEFINITIONS), *same_day, "--end", "2025-01-01")
    assert (code, out) == (2, "") and "--end must be after --start" in err  # end exclusive: an empty window
    code, _, err = run(capsys, "events", "ingest", str(tmp_path / "missing.txt"))
    assert code == 2 and err.strip().endswith("missing.txt: no such file")
    for value in ("nan", "inf"):
        code, out, err = run(
            capsys, "experiments", "sample-size", "--n-variants", "2", "--minimum-effect", value, "--mean", "0.1"
        )
        assert (code, out) == (2, "") and "--minimum-effect must be a finite number" in err


def test_a_reader_that_stops_early_is_not_an_error() -> None:
    """`aggassets ... | head`: output cut short by a closed pipe exits quietly with status 0."""
    child = subprocess.Popen(
        [sys.executable, "-m", "aggassets.cli", "--definitions", str(DEFINITIONS), "definitions", "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # before the command writes
    err = child.stderr.read()
    assert child.wait(timeout=60) == 0 and err == b""


def test_loading_the_code_location_prints_no_dagster_beta_warning() -> None:
    code = "import aggassets.definitions as d; d.defs.get_repository_def()"
    done = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "BetaWarning" not in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("measure", "grain", "message"),
    [
        ("sharing-count-weekly", "day", "is aggregated by week: it has no day rows"),
        ("sharing-count-weekly", "month", "is aggregated by week: it has no month rows"),
        ("consumption-variation-monthly", "week", "is aggregated by month: it has no week rows"),
    ],
)
def test_query_at_a_grain_the_measure_has_no_rows_for(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, measure: str, grain: str, message: str
) -> None:
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    argv = ("aggregates", "query", "--measure", measure, "--start", "2025-01-01", "--end", "2025-02-01")
    code, out, err = run(capsys, "--warehouse", url, "--definitions", str(DEFINITIONS), *argv, "--grain", grain)
    assert (code, out) == (2, "") and message in err


@pytest.mark.parametrize("text", ["20250101", "2025-W01", "2025-1-01", "2025-01-01T00:00"])
def test_dates_must_be_written_yyyy_mm_dd(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["refresh", "--start", text, "--end", "2025-02-01"])
    assert exc.value.code == 2 and f"not a date (YYYY-MM-DD): '{text}'" in capsys.readouterr().err


def test_a_database_error_after_connecting_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A warehouse table changed by hand: the command fails with one line, exit 2, nothing stored."""
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    with open_warehouse(url) as wh:
        wh.execute("ALTER TABLE raw_measures DROP COLUMN received_at")
    path = write_ndjson(tmp_path / "m.ndjson", make_measures(date(2025, 3, 3), 1, 3))
    code, out, err = run(capsys, "--warehouse", url, "--definitions", str(DEFINITIONS), "measures", "ingest", str(path))
    assert (code, out) == (2, "") and err.startswith("aggassets: error: database: ") and err.count("\n") == 1
    with open_warehouse(url) as wh:
        assert wh.loss_counts() == (0, 0, 0)


def test_a_file_name_that_is_not_utf8_is_named_as_the_problem(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A Latin-1 file name: one line saying so (not a content error), exit 2, nothing stored."""
    path = Path(os.fsdecode(os.path.join(os.fsencode(tmp_path), b"caf\xe9.ndjson")))
    write_ndjson(path, make_measures(date(2025, 3, 3), 1, 2))
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    code, out, err = run(capsys, "--warehouse", url, "--definitions", str(DEFINITIONS), "measures", "ingest", str(path))
    assert (code, out) == (2, "")
    assert err.strip().endswith("caf\\xe9.ndjson: the file name is not UTF-8 text; rename the file")
    with open_warehouse(url) as wh:
        assert wh.loss_counts() == (0, 0, 0)


def test_purge_of_an_unknown_measure_is_an_error_not_an_empty_purge(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A mistyped --measure of purge is a one-line error naming it, not a purge of nothing that exits 0."""
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    measures = write_ndjson(tmp_path / "m.ndjson", make_measures(date(2025, 3, 3), 1, 2))
    assert (
        run(capsys, "--warehouse", url, "--definitions", str(DEFINITIONS), "measures", "ingest", str(measures))[0] == 0
    )
    code, out, err = run(
        capsys, "--warehouse", url, "--definitions", str(DEFINITIONS), "purge", "--days", "0", "--measure", "nope"
    )
    assert (code, out) == (2, "")
    assert "unknown measure 'nope'" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("home", "message"),
    [
        ("missing", "is not a directory or does not exist"),
        ("relative/home", "must be an absolute path"),
        ("bad-yaml", "while parsing"),
        ("bad-config", 'unexpected config entry "nonsense"'),
    ],
)
@pytest.mark.parametrize(
    "argv",
    [
        ("refresh", "--start", "2025-01-01", "--end", "2025-01-02"),
        ("experiments", "run", "checkout-button-conversion", "--as-of", "2026-01-10"),
    ],
)
def test_a_dagster_home_dagster_cannot_use_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    home: str,
    message: str,
    argv: tuple[str, ...],
) -> None:
    """Commands that record runs in DAGSTER_HOME say what is wrong with it in one line (status 2), and
    run nothing."""
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    open_warehouse(url).close()
    folder = tmp_path / home
    if home.startswith("bad"):
        folder.mkdir()
        config = "run_storage: [\n" if home == "bad-yaml" else "run_storage:\n  nonsense: 1\n"
        (folder / "dagster.yaml").write_text(config)
    monkeypatch.setenv("DAGSTER_HOME", home if home.startswith("relative") else str(folder))
    code, out, err = run(capsys, "--warehouse", url, "--definitions", str(DEFINITIONS), *argv)
    assert (code, out) == (2, "") and len(err.strip().splitlines()) == 1
    assert err.startswith("aggassets: error: DAGSTER_HOME=") and message in err


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h:5432/db?schema=s", "postgresql://u:***@h:5432/db?schema=s"),
        ("postgresql+psycopg2://u:Leaked@127.0.0.1/db", "postgresql+psycopg2://u:***@127.0.0.1/db"),
        ("postgresql://u:Pa@ss@h/db", "postgresql://u:***@h/db"),  # an unencoded '@': up to the last one
        ("postgresql://u:pa/ss@h/db", "postgresql://u:***@h/db"),  # an unencoded '/'
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("duckdb:///data/x.duckdb", "duckdb:///data/x.duckdb"),
    ],
)
def test_urls_in_messages_never_show_a_password(url: str, shown: str) -> None:
    """A run's error is kept in Dagster's event log: a URL is shown with its password replaced."""
    assert redacted(url) == shown
    if url.startswith("postgresql+"):
        with pytest.raises(AggassetsError) as exc:
            open_warehouse(url)
        assert "Leaked" not in str(exc.value) and shown in str(exc.value)


@pytest.mark.postgres
def test_connection_errors_hide_the_password_and_only_a_server_not_answering_is_retried(postgres_url: str) -> None:
    """libpq quotes pieces of a password with an unencoded '@' (as a host name): they are hidden. A role
    that does not exist fails at once (AggassetsError); a closed port is WarehouseUnavailable (runs retry)."""
    with pytest.raises(AggassetsError) as exc:
        open_warehouse("postgresql://postgres:Secret@word99@127.0.0.1:5432/postgres")
    assert "word99" not in str(exc.value) and "Secret" not in str(exc.value) and "***" in str(exc.value)
    with pytest.raises(AggassetsError) as exc:
        open_warehouse("postgresql://no_such_role_x@127.0.0.1:5432/postgres")
    assert type(exc.value) is AggassetsError and "no_such_role_x" in str(exc.value)
    refused = r"cannot connect to PostgreSQL: .* Connection refused; Is the server"  # libpq's two lines
    with pytest.raises(WarehouseUnavailable, match=refused):
        open_warehouse("postgresql://postgres@127.0.0.1:1/postgres")
    with pytest.raises(AggassetsError, match="invalid dsn") as exc:
        open_warehouse("postgresql://postgres@127.0.0.1/postgres?bogus=1")
    assert type(exc.value) is AggassetsError


@pytest.mark.parametrize("kind", ["not a database", "a folder"])
def test_a_path_that_is_not_a_duckdb_database_is_not_retried(tmp_path: Path, kind: str) -> None:
    """DuckDB raises an IOException for a file that is not a database too: that is an AggassetsError, not
    WarehouseUnavailable (which runs would retry for 10 minutes)."""
    path = tmp_path / "wh.duckdb"
    if kind == "a folder":
        path.mkdir()
    else:
        path.write_text("not a database\n" * 1000)
    with pytest.raises(AggassetsError, match="cannot open the DuckDB warehouse") as exc:
        open_warehouse(f"duckdb:///{path}")
    assert type(exc.value) is AggassetsError


@pytest.mark.postgres
def test_a_dagster_home_whose_postgresql_storage_does_not_answer_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str
) -> None:
    """deploy/dagster.production.yaml with its storage's port wrong: one line naming DAGSTER_HOME (status 2),
    not Dagster's traceback."""
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    open_warehouse(url).close()
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(DEFINITIONS.parent / "deploy" / "dagster.production.yaml", home / "dagster.yaml")
    settings = {"HOST": "127.0.0.1", "PORT": "1", "USER": "postgres", "PASSWORD": "x", "DB": "postgres"}
    for name, value in settings.items():
        monkeypatch.setenv(f"DAGSTER_PG_{name}", value)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    argv = ("refresh", "--start", "2025-01-01", "--end", "2025-01-02")
    # a real process: dagster-postgres logs each retry on the root logger, which pytest would capture
    command = [sys.executable, "-m", "aggassets.cli", "--warehouse", url, "--definitions", str(DEFINITIONS), *argv]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert (done.returncode, done.stdout) == (2, "") and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"aggassets: error: DAGSTER_HOME={home}: ")
    assert "port 1 failed: Connection refused" in done.stderr
    monkeypatch.delenv("DAGSTER_PG_PASSWORD")  # dagster.yaml reads it before connecting
    code, out, err = run(capsys, "--warehouse", url, "--definitions", str(DEFINITIONS), *argv)
    assert (code, out) == (2, "") and len(err.strip().splitlines()) == 1
    assert err == (
        f"aggassets: error: DAGSTER_HOME={home}: You have attempted to fetch the environment variable "
        '"DAGSTER_PG_PASSWORD" which is not set.'
        " In order for this execution to succeed it must be set in this environment.\n"
    )


def test_probing_the_dagster_home_leaves_the_root_loggers_handlers_as_they_were(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The null handler that keeps dagster-postgres' retry warnings quiet is removed after the probe: later
    warnings of loggers without handlers of their own still reach logging's defaults."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((DEFINITIONS.parent / "deploy" / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    before = list(logging.root.handlers)
    with instance_for_runs():
        assert logging.root.handlers == before


WINDOW = ("--start", "2025-01-01", "--end", "2025-01-02")


@pytest.mark.parametrize(
    ("text", "argv"),
    [
        *[(text, ("refresh", "--start", "2025-01-01", "--end", "2025-01-02")) for text in ("nonsense", "20260101")],
        *[(text, ("measures", "ingest", "MEASURES")) for text in ("nonsense", "2026-13-01")],
        # commands that do not use the partitions refuse it too (they printed [] and purged before)
        ("2026-13-01", ("aggregates", "query", "--measure", "connection-count-daily", *WINDOW)),
        ("bogus", ("purge",)),
    ],
)
def test_a_partitions_start_that_is_not_a_date_is_a_one_line_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    argv: tuple[str, ...],
) -> None:
    """AGGASSETS_PARTITIONS_START not a YYYY-MM-DD date: status 2 and one line naming it, nothing stored (a
    process of its own: the partitions are built from the variable when first imported)."""
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    open_warehouse(url).close()
    measures = write_ndjson(tmp_path / "m.ndjson", make_measures(date(2025, 1, 1), 1, 3))
    monkeypatch.setenv("AGGASSETS_PARTITIONS_START", text)
    argv = tuple(str(measures) if a == "MEASURES" else a for a in argv)
    command = [sys.executable, "-m", "aggassets.cli", "--warehouse", url, "--definitions", str(DEFINITIONS), *argv]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"aggassets: error: AGGASSETS_PARTITIONS_START={text!r} is not a valid YYYY-MM-DD date\n"
    with open_warehouse(url) as wh:
        assert wh.read_table("inbox").empty


@pytest.mark.postgres
def test_a_server_lost_inside_a_transaction_raises_its_own_error(postgres_url: str) -> None:
    """The backend terminated mid-transaction: the error says the connection was lost, with the server's
    words, not psycopg2's 'connection already closed' from the ROLLBACK that cannot be sent."""
    wh = open_warehouse(postgres_url)
    pid = int(wh.fetch("SELECT pg_backend_pid() AS pid")["pid"].iloc[0])
    admin = psycopg2.connect(split_url(postgres_url)[0])
    admin.autocommit = True
    try:
        lost = r"connection to PostgreSQL was lost in the middle of a write \((terminat|server closed the connection)"
        with pytest.raises(WarehouseUnavailable, match=lost) as raised, wh.transaction():
            with admin.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
            wh.execute("SELECT 1")
        assert isinstance(raised.value.__cause__, psycopg2.OperationalError)
    finally:
        admin.close()
        wh.close()


def query_argv(start: str, end: str) -> tuple[str, ...]:
    """`aggregates query` of connection-count-daily over [start, end)."""
    return ("aggregates", "query", "--measure", "connection-count-daily", "--start", start, "--end", end)


@contextlib.contextmanager
def login_role(postgres_url: str, prefix: str) -> Iterator[tuple[Any, str]]:
    """A new login role without any privilege (an admin connection to grant it some), dropped afterwards."""
    role = f"{prefix}_{os.getpid()}"
    admin = psycopg2.connect(split_url(postgres_url)[0])
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE ROLE "{role}" LOGIN')
        yield admin, role
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP OWNED BY "{role}"')
            cur.execute(f'DROP ROLE "{role}"')
        admin.close()


@pytest.mark.postgres
def test_a_role_without_select_is_told_so_not_that_there_is_no_warehouse(
    capsys: pytest.CaptureFixture[str], postgres_url: str
) -> None:
    """A read-only role before its grants: PostgreSQL's permission error (README's grants), not 'no aggassets
    warehouse: ingest measures first'; with SELECT granted it reads (the catalog synced by the owner)."""
    with open_warehouse(postgres_url) as wh:
        wh.sync_definitions(load_measures(DEFINITIONS).measures)
    schema = split_url(postgres_url)[1]
    with login_role(postgres_url, "aggassets_ro") as (admin, role):
        with admin.cursor() as cur:
            cur.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        url = postgres_url.replace("postgresql://postgres@", f"postgresql://{role}@", 1)
        assert url != postgres_url
        query = query_argv("2025-01-01", "2025-02-01")
        code, out, err = run(capsys, "--warehouse", url, "--definitions", str(DEFINITIONS), *query)
        assert (code, out) == (2, "") and "permission denied for table" in err and "no aggassets warehouse" not in err
        with admin.cursor() as cur:
            cur.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
        result = run(capsys, "--warehouse", url, "--definitions", str(DEFINITIONS), *query)
        assert result == (0, "[]\n", ""), result[2]


@pytest.mark.postgres
def test_a_missing_schema_a_role_may_not_create_is_named(
    capsys: pytest.CaptureFixture[str], postgres_url: str, tmp_path: Path
) -> None:
    """A role without CREATE on the database and a mistyped ?schema=: the error names the schema and the
    likely mistake (it said only `permission denied for database ...`)."""
    dsn = split_url(postgres_url)[0]
    with login_role(postgres_url, "aggassets_nocreate") as (_, role):
        url = dsn.replace("postgresql://postgres@", f"postgresql://{role}@", 1) + "?schema=AggProdTypo"
        assert role in url
        path = write_ndjson(tmp_path / "m.ndjson", make_measures(date(2025, 3, 3), 1, 2))
        code, out, err = run(capsys, "--warehouse", url, "measures", "ingest", str(path))
        assert (code, out) == (2, "") and len(err.splitlines()) == 1
        assert "PostgreSQL schema AggProdTypo does not exist, and this role may not create it" in err
        assert "permission denied for database" in err and "check the URL's ?schema=" in err


def test_every_command_describes_itself_in_its_help() -> None:
    """`aggassets GROUP COMMAND --help` opens with what the command does, for every command (the
    experiments commands had none); the events command names every format it reads."""
    import argparse

    def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], str]]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return [(path, parser.description or "")]
        return [leaf for name, child in subs[0].choices.items() for leaf in leaves(child, (*path, name))]

    commands = dict(leaves(build_parser(), ()))
    assert len(commands) >= 10 and ("experiments", "run") in commands
    assert [c for c, description in commands.items() if not description.strip()] == []
    assert "JSON" in commands[("events", "ingest")].replace("NDJSON", "")


def test_a_password_with_an_unencoded_at_sign_is_named_as_such(capsys: pytest.CaptureFixture[str]) -> None:
    """libpq reads `postgresql://nobody:pa@ss@host/db` as host `ss@host` (`could not translate host name`):
    the error says to percent-encode, without showing the password; encoded, the URL is taken as written."""
    code, out, err = run(capsys, "--warehouse", "postgresql://nobody:pa@ss@127.0.0.1:1/x", "purge")
    assert (code, out) == (2, "") and len(err.splitlines()) == 1
    assert "percent-encode it (@ is %40" in err and "pa@ss" not in err
    assert split_url("postgresql://nobody:pa%40ss@127.0.0.1:1/x?schema=s") == (
        "postgresql://nobody:pa%40ss@127.0.0.1:1/x",
        "s",
    )


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://nobody:S3cretPart/more@127.0.0.1:1/x",  # libpq: port 'S3cretPart' of host 'nobody'
        "postgresql://nobody:Pa@ss:w/rd%1&x@127.0.0.1:1/x",
    ],
)
def test_a_password_with_an_unencoded_slash_is_named_as_such(capsys: pytest.CaptureFixture[str], url: str) -> None:
    """README (Secrets): a password shows as *** in errors; with an unencoded '/', libpq read part of it as a
    port and quoted it (`invalid integer value "S3cretPart" for connection option "port"`)."""
    code, out, err = run(capsys, "--warehouse", url, "purge")
    assert (code, out) == (2, "") and len(err.splitlines()) == 1
    assert "percent-encode it" in err and "/ is %2F" in err
    assert not any(piece in err for piece in ("S3cret", "Part", "more", "Pa@", "rd%", "w/rd"))
    for valid in (
        "postgresql://u:pw@db.internal:5432/my@db",
        "postgresql://u:pw@[::1]:5432/db",
        "postgresql://u@h1:5432,h2/d",
    ):
        assert split_url(valid) == (valid, None)


def test_the_default_duckdb_file_is_refused_in_a_production_environment(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An environment file whose URL held an unquoted `&` leaves AGGASSETS_WAREHOUSE unset: with DAGSTER_PG_HOST
    set, the project's DuckDB file is not taken by default (one line, no file created); named, it is."""
    monkeypatch.setattr("aggassets.settings.PROJECT_ROOT", tmp_path)
    monkeypatch.setenv("AGGASSETS_DEFINITIONS", str(DEFINITIONS))
    monkeypatch.delenv("AGGASSETS_WAREHOUSE", raising=False)
    monkeypatch.setenv("DAGSTER_PG_HOST", "db.internal")
    path = write_ndjson(tmp_path / "m.ndjson", make_measures(date(2025, 3, 3), 1, 2))
    default = tmp_path / "data" / "aggassets.duckdb"
    query = query_argv("2025-03-01", "2025-04-01")
    for argv in (("measures", "ingest", str(path)), query):
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, argv
        assert "AGGASSETS_WAREHOUSE is not set, though DAGSTER_PG_HOST is" in err and str(default) in err
    assert not default.exists()
    with pytest.raises(AggassetsError, match="AGGASSETS_WAREHOUSE is not set"):
        open_warehouse(f"duckdb:///{default}")  # the code location's runs and sensors open it this way
    monkeypatch.setenv("AGGASSETS_WAREHOUSE", f"duckdb:///{default}")
    code, _, _ = run(capsys, "measures", "ingest", str(path))
    assert code == 0 and default.exists()


@pytest.mark.parametrize(
    ("argv", "prog"),
    [
        (("experiments", "run", "checkout-button-conversion", "--as-of", "26-10-2026"), "aggassets experiments run"),
        (("experiments", "evaluate", "--experiment", "e.json", "--goals", "g.csv", "--as-of", "2020/01/01"),
         "aggassets experiments evaluate"),
    ],
)  # fmt: skip
def test_a_malformed_as_of_is_named_with_its_command(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], prog: str
) -> None:
    """README: a malformed argument is `aggassets COMMAND: error: ...`, for --as-of as for --start."""
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        exc.value.code == 2
        and err == f"{prog}: error: argument --as-of: not a date (YYYY-MM-DD): '{argv[-1]}' (see {prog} --help)"
    )


def test_an_unknown_option_before_the_command_is_the_top_levels(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--bogus", "definitions", "list"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exc.value.code == 2 and err == "aggassets: error: unrecognized arguments: --bogus (see aggassets --help)"


def test_an_unknown_option_is_named_with_its_command(capsys: pytest.CaptureFixture[str]) -> None:
    """An option given after the command that only the top level takes (or none does) names that command."""
    argv = ["aggregates", "query", "--measure", "m", "--start", "2025-01-01", "--end", "2025-02-01", "--warehouse", "x"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exc.value.code == 2 and err == (
        "aggassets aggregates query: error: unrecognized arguments: --warehouse x "
        "(see aggassets aggregates query --help)"
    )


def test_validating_a_folder_of_experiments_validates_them(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`definitions validate definitions/experiments` checks those experiments (not a measures.json never
    named); a folder with neither is named as such."""
    code, out, _ = run(capsys, "definitions", "validate", str(DEFINITIONS / "experiments"))
    expected = sorted(p.stem for p in (DEFINITIONS / "experiments").glob("*.json"))
    assert code == 0 and json.loads(out) == {
        "folder": str(DEFINITIONS / "experiments"), "valid": True, "experiments": expected
    }  # fmt: skip
    folder = tmp_path / "experiments"
    shutil.copytree(DEFINITIONS / "experiments", folder)
    (folder / "product-page-layout.json").write_text('{"id": "product-page-layout"}')
    code, out, err = run(capsys, "definitions", "validate", str(folder))
    assert (code, out) == (2, "") and "product-page-layout.json: control_variant: Field required" in err
    (tmp_path / "misnamed").mkdir()  # a catalog whose measures file is misnamed is not a folder of experiments
    shutil.copy(DEFINITIONS / "measures.json", tmp_path / "misnamed" / "measure.json")
    code, out, err = run(capsys, "definitions", "validate", str(tmp_path / "misnamed"))
    assert (code, out) == (2, "") and f"{tmp_path / 'misnamed' / 'measures.json'}: No such file" in err
    (tmp_path / "empty").mkdir()
    code, out, err = run(capsys, "definitions", "validate", str(tmp_path / "empty"))
    assert (code, out) == (2, "")
    assert (
        err.strip() == f"aggassets: error: cannot read definitions file {tmp_path / 'empty' / 'measures.json'}: "
        "No such file or directory"
    )


def test_a_warehouse_path_under_a_file_is_named_as_the_problem(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A DuckDB path whose folder is a file: the error names the warehouse and its folder, not `[Errno 17]`."""
    (tmp_path / "wh.duckdb").write_text("")
    measures = write_ndjson(tmp_path / "m.ndjson", make_measures(date(2025, 1, 1), 1, 3))
    url = f"duckdb:///{tmp_path / 'wh.duckdb' / 'x.duckdb'}"
    code, out, err = run(
        capsys, "--warehouse", url, "--definitions", str(DEFINITIONS), "measures", "ingest", str(measures)
    )
    assert (code, out) == (2, "")
    assert err.strip() == (
        f"aggassets: error: cannot open the DuckDB warehouse {tmp_path / 'wh.duckdb' / 'x.duckdb'}: "
        f"cannot create its folder {tmp_path / 'wh.duckdb'}: File exists"
    )


@pytest.mark.parametrize(("name", "kind"), [("measures.json", "definitions"), ("experiments/deep.json", "experiment")])
def test_a_catalog_file_nested_thousands_deep_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, kind: str
) -> None:
    """Python's JSON decoder recurses: 100k nested arrays were a RecursionError traceback, exit 1."""
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[" * 100_000 + "]" * 100_000)
    code, out, err = run(capsys, "definitions", "validate", str(path))
    assert (code, out, err) == (
        2,
        "",
        f"aggassets: error: cannot read {kind} file {path}: its JSON is nested too deeply\n",
    )


def test_control_characters_quoted_from_a_file_are_escaped_in_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An events file whose header holds terminal escapes: the error line shows them escaped, so that it
    cannot retitle or clear the terminal."""
    path = tmp_path / "e.ndjson"
    path.write_text(json.dumps({"\x1b]0;PWNED\x07\x1b[2J": 1}) + "\n")
    code, out, err = run(capsys, "--warehouse", f"duckdb:///{tmp_path / 'wh.duckdb'}", "events", "ingest", str(path))
    assert (code, out) == (2, "") and "\\x1b]0;PWNED\\x07\\x1b[2J" in err
    assert not [c for c in err[:-1] if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0] and err.endswith("\n")
    code, _, err = run(capsys, "measures", "ingest", str(tmp_path / "no\tsuch é😀.json"))  # a tab is harmless
    assert code == 2 and err == f"aggassets: error: {tmp_path / 'no	such é😀.json'}: no such file\n"


@pytest.mark.parametrize(
    "interruption",
    [
        KeyboardInterrupt,  # Ctrl-C while Python runs (Dagster's instance set-up, say): a 50-line traceback
        # DuckDB's Python client turns Ctrl-C during a query into this (seen on `measures ingest` of a large
        # file): an 18-line traceback and exit 1
        lambda: RuntimeError("Query interrupted"),
    ],
)
def test_ctrl_c_is_one_line_and_exit_130(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, interruption: Any
) -> None:
    def interrupted(args: Any) -> int:
        raise interruption()

    monkeypatch.setattr("aggassets.cli.cmd_definitions_list", interrupted)
    try:
        code, out, err = run(capsys, "--definitions", str(DEFINITIONS), "definitions", "list")
    except KeyboardInterrupt:  # left alone, it would stop the whole test session
        pytest.fail("Ctrl-C went through main() as a traceback")
    assert (code, out, err) == (130, "", "aggassets: interrupted (what was being written is rolled back)\n")


def test_other_runtime_errors_are_not_taken_for_ctrl_c(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(args: Any) -> int:
        raise RuntimeError("something else")

    monkeypatch.setattr("aggassets.cli.cmd_definitions_list", failing)
    with pytest.raises(RuntimeError, match="something else"):
        main(["--definitions", str(DEFINITIONS), "definitions", "list"])


# A command that prints more than one pipe write, then works on (closing the warehouse) before it returns.
_PRINTS_THEN_WORKS = """
import sys, time
from aggassets import cli

def query(args):
    cli._print([{"measureName": "m", "count": i} for i in range(400)])
    time.sleep(1)
    return 0

cli.cmd_definitions_list = query
sys.exit(cli.main(["--definitions", sys.argv[1], "definitions", "list"]))
"""


def test_a_reader_that_stops_early_ends_the_command_quietly() -> None:
    """`aggassets aggregates query ... | head -c 600`: the reader left while the rest of the output was still
    buffered, so it failed at exit: Python's 'Exception ignored ... BrokenPipeError' and status 120."""
    command = [sys.executable, "-c", _PRINTS_THEN_WORKS, str(DEFINITIONS)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout buffered, as by default
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as process:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.read(600)  # then the reader stops, as `head -c 600` does
        process.stdout.close()
        err = process.stderr.read()
        assert process.wait(timeout=120) == 0
    assert err == b""
