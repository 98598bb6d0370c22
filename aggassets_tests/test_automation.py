"""Sensors and the refresh command's partition choice, on their own: run keys, ranges, waits and retries."""

import socket
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from dagster import (
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    MonthlyPartitionsDefinition,
    RunRequest,
    SkipReason,
    build_sensor_context,
)

from aggassets import sensors
from aggassets.catalog import load_measures
from aggassets.errors import AggassetsError
from aggassets.jobs import ingest_inbox_job
from aggassets.refresh import materialize_definitions, overlapping_keys
from aggassets.resources import CatalogResource, WarehouseResource
from aggassets.runs import CLI_PROCESS_TAG, cli_run_tags
from aggassets.sensors import ATTEMPT_TAG, inbox_sensor, late_measures_sensor, late_ranges, retry_wait
from aggassets.settings import partitions_start
from aggassets.sources import inbox as inbox_source
from aggassets.warehouse import open_warehouse
from aggassets_tests.helpers import DEFINITIONS, make_measures, write_ndjson

STATUS_EVENTS = {
    DagsterRunStatus.STARTING: DagsterEventType.RUN_STARTING,
    DagsterRunStatus.STARTED: DagsterEventType.RUN_START,
}


def test_late_ranges_name_the_newest_arrival_of_each_range_days_first() -> None:
    """Consecutive late partitions are one range whose work names its newest arrival (the range's first
    partition included), so a later arrival in a range is new work; days, then weeks, then months."""
    late = [
        ("month", "2025-03-01", "2025-04-02T08:00:00"),
        ("week", "2025-03-03", "2025-04-02T08:00:00"),
        ("day", "2025-03-04", "2025-04-02T09:30:00"),
        ("day", "2025-03-05", "2025-04-01T10:00:00"),
        ("day", "2025-03-06", "2025-04-02T08:00:00"),
        ("day", "2025-03-09", "2025-04-01T07:00:00"),
    ]
    assert late_ranges(late) == [
        ("day", "2025-03-04", "2025-03-06", "2025-04-02T09:30:00"),
        ("day", "2025-03-09", "2025-03-09", "2025-04-01T07:00:00"),
        ("week", "2025-03-03", "2025-03-03", "2025-04-02T08:00:00"),
        ("month", "2025-03-01", "2025-03-01", "2025-04-02T08:00:00"),
    ]


def test_late_run_work_names_the_arrival_to_the_second(tmp_path: Path) -> None:
    """Two late arrivals on one day are two pieces of work: the run's work names the newest receive time
    to the second, as the warehouse stored it."""
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    catalog = load_measures(DEFINITIONS)
    with open_warehouse(url) as wh:
        wh.sync_definitions(catalog.measures)
        wh.ingest_file(
            write_ndjson(tmp_path / "a.ndjson", make_measures(date(2025, 3, 3), 1, 3)),
            catalog.measures,
            partitions_start(),
        )
        wh.refresh("day", date(2025, 3, 3), date(2025, 3, 4))
        wh.ingest_file(
            write_ndjson(tmp_path / "b.ndjson", make_measures(date(2025, 3, 3), 1, 2, seed=7)),
            catalog.measures,
            partitions_start(),
        )
        received = wh.fetch("SELECT max(received_at) AS t FROM raw_measures")["t"].iloc[0]
    with DagsterInstance.ephemeral() as instance:
        context = build_sensor_context(resources={"warehouse": WarehouseResource(url=url)}, instance=instance)
        requests = late_measures_sensor(context).run_requests
    (day,) = [r for r in requests if r.job_name == "daily_refresh_job"]
    assert day.tags[ATTEMPT_TAG] == f"late:day:2025-03-03...2025-03-03:{received:%Y-%m-%dT%H:%M:%S}"
    assert day.partition_key == "2025-03-03"


def _first_ingest_run(
    instance: DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[RunRequest, DagsterRun]:
    """An inbox with one settled file, the sensor's request for it and the run created for it (not launched)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("AGGASSETS_INBOX", str(inbox))
    monkeypatch.setattr(inbox_source, "SETTLE_SECONDS", 0.0)
    write_ndjson(inbox / "a.ndjson", make_measures(date(2025, 3, 3), 1, 2))
    (first,) = inbox_sensor(build_sensor_context(instance=instance)).run_requests
    return first, instance.create_run_for_job(ingest_inbox_job, run_config=first.run_config, tags=first.tags)


@pytest.mark.parametrize("status", list(STATUS_EVENTS))
def test_a_starting_or_running_ingest_run_is_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: DagsterRunStatus
) -> None:
    """A file whose ingest run is starting or running is not requested again: the sensor says it waits."""
    with DagsterInstance.ephemeral() as instance:
        _, run = _first_ingest_run(instance, tmp_path, monkeypatch)
        event = DagsterEvent(event_type_value=STATUS_EVENTS[status].value, job_name=ingest_inbox_job.name)
        instance.report_dagster_event(event, run_id=run.run_id)  # as the run queue or a launcher reports it
        assert instance.get_run_by_id(run.run_id).status == status  # type: ignore[union-attr]
        waiting = inbox_sensor(build_sensor_context(instance=instance))
    assert isinstance(waiting, SkipReason) and "in progress" in str(waiting.skip_message)


def test_a_cancelled_ingest_run_is_retried_under_a_new_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancelled counts as failed: Dagster never launches a run key twice, so the retry needs its own."""
    with DagsterInstance.ephemeral() as instance:
        first, run = _first_ingest_run(instance, tmp_path, monkeypatch)
        instance.report_run_canceled(run)
        (again,) = inbox_sensor(build_sensor_context(instance=instance)).run_requests
    assert again.run_key == f"{first.run_key}:retry1" and again.tags == first.tags


def test_work_failing_again_and_again_is_retried_less_and_less_often(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: the first retry at the next tick, then 1, 2, 4 ... minutes after the last failure, at most an
    hour apart (a catalog broken for an hour costs about 8 runs per file, not 120)."""
    assert [retry_wait(n) for n in (1, 2, 3, 4, 7, 8, 50)] == [0, 60, 120, 240, 1920, 3600, 3600]
    clock = 0.0
    monkeypatch.setattr(sensors, "now", lambda: clock)
    with DagsterInstance.ephemeral() as instance:
        first, run = _first_ingest_run(instance, tmp_path, monkeypatch)
        for failures in (1, 2, 3):
            instance.report_run_failed(run)
            clock = instance.get_run_record_by_id(run.run_id).end_time or 0.0  # type: ignore[union-attr]
            if failures > 1:
                clock += 60 * 2 ** (failures - 2) - 1  # a second early
                waiting = inbox_sensor(build_sensor_context(instance=instance))
                assert isinstance(waiting, SkipReason) and "waits to retry" in str(waiting.skip_message)
                clock += 1
            (again,) = inbox_sensor(build_sensor_context(instance=instance)).run_requests
            assert again.run_key == f"{first.run_key}:retry{failures}"
            run = instance.create_run_for_job(ingest_inbox_job, run_config=again.run_config, tags=again.tags)


def test_a_run_whose_aggassets_command_was_killed_is_failed_at_the_next_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 of `aggassets refresh` left its run STARTED, holding the pool slot for good (run monitoring
    cannot see an in-process run): a sensor tick on the host marks it failed, and only it; not one of another
    host, or of a container sharing the host's name but not its pids (a pid there means another process), nor
    a re-execution of it, which carries a copy of its tags."""
    monkeypatch.setenv("AGGASSETS_INBOX", str(tmp_path))
    probe = f"from aggassets.runs import cli_run_tags; print(cli_run_tags()[{CLI_PROCESS_TAG!r}])"
    gone = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    space, _, dead_pid = gone.rpartition(":")  # the tag of a command that has ended
    assert dead_pid.isdigit() and socket.gethostname() in space
    owners = {"killed": gone, "running": cli_run_tags()[CLI_PROCESS_TAG], "not a command's": None}
    owners |= {"other host": f"elsewhere/{space.partition('/')[2]}:{dead_pid}"}
    owners |= {"other pid namespace": f"{space.replace('pid:[', 'pid:[9')}:{dead_pid}", "re-executed": gone}
    with DagsterInstance.ephemeral() as instance:
        runs = {}
        for name, owner in owners.items():
            config = {"ops": {"ingest_inbox_files": {"config": {"files": []}}}}
            tags = {CLI_PROCESS_TAG: owner} if owner else {}
            if name == "re-executed":  # Dagster copies the parent's tags: a run worker runs this one
                tags["dagster/parent_run_id"] = runs["killed"]
            run = instance.create_run_for_job(ingest_inbox_job, run_config=config, tags=tags)
            event = DagsterEvent(event_type_value=DagsterEventType.RUN_START.value, job_name=ingest_inbox_job.name)
            instance.report_dagster_event(event, run_id=run.run_id)
            runs[name] = run.run_id
        inbox_sensor(build_sensor_context(instance=instance))
        status = {name: instance.get_run_by_id(run_id).status for name, run_id in runs.items()}  # type: ignore[union-attr]
    assert status == {
        "killed": DagsterRunStatus.FAILURE,
        "running": DagsterRunStatus.STARTED,
        "other host": DagsterRunStatus.STARTED,
        "not a command's": DagsterRunStatus.STARTED,
        "other pid namespace": DagsterRunStatus.STARTED,
        "re-executed": DagsterRunStatus.STARTED,
    }


def test_the_late_measures_sensor_skips_a_grain_without_any_partition_yet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the first month after AGGASSETS_PARTITIONS_START there is no monthly partition yet (its first key
    is None): the month's rows are left out, the days and weeks requested (the tick raised TypeError)."""
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    catalog = load_measures(DEFINITIONS)
    with open_warehouse(url) as wh:
        wh.sync_definitions(catalog.measures)
        path = write_ndjson(tmp_path / "a.ndjson", make_measures(date(2025, 3, 3), 1, 3))
        wh.ingest_file(path, catalog.measures, partitions_start())
    no_month_yet = MonthlyPartitionsDefinition(start_date=datetime.now(UTC).date().replace(day=1).isoformat())
    assert no_month_yet.get_first_partition_key() is None
    monkeypatch.setitem(sensors.PARTITIONS_BY_GRAIN, "month", no_month_yet)
    with DagsterInstance.ephemeral() as instance:
        context = build_sensor_context(resources={"warehouse": WarehouseResource(url=url)}, instance=instance)
        requests = late_measures_sensor(context).run_requests
    assert sorted((r.job_name, r.partition_key) for r in requests) == [
        ("daily_refresh_job", "2025-03-03"),
        ("weekly_refresh_job", "2025-03-03"),
    ]


def test_refresh_takes_every_partition_overlapping_the_range() -> None:
    """[start, end): the week and month holding `start` overlap it, the partition starting on `end` does not."""
    assert overlapping_keys("day", date(2025, 3, 5), date(2025, 3, 8)) == ["2025-03-05", "2025-03-06", "2025-03-07"]
    assert overlapping_keys("week", date(2025, 3, 5), date(2025, 3, 17)) == ["2025-03-03", "2025-03-10"]
    assert overlapping_keys("month", date(2025, 3, 5), date(2025, 5, 1)) == ["2025-03-01", "2025-04-01"]
    with pytest.raises(AggassetsError, match="must be after"):
        overlapping_keys("day", date(2025, 3, 5), date(2025, 3, 5))


def test_files_of_one_name_are_all_kept_in_processed(tmp_path: Path) -> None:
    """processed/ never overwrites: a third file of a used name is kept beside the first two."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    catalog = CatalogResource(definitions_dir=str(DEFINITIONS)).measures()
    contents = [make_measures(date(2025, 3, 3), 1, n, seed=n) for n in (1, 2, 3)]
    with open_warehouse(f"duckdb:///{tmp_path / 'wh.duckdb'}") as wh:
        for rows in contents:
            path = write_ndjson(inbox / "a.json", rows)
            assert inbox_source.process_file(wh, path, catalog, date(2020, 1, 1))["status"] == "ingested"
    kept = {p.name: p.read_text().count("\n") for p in (inbox / "processed").iterdir()}
    assert kept == {"a.json": len(contents[0]), "a.1.json": len(contents[1]), "a.2.json": len(contents[2])}


def test_a_folder_named_like_a_measure_file_is_not_one(tmp_path: Path) -> None:
    """A folder named *.json in the inbox is not a file to ingest."""
    inbox = tmp_path / "inbox"
    (inbox / "folder.json").mkdir(parents=True)
    write_ndjson(inbox / "b.json", make_measures(date(2025, 3, 3), 1, 1))
    assert [p.name for p in inbox_source.pending_files(inbox, now=4e9)] == ["b.json"]


def test_a_catalog_that_cannot_be_materialized_is_an_error(tmp_path: Path) -> None:
    """The refresh command stops with an error when measure_definitions fails (an invalid catalog)."""
    (tmp_path / "measures.json").write_text('{"definitions": [{"name": "x"}]}')
    with pytest.raises(AggassetsError, match="measure_definitions failed"):
        materialize_definitions(f"duckdb:///{tmp_path / 'wh.duckdb'}", str(tmp_path))
