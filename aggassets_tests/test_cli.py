"""The `aggassets` command: JSON on stdout, one-line errors and a non-zero exit on bad input."""

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
from dagster import DagsterEvent, DagsterEventType, DagsterInstance, DagsterRunStatus, partition_loading_context

from aggassets.catalog import load_measures
from aggassets.cli import main
from aggassets.definitions import defs
from aggassets.runs import CLI_PROCESS_TAG, cli_run_tags
from aggassets.sources.inbox import process_file
from aggassets.warehouse import duckdb_engine, open_warehouse
from aggassets_tests.helpers import DEFINITIONS, make_measures, write_ndjson


def run(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process; (exit code, stdout, stderr)."""
    code = main(["--warehouse", url, "--definitions", str(DEFINITIONS), *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def url(tmp_path: Path) -> str:
    """The URL of a fresh, empty DuckDB warehouse (its tables created)."""
    address = f"duckdb:///{tmp_path / 'cli.duckdb'}"
    open_warehouse(address).close()
    return address


def test_ingest_refresh_query_purge(capsys: pytest.CaptureFixture[str], url: str, tmp_path: Path) -> None:
    rows = make_measures(date(2025, 3, 3), 3, 10)
    errors = [
        {"measureName": "error-count-daily", "value": v, "startDate": "2025-03-04", "group1": {"app": "drive"},
         "group2": {"error_code": "E1"}}
        for v in (1, 2, 3, 4)
    ]  # fmt: skip
    path = write_ndjson(tmp_path / "m.ndjson", rows + errors, ("nope", '{"measureName": "x", "value": 1}'))
    code, out, _ = run(capsys, url, "measures", "ingest", str(path))
    assert code == 0
    assert json.loads(out) == {
        "received": 66,
        "accepted": 64,
        "rejected": 2,
        "rejected_by_reason": {"invalid_json": 1, "unknown_measure": 1},
    }
    code, out, _ = run(capsys, url, "refresh", "--start", "2025-03-03", "--end", "2025-03-06")
    assert code == 0
    assert [r["grain"] for r in json.loads(out)] == ["day", "week", "month"]
    code, out, _ = run(
        capsys,
        url,
        "aggregates",
        "query",
        "--measure",
        "connection-count-daily",
        "--start",
        "2025-03-03",
        "--end",
        "2025-03-05",
    )
    released = json.loads(out)
    expected = {}
    for r in rows:
        if r["measureName"] == "connection-count-daily" and r["startDate"] < "2025-03-05":
            expected.setdefault((r["startDate"], r["group1"]["device"]), []).append(r["value"])
    expected = {k: v for k, v in expected.items() if len(v) >= 5}  # the measure's threshold is 5
    assert [(r["startDate"][:10], r["group1"]["device"]) for r in released] == sorted(expected)
    for r in released:
        values = np.array(expected[(r["startDate"][:10], r["group1"]["device"])])
        assert r["count"] == len(values) and r["sum"] == pytest.approx(values.sum())
        assert r["std"] == pytest.approx(values.std(ddof=1))
    code, out, _ = run(capsys, url, "aggregates", "query", "--measure", "connection-count-daily",
                       "--start", "2025-03-03", "--end", "2025-03-10", "--grain", "week")  # fmt: skip
    week = {d: [r["value"] for r in rows if r["measureName"] == "connection-count-daily" and r["group1"]["device"] == d]
            for d in ("desktop", "mobile")}  # fmt: skip
    assert code == 0 and [
        (r["startDate"][:10], r["group1"]["device"], r["count"], r["sum"]) for r in json.loads(out)
    ] == [("2025-03-03", d, len(v), pytest.approx(sum(v))) for d, v in sorted(week.items())]
    code, out, _ = run(capsys, url, "purge", "--days", "0", "--measure", "connection-count-daily")
    assert code == 0 and json.loads(out)["purged"] == 30  # 3 days x 10; error-count-daily is left
    assert json.loads(out)["by_measure"] == {"connection-count-daily": 30}
    code, out, _ = run(capsys, url, "purge", "--days", "0")  # session-duration-daily keeps its quartile rows
    assert code == 0 and json.loads(out)["by_measure"] == {"error-count-daily": 4}


def test_purge_without_days_purges_what_was_received_more_than_90_days_ago(
    capsys: pytest.CaptureFixture[str], url: str, tmp_path: Path
) -> None:
    """DACC's default: measures received 91 days ago are purged, 89 days ago kept (receive times moved back)."""
    rows = [r for r in make_measures(date(2025, 3, 3), 2, 10) if r["measureName"] == "connection-count-daily"]
    assert run(capsys, url, "measures", "ingest", str(write_ndjson(tmp_path / "m.ndjson", rows)))[0] == 0
    assert run(capsys, url, "refresh", "--start", "2025-03-03", "--end", "2025-03-05")[0] == 0
    with open_warehouse(url) as wh:
        for day, age in (("2025-03-03", 91), ("2025-03-04", 89)):
            wh.execute(
                f"UPDATE raw_measures SET received_at = received_at - INTERVAL {age} DAY WHERE start_date = '{day}'"
            )
    code, out, _ = run(capsys, url, "purge")
    old = sum(r["startDate"] == "2025-03-03" for r in rows)
    assert code == 0 and json.loads(out) == {"purged": old, "by_measure": {"connection-count-daily": old}}
    with open_warehouse(url) as wh:
        left = wh.read_table("raw_measures")
    assert len(left) == len(rows) - old and {str(d)[:10] for d in left["start_date"]} == {"2025-03-04"}


def test_query_defaults_to_the_measures_period_and_filters_by_created_by(
    capsys: pytest.CaptureFixture[str], url: str, tmp_path: Path
) -> None:
    """A week measure without --grain answers its weeks; --created-by keeps one application's rows."""
    apps = {"drive": 6, "photos": 7}  # threshold 5: both released
    rows = [
        {"measureName": "sharing-count-weekly", "value": i, "startDate": "2025-03-05", "createdBy": app,
         "group1": {"sharing_type": "link"}}
        for app, n in apps.items() for i in range(n)
    ]  # fmt: skip
    assert run(capsys, url, "measures", "ingest", str(write_ndjson(tmp_path / "w.ndjson", rows)))[0] == 0
    assert run(capsys, url, "refresh", "--start", "2025-03-03", "--end", "2025-03-10")[0] == 0
    window = (
        "aggregates",
        "query",
        "--measure",
        "sharing-count-weekly",
        "--start",
        "2025-03-01",
        "--end",
        "2025-04-01",
    )
    code, out, _ = run(capsys, url, *window)
    got = [(r["startDate"], r.get("createdBy"), r["count"], r["sum"]) for r in json.loads(out)]
    assert code == 0 and sorted(got) == [
        ("2025-03-03T00:00:00", app, n, float(sum(range(n)))) for app, n in sorted(apps.items())
    ]
    code, out, _ = run(capsys, url, *window, "--created-by", "photos")
    assert code == 0 and [(r["createdBy"], r["count"]) for r in json.loads(out)] == [("photos", 7)]


def test_a_file_is_ingested_once_unless_again(capsys: pytest.CaptureFixture[str], url: str, tmp_path: Path) -> None:
    """Ingesting the same content twice (re-run, copy, or twice in one command) is refused before anything is
    stored; --again ingests it once more; the inbox then skips that content too."""
    rows_a, rows_b = make_measures(date(2025, 3, 3), 1, 5), make_measures(date(2025, 3, 4), 1, 5, seed=2)
    first, other = write_ndjson(tmp_path / "a.ndjson", rows_a), write_ndjson(tmp_path / "b.ndjson", rows_b)
    assert run(capsys, url, "measures", "ingest", str(first))[0] == 0
    copy = tmp_path / "copy.ndjson"
    copy.write_bytes(first.read_bytes())
    for argv in ([str(other), str(copy)], [str(first)], [str(other), str(other)]):
        code, out, err = run(capsys, url, "measures", "ingest", *argv)
        assert code != 0 and out == "" and len(err.strip().splitlines()) == 1 and "--again" in err
        twice = len(set(argv)) < len(argv)  # the second of the same file given twice is named as such, not as stored
        assert ("same content as" in err) == twice and ("ingested already" in err) != twice
    code, out, _ = run(capsys, url, "measures", "ingest", "--again", str(copy), str(other))
    assert code == 0 and json.loads(out)["received"] == len(rows_a) + len(rows_b)
    with open_warehouse(url) as wh:
        n = 2 * len(rows_a) + len(rows_b)
        assert wh.loss_counts() == (n, n, 0)
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        dropped = inbox / "again.ndjson"
        dropped.write_bytes(other.read_bytes())
        assert process_file(wh, dropped, load_measures(DEFINITIONS), date(2020, 1, 1))["status"] == "already_ingested"


def test_a_bad_file_among_several_names_the_files_stored_before_it(
    capsys: pytest.CaptureFixture[str], url: str, tmp_path: Path
) -> None:
    """Each file is its own batch: when one is unreadable, the one-line error names the files already stored."""
    good = write_ndjson(tmp_path / "good.ndjson", make_measures(date(2025, 3, 3), 1, 5))
    bad = tmp_path / "bad.ndjson"
    bad.write_bytes(b'{"measureName": "x\xff"}\n')
    code, out, err = run(capsys, url, "measures", "ingest", str(good), str(bad))
    assert code != 0 and out == "" and len(err.strip().splitlines()) == 1
    assert "not UTF-8" in err and f"stored before it: {good}" in err
    with open_warehouse(url) as wh:
        received = wh.loss_counts()[0]
    assert received == len(good.read_text().splitlines())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ("aggregates", "query", "--measure", "nope", "--start", "2025-01-01", "--end", "2025-01-02"),
            "unknown measure",
        ),
        (
            (
                "aggregates",
                "query",
                "--measure",
                "connection-count-daily",
                "--start",
                "2025-01-02",
                "--end",
                "2025-01-01",
            ),
            "--end must be after --start",
        ),
        (("measures", "ingest", "/does/not/exist.json"), "no such file"),
        (("measures", "ingest", "/"), "a directory, not a file"),
        (("measures", "ingest", "/dev/null"), "/dev/null: not a regular file"),  # it said "no such file"
        # Linux: reading /proc/self/mem at offset 0 fails with EIO, an OSError that names no file
        (("measures", "ingest", "/proc/self/mem"), "/proc/self/mem: cannot read: Input/output error"),
        # /proc/version holds text but its size reads as 0: it was stored as an empty batch, its content as seen
        (("measures", "ingest", "/proc/version"), "/proc/version: its size reads as 0 but it holds data"),
        (("purge", "--measure", "nope"), "unknown measure"),
        (("refresh", "--start", "2025-01-05", "--end", "2025-01-01"), "must be after"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(
    capsys: pytest.CaptureFixture[str], url: str, argv: tuple[str, ...], message: str
) -> None:
    code, out, err = run(capsys, url, *argv)
    assert code != 0 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("aggregates", "query", "--measure", "x", "--start", "2025-13-01", "--end", "2025-01-01"), "not a date"),
        (("aggregates", "query", "--start", "2025-01-01", "--end", "2025-01-02"), "--measure"),
        (
            (
                "aggregates",
                "query",
                "--measure",
                "x",
                "--start",
                "2025-01-01",
                "--end",
                "2025-01-02",
                "--grain",
                "year",
            ),
            "invalid choice",
        ),
        (
            ("purge", "--days", "many"),
            "aggassets purge: error: argument --days: not a whole number of days >= 0: 'many'",
        ),
        (("purge", "--days", "-1"), "aggassets purge: error: argument --days: not a whole number of days >= 0: '-1'"),
        (("purge", "--days", "1.5"), "aggassets purge: error: argument --days: not a whole number of days >= 0: '1.5'"),
        (("frobnicate",), "invalid choice"),
        ((), "required"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], url: str, argv: tuple[str, ...], message: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        run(capsys, url, *argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("aggassets") and ": error: " in err and message in err


def test_every_option_and_argument_of_every_command_says_what_it_is() -> None:
    """`--help` of each command explains each of its arguments (dates say inclusive / exclusive)."""
    import argparse

    from aggassets.cli import build_parser

    def commands(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
        yield path, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from commands(sub, f"{path} {name}")

    found = {}
    for path, parser in commands(build_parser(), "aggassets"):
        for action in parser._actions:
            if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                found[f"{path} {action.dest}"] = action.help
    assert len(found) > 20 and [k for k, v in found.items() if not v] == []
    assert "exclusive" in found["aggassets aggregates query end"] and "inclusive" in found["aggassets refresh start"]


def test_definitions_validate_and_list(capsys: pytest.CaptureFixture[str], url: str, tmp_path: Path) -> None:
    code, out, _ = run(capsys, url, "definitions", "validate")
    assert code == 0 and json.loads(out)["measures"] >= 8
    assert json.loads(out)["experiments"] == sorted(p.stem for p in (DEFINITIONS / "experiments").glob("*.json"))
    one = DEFINITIONS / "experiments" / "product-page-layout.json"
    code, out, _ = run(capsys, url, "definitions", "validate", str(one))
    assert code == 0 and json.loads(out) == {"file": str(one), "valid": True, "experiment": "product-page-layout"}
    (tmp_path / "experiments").mkdir()
    wrong = tmp_path / "experiments" / "x.json"
    wrong.write_text(
        json.dumps(
            {
                "id": "x",
                "control_variant": "a",
                "unit_type": "u",
                "metrics": [
                    {"id": 1, "name": "m", "nominator": "count(u.unit.g) *", "denominator": "count(u.global.exposure)"}
                ],
                "filters": [{"scope": "trigger"}],
            }
        )
    )
    code, out, err = run(capsys, url, "definitions", "validate", str(wrong))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "metrics.0.nominator" in err and "filters.0" in err
    code, out, _ = run(capsys, url, "definitions", "list")
    listed = json.loads(out)
    assert {m["aggregationPeriod"] for m in listed} == {"day", "week", "month"}
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "definitions": [
                    {"name": "a", "aggregationPeriod": "year"},
                    {"name": "a", "aggregationPeriod": "day", "aggregationThreshold": "x"},
                    {"aggregationPeriod": "day", "group2Key": "k"},
                ]
            }
        )
    )
    code, out, err = run(capsys, url, "definitions", "validate", str(bad))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    for location in ("definitions.0.aggregationPeriod", "definitions.1.aggregationThreshold", "definitions.2.name"):
        assert location in err
    assert f"{bad}: definitions: duplicate measure names: a" in err  # listed with the field errors too
    only_dupes = {"definitions": [{"name": n, "aggregationPeriod": "day"} for n in ("b", "a", "b", "a", "c")]}
    bad.write_text(json.dumps(only_dupes))
    code, out, err = run(capsys, url, "definitions", "validate", str(bad))
    assert code == 2 and err.strip().endswith(f"(1 error(s)): {bad}: definitions: duplicate measure names: a, b")


HOLDERS: dict[str, subprocess.Popen[str]] = {}  # held_warehouse's holding process, by URL


@pytest.fixture
def held_warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A DuckDB warehouse file another process holds open (as a running Dagster run would); the open
    gives up after 0.5 s here."""
    monkeypatch.setattr(duckdb_engine, "LOCK_WAIT_SECONDS", 0.5)
    path = tmp_path / "held.duckdb"
    open_warehouse(f"duckdb:///{path}").close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys; c = duckdb.connect({str(path)!r}); print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    url = f"duckdb:///{path}"
    HOLDERS[url] = holder
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield url
    finally:
        if holder.poll() is None:
            holder.communicate(timeout=30)  # closing its stdin ends it
        del HOLDERS[url]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("aggregates", "query", "--measure", "connection-count-daily", "--start", "2025-03-03", "--end", "2025-03-05"),
         "cannot open the DuckDB warehouse"),
        (("purge",), "cannot open the DuckDB warehouse"),
        (("refresh", "--start", "2025-03-03", "--end", "2025-03-04"), "day refresh failed"),
    ],
)  # fmt: skip
def test_a_warehouse_held_by_another_process_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], held_warehouse: str, argv: tuple[str, ...], message: str
) -> None:
    code, out, err = run(capsys, held_warehouse, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err and "lock" in err


def test_a_lock_held_briefly_is_waited_for(
    capsys: pytest.CaptureFixture[str], held_warehouse: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sensor's short read must not make a run (or a command) starting then fail: the holder lets go
    at the first retry, and the command goes on."""
    monkeypatch.setattr(duckdb_engine, "LOCK_WAIT_SECONDS", 60.0)
    retries: list[int] = []

    def release_then_pause() -> None:
        retries.append(1)
        if len(retries) == 1:
            holder = HOLDERS[held_warehouse]
            holder.communicate(timeout=30)  # closing its stdin ends it, and frees the file

    monkeypatch.setattr(duckdb_engine, "_pause", release_then_pause)
    code, out, err = run(capsys, held_warehouse, "purge")
    assert (code, err) == (0, "") and json.loads(out)["purged"] == 0 and len(retries) >= 1


def test_a_file_that_is_not_a_duckdb_database_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "notes.duckdb"
    path.write_text("not a database\n")
    code, out, err = run(capsys, f"duckdb:///{path}", "purge")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "cannot open the DuckDB warehouse" in err and "not a valid DuckDB database" in err
    assert path.read_text() == "not a database\n"  # left as it was


def test_refresh_prints_its_json_only(capfd: pytest.CaptureFixture[str], url: str) -> None:
    code, out, err = run(capfd, url, "refresh", "--start", "2025-03-03", "--end", "2025-03-04")  # capfd: fd 2 too
    assert code == 0 and [r["grain"] for r in json.loads(out)] == ["day", "week", "month"]
    assert err == ""  # no Dagster console log: each run's events are in the instance


REFRESHED_ASSETS = {
    "day": ["raw_measures", "daily_aggregates"],
    "week": ["weekly_aggregates"],
    "month": ["monthly_aggregates"],
}


def test_refresh_records_its_runs_in_the_dagster_home_instance(
    capsys: pytest.CaptureFixture[str], url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((DEFINITIONS.parent / "deploy" / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    code, out, _ = run(capsys, url, "refresh", "--start", "2025-03-03", "--end", "2025-03-05")
    assert code == 0
    report = {r["grain"]: r for r in json.loads(out)}
    expected = {"day": ["2025-03-03", "2025-03-04"], "week": ["2025-03-03"], "month": ["2025-03-01"]}
    counts = {g: (r["partitions"], r["first"], r["last"]) for g, r in report.items()}
    assert counts == {g: (len(keys), keys[0], keys[-1]) for g, keys in expected.items()}
    with DagsterInstance.get() as instance:
        for grain, keys in expected.items():
            run_id = report[grain]["run_id"]
            assert instance.get_run_by_id(run_id).status == DagsterRunStatus.SUCCESS
            owner = cli_run_tags()[CLI_PROCESS_TAG]  # a sensor tick fails it should this process die
            assert owner.endswith(f":{os.getpid()}") and socket.gethostname() in owner
            assert instance.get_run_by_id(run_id).tags[CLI_PROCESS_TAG] == owner  # type: ignore[union-attr]
            assert (
                instance.get_run_by_id(run_id).job_name == f"{ {'day': 'daily'}.get(grain, grain + 'ly') }_refresh_job"
            )
            logs = instance.all_logs(run_id)
            materialized = {
                (e.dagster_event.asset_key.to_user_string(), e.dagster_event.partition)
                for e in logs
                if e.dagster_event and e.dagster_event.event_type_value == "ASSET_MATERIALIZATION"
            }
            assets = REFRESHED_ASSETS[grain]  # README: raw, daily, weekly and monthly assets
            assert materialized == {(a, k) for a in assets for k in keys}
            evaluations = [
                e.dagster_event.event_specific_data
                for e in logs
                if e.dagster_event and e.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"
            ]
            checked = {(c.asset_key.to_user_string(), c.check_name) for c in evaluations}  # type: ignore[union-attr]
            assert (assets[-1], "stored_rows_valid") in checked  # README: after each refresh job's asset
            assert any(e.dagster_event and e.dagster_event.event_type_value == "STEP_START" for e in logs)


def test_refresh_after_a_killed_refresh_frees_its_pool_slot_without_a_daemon(
    capsys: pytest.CaptureFixture[str], url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 of `aggassets refresh` left its run STARTED and holding the `warehouse` slot; the next refresh,
    with no daemon to free it, waited for the slot for ever. Here the killed command is a process that has
    ended, its run started and its slot claimed as the command's step had; the next refresh must end."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((DEFINITIONS.parent / "deploy" / "dagster.yaml").read_text())
    probe = f"from aggassets.runs import cli_run_tags; print(cli_run_tags()[{CLI_PROCESS_TAG!r}])"
    gone = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    job = defs.resolve_job_def("daily_refresh_job")
    with DagsterInstance.get() as instance:
        killed = instance.create_run_for_job(job, tags={CLI_PROCESS_TAG: gone})
        event = DagsterEvent(event_type_value=DagsterEventType.RUN_START.value, job_name=job.name)
        instance.report_dagster_event(event, run_id=killed.run_id)
        storage = instance.event_log_storage
        storage.initialize_concurrency_limit_to_default("warehouse")
        assert storage.claim_concurrency_slot("warehouse", killed.run_id, "raw_measures").is_claimed
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    argv = ["--warehouse", url, "--definitions", str(DEFINITIONS), "refresh", "--start", "2025-03-03"]
    command = [sys.executable, "-m", "aggassets.cli", *argv, "--end", "2025-03-04"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr
    with DagsterInstance.get() as instance:
        assert instance.get_run_by_id(killed.run_id).status == DagsterRunStatus.FAILURE  # type: ignore[union-attr]
        assert instance.event_log_storage.get_concurrency_info("warehouse").claimed_slots == []


def test_the_command_line_loads_neither_scipy_nor_dagster_until_a_command_needs_them() -> None:
    """Every command pays for its own imports: building the parser (and so `--help`, `measures ingest`,
    `aggregates query`) imports neither scipy.stats (2 s) nor Dagster; `experiments evaluate` does."""
    probe = (
        "import sys; from aggassets.cli import build_parser; build_parser(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'dagster'}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


SKIPPED = "no complete partition in range"


def test_a_range_without_any_complete_partition_skips_every_grain(capsys: pytest.CaptureFixture[str], url: str) -> None:
    """README: refresh materializes every *complete* partition overlapping [start, end); a range in the future
    has none at any grain: each grain is reported skipped, nothing runs, exit 0."""
    code, out, err = run(capsys, url, "refresh", "--start", "2030-01-01", "--end", "2030-01-02")
    assert (code, err) == (0, "")
    assert json.loads(out) == [{"grain": g, "partitions": 0, "skipped": SKIPPED} for g in ("day", "week", "month")]
    with open_warehouse(url) as wh:
        assert all(wh.read_table(t).empty for t in ("daily_aggregates", "weekly_aggregates", "monthly_aggregates"))


def test_whole_days_of_a_week_not_over_run_the_days_and_skip_the_week_and_month(
    capsys: pytest.CaptureFixture[str], url: str, tmp_path: Path
) -> None:
    """Seen on Thursday 2025-03-06 (Dagster's partition clock set there): Monday to Wednesday are complete days,
    their week (Monday 03-03 .. 03-09) and month (March) are not over yet, so only the days run."""
    rows = make_measures(date(2025, 3, 3), 3, 6)
    assert run(capsys, url, "measures", "ingest", str(write_ndjson(tmp_path / "m.ndjson", rows)))[0] == 0
    with partition_loading_context(effective_dt=datetime(2025, 3, 6, 12, 0, tzinfo=UTC)):
        code, out, err = run(capsys, url, "refresh", "--start", "2025-03-03", "--end", "2025-03-06")
    assert (code, err) == (0, "")
    day, week, month = json.loads(out)
    assert (day["grain"], day["partitions"], day["first"], day["last"]) == ("day", 3, "2025-03-03", "2025-03-05")
    assert week == {"grain": "week", "partitions": 0, "skipped": SKIPPED}
    assert month == {"grain": "month", "partitions": 0, "skipped": SKIPPED}
    with open_warehouse(url) as wh:
        days = {str(d)[:10] for d in wh.read_table("daily_aggregates")["period_start"]}
        assert days == {"2025-03-03", "2025-03-04", "2025-03-05"}
        assert wh.read_table("weekly_aggregates").empty and wh.read_table("monthly_aggregates").empty
