"""The demo's data generator and the commands it suggests."""

import json
import os
import re
import subprocess
import sys
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from dagster import partition_loading_context

from aggassets import demo, settings
from aggassets.catalog import MeasureCatalog, MeasureDefinition
from aggassets.demo import generate, next_commands
from aggassets.demo_events import generate_events
from aggassets.errors import AggassetsError
from aggassets_tests.helpers import DEFINITIONS


def test_next_commands_name_the_complete_partitions_of_the_demo() -> None:
    sunday = next_commands(date(2026, 9, 7), date(2026, 12, 6))  # the week of Monday 11-30 is not over
    assert sunday[0].endswith("--start 2026-09-07 --end 2026-12-06")
    assert sunday[2].endswith("raw_measures,daily_aggregates --partition-range 2026-09-07...2026-12-05")
    assert sunday[3].endswith("weekly_aggregates --partition-range 2026-09-07...2026-11-23")
    assert sunday[4].endswith("monthly_aggregates --partition-range 2026-09-01...2026-11-01")
    monday = next_commands(date(2026, 9, 9), date(2026, 12, 7))  # now it is; the first week began 09-07
    assert monday[3].endswith("weekly_aggregates --partition-range 2026-09-07...2026-11-30")


def test_generated_measures_are_valid_json_even_with_quotes_in_the_catalog(tmp_path: Path) -> None:
    catalog = MeasureCatalog((
        MeasureDefinition(
            name="connection-count-daily", aggregationPeriod="day", createdBy="o'brien app", group1Key="device"
        ),
        MeasureDefinition(name="plain-monthly", aggregationPeriod="month"),
    ))  # fmt: skip
    main, late = generate(catalog, tmp_path, date(2026, 1, 1), date(2026, 1, 10), {"day": 4, "week": 2, "month": 3})
    items = [json.loads(line) for line in main.read_text().splitlines()]
    by_name = {n: [i for i in items if i["measureName"] == n] for n in ("connection-count-daily", "plain-monthly")}
    assert len(by_name["connection-count-daily"]) == 10 * 4 and len(by_name["plain-monthly"]) == 1 * 3
    assert {i.get("createdBy") for i in by_name["connection-count-daily"]} <= {"o'brien app", "cozy-home"}
    assert all(set(i["group1"]) == {"device"} for i in by_name["connection-count-daily"])
    assert late.read_text().count("\n") > 0


class _DemoDay(datetime):
    """`datetime` whose now() is Wednesday 2026-12-02, 06:00 UTC (the demo's "today")."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> "_DemoDay":
        return cls(2026, 12, 2, 6, 0, tzinfo=UTC)


def test_make_demo_runs_end_to_end_and_its_summary_adds_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m aggassets.demo`'s main with small sizes, on 2026-12-02 (Dagster's partition clock too), into a
    temporary project folder and warehouse; its runs go to an ephemeral instance (a SQLite DAGSTER_HOME commits
    each of the ~200 partition events to disk: 30-65 s here). Expected figures are worked out by hand below."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # its runs in an ephemeral instance, not .dagster_home/
    # the project's own file (PROJECT_ROOT is tmp_path below), spelt as a user may export it
    monkeypatch.setenv("AGGASSETS_WAREHOUSE", f"duckdb://{os.path.relpath(tmp_path)}/data/aggassets.duckdb")
    monkeypatch.setenv("AGGASSETS_DEFINITIONS", str(DEFINITIONS))
    monkeypatch.setenv("AGGASSETS_INBOX", str(tmp_path / "inbox"))
    monkeypatch.setattr(settings, "PROJECT_ROOT", tmp_path)  # data/demo/ goes there
    monkeypatch.setattr(demo, "datetime", _DemoDay)
    monkeypatch.setattr(demo, "PER_PERIOD", {"day": 6, "week": 4, "month": 5})
    monkeypatch.setattr(demo, "generate_events", lambda folder: generate_events(folder, scale=0.01))
    with partition_loading_context(effective_dt=_DemoDay.now()):
        assert demo.main() == 0
    out = capsys.readouterr().out
    lines = out.splitlines()

    # today 2026-12-02: the window is the 90 days 2026-09-03 .. 2026-12-01.
    assert lines[0].startswith("aggassets demo: 2026-09-03 .. 2026-12-01 (")
    assert lines[1] == "  measures defined: 9"  # definitions/measures.json: 5 day, 2 week, 2 month measures
    # Main file: 5 day measures x 90 days x 6 = 2700; 2 week measures x 14 Mondays (08-31 .. 11-30, the week of
    # 09-03 included) x 4 = 112; 2 month measures x 3 months starting in the window (10-01, 11-01, 12-01) x 5 = 30.
    # Late file: connection-count-daily over 11-29 .. 12-01 (3 x 6 = 18 < the 300 sampled) + 7 malformed x 20.
    demo_files = tmp_path / "data" / "demo"
    generated = sum(len((demo_files / f).read_text().splitlines()) for f in ("measures.ndjson", "late-measures.ndjson"))
    assert generated == 2842 + 18 + 140 == 3000
    assert lines[2] == "  received 3,000  accepted 2,860  rejected 140"
    by_reason = {"invalid_json": 20, "value_not_finite": 20, "unknown_measure": 20, "invalid_start_date": 20,
                 "missing_group1": 20, "not_an_object": 20, "invalid_value": 20}  # fmt: skip
    assert lines[3].startswith("  rejected by reason: ")
    assert json.loads(lines[3].removeprefix("  rejected by reason: ")) == by_reason
    # Complete partitions on 2026-12-02 overlapping [09-03, 12-02): days 09-03 .. 12-01 (90); weeks of Mondays
    # 08-31 .. 11-23 (13: the week of 11-30 is not over); months 09, 10, 11 (3: December is not over).
    tables = {cells[0]: [int(c) for c in cells[1:]] for cells in (line.split() for line in lines[5:8])}
    assert {t: v[0] for t, v in tables.items()} == {
        "daily_aggregates": 90,
        "weekly_aggregates": 13,
        "monthly_aggregates": 3,
    }
    assert all(rows == released + suppressed > 0 for _, rows, released, suppressed in tables.values())
    # Events: every line of the three files is received; the malformed rows appended by demo_events are rejected.
    events_dir = demo_files / "events"
    csv_rows = len((events_dir / "checkout-button-conversion.csv").read_text().splitlines()) - 1  # its header
    parquet_rows = pq.read_metadata(events_dir / "recommendations-three-way.parquet").num_rows
    received = csv_rows + parquet_rows + len((events_dir / "product-page-layout.ndjson").read_text().splitlines())
    events = re.fullmatch(r"  events: received (\S+)  accepted (\S+)  rejected (\S+)  by reason (.*)", lines[8])
    assert events is not None
    assert [int(events.group(i).replace(",", "")) for i in (1, 2, 3)] == [received, received - 10, 10]
    assert json.loads(events.group(4)) == {"bad_date": 1, "missing_unit_id": 2, "bad_count": 2, "bad_goal": 1,
                                           "bad_value": 1, "bad_unit_type": 1, "invalid_json": 1,
                                           "missing_exp_variant_id": 1}  # fmt: skip
    # One line per metric and treatment variant of each demo experiment (definitions/experiments).
    shown: dict[str, list[str]] = {}
    for line in lines[9:]:
        if line.startswith("  experiment "):
            current = shown.setdefault(line.removeprefix("  experiment ").removesuffix(":"), [])
        elif line.startswith("    "):
            current.append(line.strip().split("]: ")[0] + "]")
        else:
            break
    expected = {}
    for path in sorted((DEFINITIONS / "experiments").glob("*.json")):
        raw = json.loads(path.read_text())
        treatments = [v for v in raw["variants"] if v != raw["control_variant"]]
        expected[raw["id"]] = [f"{m['name']} [{v}]" for m in raw["metrics"] for v in treatments]
    assert {k: sorted(v) for k, v in shown.items()} == {k: sorted(v) for k, v in expected.items()}
    assert "query --measure connection-count-daily --start 2026-09-03 --end 2026-12-02" in out
    assert "weekly_aggregates --partition-range 2026-08-31...2026-11-23" in out  # complete weeks only


@pytest.mark.parametrize("kind", ["duckdb", "postgresql"])
def test_the_demo_leaves_a_warehouse_named_by_aggassets_warehouse_alone(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exported AGGASSETS_WAREHOUSE (production's, say) is not the demo's: the demo deleted such a DuckDB
    file, and added a second copy of its data to such a PostgreSQL warehouse. Now it refuses, one line, exit 2."""
    theirs = tmp_path / "theirs.duckdb"
    theirs.write_bytes(b"a user's warehouse")
    url = f"duckdb:///{theirs}" if kind == "duckdb" else "postgresql://app:S3cret@127.0.0.1:1/prod"
    monkeypatch.setenv("AGGASSETS_WAREHOUSE", url)
    monkeypatch.setattr(settings, "PROJECT_ROOT", tmp_path / "project")
    with pytest.raises(AggassetsError, match="unset it to run the demo") as err:
        demo.main()
    assert str(tmp_path / "project" / "data" / "aggassets.duckdb") in str(err.value) and "S3cret" not in str(err.value)
    assert theirs.read_bytes() == b"a user's warehouse" and not (tmp_path / "project").exists()
    env = {**os.environ, "AGGASSETS_WAREHOUSE": url}
    done = subprocess.run(
        [sys.executable, "-m", "aggassets.demo"], env=env, capture_output=True, text=True, timeout=120
    )
    assert (done.returncode, done.stdout) == (2, "") and len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("aggassets demo: error: the demo resets the project's own warehouse")


def test_the_demo_refuses_its_own_file_in_a_production_environment_before_resetting_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With DAGSTER_PG_HOST set and AGGASSETS_WAREHOUSE unset, the project's DuckDB file is refused (README,
    Unset variables): the demo deleted the file, then refused."""
    own = tmp_path / "project" / "data" / "aggassets.duckdb"
    own.parent.mkdir(parents=True)
    own.write_bytes(b"the project's warehouse")
    monkeypatch.setattr(settings, "PROJECT_ROOT", tmp_path / "project")
    monkeypatch.delenv("AGGASSETS_WAREHOUSE", raising=False)
    monkeypatch.setenv("DAGSTER_PG_HOST", "db.internal")
    with pytest.raises(AggassetsError, match="AGGASSETS_WAREHOUSE is not set, though DAGSTER_PG_HOST is"):
        demo.main()
    assert own.read_bytes() == b"the project's warehouse" and not (own.parent / "demo").exists()
