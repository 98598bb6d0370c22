"""The inbox: files are ingested once, moved to processed/ or failed/ with a reason, never deleted."""

import json
import os
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, SkipReason, build_sensor_context

from aggassets.errors import AggassetsError, WarehouseUnavailable
from aggassets.jobs import ingest_inbox_job
from aggassets.resources import CatalogResource, WarehouseResource
from aggassets.sensors import ATTEMPT_TAG, inbox_sensor
from aggassets.sources import inbox as inbox_source
from aggassets.warehouse import intake_fast, intake_files, open_warehouse
from aggassets_tests.helpers import DEFINITIONS, make_measures, write_ndjson
from aggassets_tests.warehouse.support import server_gone_mid_copy


@pytest.fixture(autouse=True)
def no_settling(monkeypatch: pytest.MonkeyPatch) -> None:
    """The files these tests write are complete at once (the settling wait has its own test)."""
    monkeypatch.setattr(inbox_source, "SETTLE_SECONDS", 0.0)


def ingest_run(url: str, files: list[str]) -> None:
    """One run of the inbox job, as the sensor requests it."""
    result = ingest_inbox_job.execute_in_process(
        run_config={"ops": {"ingest_inbox_files": {"config": {"files": files}}}},
        resources={
            "warehouse": WarehouseResource(url=url),
            "catalog": CatalogResource(definitions_dir=str(DEFINITIONS)),
        },
    )
    assert result.success


def test_inbox_files_ingested_once_and_moved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("AGGASSETS_INBOX", str(inbox))
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    instance = DagsterInstance.ephemeral()  # closed with the test's garbage
    empty = inbox_sensor(build_sensor_context(instance=instance))
    assert (
        isinstance(empty, SkipReason) and empty.skip_message == f"no measure file (.json, .ndjson, .jsonl) in {inbox}"
    )
    rows = make_measures(date(2025, 3, 3), 1, 5)
    good = write_ndjson(inbox / "a.ndjson", rows)
    copy = inbox / "b.json"
    copy.write_text(good.read_text())  # the same content under another name
    (inbox / "c.json").write_text('[{"measureName": \n')  # unreadable document (not a paused writer's)
    requests = inbox_sensor(build_sensor_context(instance=instance)).run_requests
    assert len(requests) == 3 and len({r.run_key for r in requests}) == 3
    for request in requests:
        ingest_run(url, request.run_config["ops"]["ingest_inbox_files"]["config"]["files"])
    with open_warehouse(url) as wh:
        assert wh.loss_counts() == (len(rows), len(rows), 0)
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == ["a.ndjson", "b.json"]
    assert sorted(p.name for p in (inbox / "failed").iterdir()) == ["c.json", "c.json.reason"]
    assert "not a valid JSON document" in (inbox / "failed" / "c.json.reason").read_text()
    assert not [p for p in inbox.iterdir() if p.is_file()]
    ingest_run(url, [str(good)])  # a run for a file already moved does nothing
    with open_warehouse(url) as wh:
        assert wh.loss_counts()[0] == len(rows)
        batches = wh.read_table("intake_batches")
    assert json.loads(batches.to_json(orient="records"))[0]["received"] == len(rows)


def test_inbox_sensor_waits_for_a_run_in_progress_and_retries_a_failed_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dagster never launches a run key twice: a file whose run failed gets a new key at the next tick."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("AGGASSETS_INBOX", str(inbox))
    write_ndjson(inbox / "a.ndjson", make_measures(date(2025, 3, 3), 1, 2))
    with DagsterInstance.ephemeral() as instance:
        first = inbox_sensor(build_sensor_context(instance=instance)).run_requests
        assert len(first) == 1 and first[0].run_key == first[0].tags[ATTEMPT_TAG]
        run = instance.create_run_for_job(ingest_inbox_job, run_config=first[0].run_config, tags=first[0].tags)
        waiting = inbox_sensor(build_sensor_context(instance=instance))  # the run is not finished
        assert isinstance(waiting, SkipReason) and "in progress" in str(waiting.skip_message)
        instance.report_run_failed(run)
        again = inbox_sensor(build_sensor_context(instance=instance)).run_requests
        assert [r.run_key for r in again] == [f"{first[0].run_key}:retry1"]
        assert again[0].run_config == first[0].run_config


def test_a_file_changed_in_the_last_seconds_waits_for_a_later_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file still being written is not ingested half: it waits until unchanged for 5 s (README), the
    default, which this test keeps."""
    monkeypatch.undo()  # the module's own SETTLE_SECONDS, not the fixture's 0
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    path = write_ndjson(inbox / "growing.ndjson", make_measures(date(2025, 3, 3), 1, 2))
    now = path.stat().st_mtime
    assert inbox_source.pending_files(inbox, now=now + 4.9) == []
    assert inbox_source.pending_files(inbox, now=now + 5.0) == [path]
    monkeypatch.setenv("AGGASSETS_INBOX", str(inbox))
    with DagsterInstance.ephemeral() as instance:
        skipped = inbox_sensor(build_sensor_context(instance=instance))  # written just now
        assert isinstance(skipped, SkipReason) and skipped.skip_message == (
            f"1 measure file(s) in {inbox} still changing: each is taken once unchanged for 5 s"
            " (300 s for a file ending mid-line or empty)"
        )
        os.utime(path, (now - 60, now - 60))
        assert len(inbox_sensor(build_sensor_context(instance=instance)).run_requests) == 1


@pytest.mark.parametrize(
    ("tail", "mid_line"),
    [
        ('{"measureName": "connection-count-daily", "va', True),  # a writer paused mid-line
        ('{"measureName": "x", "group1": {"device": "d"}', True),  # ends with } yet not whole
        ("\t", True),  # JSON whitespace only: not a whole value
        ('{"measureName": "x", "value": 1}', False),  # a whole last item without its line end
        ("  ]", False),  # a pretty-printed array's end (json.dump writes no final newline)
        ("]}", False),
        ("", False),
    ],
)
def test_a_file_ending_mid_line_waits_five_minutes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tail: str, mid_line: bool
) -> None:
    """A file whose last line has no line end and is not a whole JSON value nor closing brackets waits
    until unchanged for 5 minutes, not 5 s (README): a writer that paused mid-line keeps its file."""
    monkeypatch.undo()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    path = write_ndjson(inbox / "paused.ndjson", make_measures(date(2025, 3, 3), 1, 3))
    with path.open("a", encoding="utf-8") as fh:
        fh.write(tail)
    now = path.stat().st_mtime
    assert inbox_source.pending_files(inbox, now=now + 5.0) == ([] if mid_line else [path])
    assert inbox_source.pending_files(inbox, now=now + 299.9) == ([] if mid_line else [path])
    assert inbox_source.pending_files(inbox, now=now + 300.0) == [path]


def test_a_last_line_over_1_mib_without_line_end_is_judged_by_its_end(tmp_path: Path) -> None:
    """A one-line document larger than the 1 MiB read from the file's end: complete when it ends with a
    closing bracket, mid-line otherwise."""
    whole = tmp_path / "whole.json"
    whole.write_text(json.dumps(make_measures(date(2025, 3, 3), 1, 8000)), encoding="utf-8")
    assert whole.stat().st_size > 2**20 and not inbox_source.ends_mid_line(whole)
    cut = tmp_path / "cut.json"
    cut.write_text(whole.read_text(encoding="utf-8")[:-40], encoding="utf-8")
    assert inbox_source.ends_mid_line(cut)


def test_a_file_named_in_another_encoding_goes_to_failed_and_the_others_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Latin-1 name (as zip, SMB or FTP tools leave them) cannot be named in a run: it is moved to failed/
    with its reason by the sensor, and the inbox's other files still get their runs."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("AGGASSETS_INBOX", str(inbox))
    good = write_ndjson(inbox / "good.json", make_measures(date(2025, 3, 3), 1, 2))
    latin1 = os.fsdecode(os.path.join(os.fsencode(inbox), b"caf\xe9.json"))
    Path(latin1).write_text(good.read_text())
    with DagsterInstance.ephemeral() as instance:
        requests = inbox_sensor(build_sensor_context(instance=instance)).run_requests
    assert [r.run_config["ops"]["ingest_inbox_files"]["config"]["files"] for r in requests] == [[str(good)]]
    failed = sorted(os.listdir(os.fsencode(inbox / "failed")))
    assert failed == [b"caf\xe9.json", b"caf\xe9.json.reason"]
    reason = (inbox / "failed" / os.fsdecode(b"caf\xe9.json.reason")).read_text()
    assert "not UTF-8" in reason
    assert (inbox / "failed" / os.fsdecode(b"caf\xe9.json")).read_text() == good.read_text()  # kept whole


def test_a_file_moved_back_from_processed_is_new_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rename keeps the name, size, times and inode but not the change time: the file gets a new run
    (which finds its content ingested and moves it back to processed/), not a used run key forever."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("AGGASSETS_INBOX", str(inbox))
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    rows = make_measures(date(2025, 3, 3), 1, 3)
    path = write_ndjson(inbox / "a.ndjson", rows)
    with DagsterInstance.ephemeral() as instance:
        (first,) = inbox_sensor(build_sensor_context(instance=instance)).run_requests
        ingest_run(url, [str(path)])
        os.rename(inbox / "processed" / "a.ndjson", path)
        (again,) = inbox_sensor(build_sensor_context(instance=instance)).run_requests
    assert again.run_key != first.run_key
    ingest_run(url, [str(path)])
    assert [p.name for p in (inbox / "processed").iterdir()] == ["a.ndjson"]
    assert not path.exists()  # out of the inbox again, ingested once
    with open_warehouse(url) as wh:
        assert wh.loss_counts() == (len(rows), len(rows), 0)


def test_a_file_that_cannot_be_read_goes_to_failed(tmp_path: Path) -> None:
    """An I/O error reading a file (here a folder named like one, which fails to read even as root; a
    file without read permission takes the same path) moves it to failed/ with the reason."""
    inbox = tmp_path / "inbox"
    (inbox / "unreadable.json").mkdir(parents=True)
    catalog = CatalogResource(definitions_dir=str(DEFINITIONS)).measures()
    with open_warehouse(f"duckdb:///{tmp_path / 'wh.duckdb'}") as wh:
        outcome = inbox_source.process_file(wh, inbox / "unreadable.json", catalog, date(2020, 1, 1))
        assert wh.loss_counts() == (0, 0, 0)
    assert outcome["status"] == "failed" and "cannot read" in outcome["reason"]
    assert sorted(p.name for p in (inbox / "failed").iterdir()) == ["unreadable.json", "unreadable.json.reason"]


def test_a_link_in_the_inbox_is_set_aside_unfollowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever may drop files in the inbox must not make the code location read files outside it (an env
    file of passwords would land in `inbox` payloads): a symbolic link gets no run and goes to failed/,
    as a link, its target untouched."""
    inbox, outside = tmp_path / "inbox", tmp_path / "secrets.json"
    inbox.mkdir()
    monkeypatch.setenv("AGGASSETS_INBOX", str(inbox))
    write_ndjson(outside, make_measures(date(2025, 3, 3), 1, 2))
    text = outside.read_text()
    (inbox / "link.json").symlink_to(outside)
    good = write_ndjson(inbox / "good.json", make_measures(date(2025, 3, 3), 1, 1))
    with DagsterInstance.ephemeral() as instance:
        requests = inbox_sensor(build_sensor_context(instance=instance)).run_requests
    assert [r.run_config["ops"]["ingest_inbox_files"]["config"]["files"] for r in requests] == [[str(good)]]
    assert (inbox / "failed" / "link.json").is_symlink() and outside.read_text() == text
    assert "symbolic link" in (inbox / "failed" / "link.json.reason").read_text()
    catalog = CatalogResource(definitions_dir=str(DEFINITIONS)).measures()
    (inbox / "again.json").symlink_to(outside)  # and a run asked for it (from the UI) refuses it too
    with open_warehouse(f"duckdb:///{tmp_path / 'wh.duckdb'}") as wh:
        outcome = inbox_source.process_file(wh, inbox / "again.json", catalog, date(2020, 1, 1))
        assert wh.loss_counts() == (0, 0, 0)
    assert outcome["status"] == "failed" and (inbox / "failed" / "again.json").is_symlink()


def test_nothing_is_written_through_a_link_in_failed_or_processed(tmp_path: Path) -> None:
    """A `.reason` name or a folder planted as a link: the reason goes to a new name inside failed/, a
    linked processed/ is refused before anything is stored; no file outside the inbox changes."""
    inbox, victim, elsewhere = tmp_path / "inbox", tmp_path / "victim.txt", tmp_path / "elsewhere"
    (inbox / "failed").mkdir(parents=True)
    elsewhere.mkdir()
    victim.write_text("ORIGINAL\n")
    (inbox / "failed" / "bad.json.reason").symlink_to(victim)
    (inbox / "bad.json").write_text("[{")
    catalog = CatalogResource(definitions_dir=str(DEFINITIONS)).measures()
    with open_warehouse(f"duckdb:///{tmp_path / 'wh.duckdb'}") as wh:
        outcome = inbox_source.process_file(wh, inbox / "bad.json", catalog, date(2020, 1, 1))
        assert outcome["status"] == "failed" and outcome["moved_to"] == str(inbox / "failed" / "bad.1.json")
        assert victim.read_text() == "ORIGINAL\n" and (inbox / "failed" / "bad.1.json.reason").is_file()
        (inbox / "processed").symlink_to(elsewhere)
        good = write_ndjson(inbox / "good.json", make_measures(date(2025, 3, 3), 1, 1))
        with pytest.raises(AggassetsError, match="processed is a symbolic link"):
            inbox_source.process_file(wh, good, catalog, date(2020, 1, 1))
        assert wh.loss_counts() == (0, 0, 0)
    assert good.is_file() and not list(elsewhere.iterdir())


def test_the_inbox_job_takes_only_files_of_the_inbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run launched by hand (UI, GraphQL) with any path must not ingest nor move a file outside the
    inbox: the run fails naming it, before anything is stored."""
    inbox, other = tmp_path / "inbox", tmp_path / "other"
    inbox.mkdir()
    other.mkdir()
    monkeypatch.setenv("AGGASSETS_INBOX", str(inbox))
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    outside = write_ndjson(other / "config.json", make_measures(date(2025, 3, 3), 1, 1))
    inside = write_ndjson(inbox / "a.json", make_measures(date(2025, 3, 3), 1, 1))
    for files in ([str(outside)], [str(inside), str(outside)], [str(inbox / ".." / "other" / "config.json")]):
        with pytest.raises(AggassetsError, match="not a file of the inbox folder"):
            ingest_run(url, files)
    assert outside.is_file() and inside.is_file() and not (other / "processed").exists()
    ingest_run(url, [str(inside)])
    assert (inbox / "processed" / "a.json").is_file()


def test_jsonl_files_are_taken_and_a_later_file_of_the_same_name_is_kept_beside_the_first(tmp_path: Path) -> None:
    """.json, .ndjson and .jsonl (any case) are measure files, others stay; processed/ never overwrites."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    catalog = CatalogResource(definitions_dir=str(DEFINITIONS)).measures()
    first, second = make_measures(date(2025, 3, 3), 1, 3), make_measures(date(2025, 3, 4), 1, 4, seed=5)
    write_ndjson(inbox / "notes.txt", first)
    write_ndjson(inbox / "upper.JSONL", second)
    path = write_ndjson(inbox / "a.jsonl", first)
    assert [p.name for p in inbox_source.pending_files(inbox)] == ["a.jsonl", "upper.JSONL"]
    with open_warehouse(f"duckdb:///{tmp_path / 'wh.duckdb'}") as wh:
        assert inbox_source.process_file(wh, path, catalog, date(2020, 1, 1))["status"] == "ingested"
        write_ndjson(path, second + first)  # new content under the used name
        assert inbox_source.process_file(wh, path, catalog, date(2020, 1, 1))["status"] == "ingested"
        assert wh.loss_counts()[0] == 2 * len(first) + len(second)
    kept = {p.name: p.read_text() for p in (inbox / "processed").iterdir()}
    assert sorted(kept) == ["a.1.jsonl", "a.jsonl"]
    assert kept["a.jsonl"].count("\n") == len(first) and kept["a.1.jsonl"].count("\n") == len(first) + len(second)
    assert (inbox / "notes.txt").exists()


def test_a_missing_inbox_folder_is_named_in_the_skip_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGGASSETS_INBOX", str(tmp_path / "typo"))
    with DagsterInstance.ephemeral() as instance:
        skipped = inbox_sensor(build_sensor_context(instance=instance))
    assert isinstance(skipped, SkipReason) and f"the inbox folder {tmp_path / 'typo'} does not exist" in str(
        skipped.skip_message
    )
    assert not (tmp_path / "typo").exists()


def test_pending_files_come_in_name_order(tmp_path: Path) -> None:
    """Pending inbox files are listed by name, whatever order the folder lists them in."""
    names = [f"m{i:02d}.json" for i in range(30)]
    for name in reversed(names):
        (tmp_path / name).write_text("[]", encoding="utf-8")
    assert [p.name for p in inbox_source.pending_files(tmp_path)] == names


@pytest.mark.parametrize(
    ("content", "mid_line"),
    [
        (b"", False),  # empty: an empty batch at once
        (b'{"v": 1}\r', False),  # a lone CR ends a line (old Mac files)
        (b'{"v": 1}\r{"v": 2}', False),  # ... and splits one: the last line is whole
        (b'[\n  {"v": 1}\n]  ', False),  # spaces after the closing bracket
        (b'{"measureName": "x", "group1": {"device": "d"}', True),  # one line, ends with } yet not whole
        (b'{"v": ' + b"1" * 5000 + b"}", False),  # a whole line with an integer Python would not convert
        (b"[" * 100_000, True),  # deeper than Python's decoder: not whole, not a crash
        (b'{"v": "' + b"x" * 2048 + b'", "w": [1]', True),  # 2 KiB, unfinished, ends with ]
    ],
)
def test_what_ends_mid_line(tmp_path: Path, content: bytes, mid_line: bool) -> None:
    path = tmp_path / "f.ndjson"
    path.write_bytes(content)
    assert inbox_source.ends_mid_line(path) is mid_line


def test_an_unfinished_last_line_over_1_mib_ending_with_a_brace_is_mid_line(tmp_path: Path) -> None:
    """Over 1 MiB the last line is judged by its end only when it is the whole tail read: a file of complete
    lines then an unfinished one ending with `}` waits."""
    path = tmp_path / "big.ndjson"
    line = json.dumps({"measureName": "x", "createdBy": "y" * 1000}) + "\n"
    path.write_text(line * 1200 + '{"measureName": "x", "group1": {"device": "d"}', encoding="utf-8")
    assert path.stat().st_size > 2**20 and inbox_source.ends_mid_line(path)


def test_names_at_the_file_systems_limit_still_move_with_their_suffix_and_reason(tmp_path: Path) -> None:
    """A name of 255 bytes (85 three-byte characters reach it) has no room for `.reason` or `.1`: the copy
    in failed/ or processed/ loses the end of its stem, by whole characters, and keeps its suffix."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    catalog = CatalogResource(definitions_dir=str(DEFINITIONS)).measures()
    broken = inbox / ("x" * 250 + ".json")
    broken.write_text('[{"measureName": \n')
    stem = "測" * 83  # 249 bytes, + ".json": 254
    first, second = make_measures(date(2025, 3, 3), 1, 3), make_measures(date(2025, 3, 4), 1, 4, seed=5)
    path = write_ndjson(inbox / f"{stem}.json", first)
    with open_warehouse(f"duckdb:///{tmp_path / 'wh.duckdb'}") as wh:
        failed = inbox_source.process_file(wh, broken, catalog, date(2020, 1, 1))
        assert inbox_source.process_file(wh, path, catalog, date(2020, 1, 1))["status"] == "ingested"
        write_ndjson(path, second)  # new content under the used name
        again = inbox_source.process_file(wh, path, catalog, date(2020, 1, 1))
        assert wh.loss_counts()[0] == len(first) + len(second)
    assert failed["status"] == "failed" and again["status"] == "ingested"
    assert sorted(p.name for p in (inbox / "failed").iterdir()) == ["x" * 243 + ".json", "x" * 243 + ".json.reason"]
    assert "not a valid JSON document" in (inbox / "failed" / ("x" * 243 + ".json.reason")).read_text()
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == sorted([f"{stem}.json", f"{'測' * 82}.1.json"])
    assert not [p for p in inbox.iterdir() if p.is_file()]


def test_a_connection_lost_while_ingesting_leaves_the_file_for_the_runs_retry(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warehouse's fault, not the file's: the server going away mid-write (a restart) leaves the file in
    the inbox for the run's retry (it went to failed/ with a `.reason` saying to try again)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    path = write_ndjson(inbox / "m.ndjson", make_measures(date(2025, 3, 3), 3, 40))
    catalog = CatalogResource(definitions_dir=str(DEFINITIONS)).measures()
    wh = open_warehouse(postgres_url)
    try:
        lost = "lost in the middle of a write"
        with server_gone_mid_copy(wh, postgres_url, monkeypatch), pytest.raises(WarehouseUnavailable, match=lost):
            inbox_source.process_file(wh, path, catalog, date(2020, 1, 1))
    finally:
        wh.close()
    assert path.exists() and not (inbox / "failed").exists()


def test_an_empty_file_waits_five_minutes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file created but not yet written (0 bytes) is a writer at work, like one ending mid-line: it was
    taken at once, stored as an empty batch and moved, so what the writer wrote next was never read."""
    monkeypatch.undo()
    path = tmp_path / "new.ndjson"
    path.touch()
    now = path.stat().st_mtime
    assert inbox_source.pending_files(tmp_path, now=now + 299.9) == []
    assert inbox_source.pending_files(tmp_path, now=now + 300.0) == [path]


def test_a_file_written_to_while_it_is_ingested_stays_and_nothing_is_stored(
    warehouse_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that paused longer than the settling wait, then wrote on while the file was read: its first
    part was stored and the file moved to processed/, where the rest was never read (and dropped again, the
    first part counted twice). Now nothing is stored, the file stays for a later run, which stores it whole."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    path = write_ndjson(inbox / "m.ndjson", make_measures(date(2025, 3, 3), 2, 10))
    first = len(path.read_text().splitlines())
    read_items = intake_files.read_items

    def read_then_written(con: Any, read: Path) -> Any:
        result = read_items(con, read)
        with read.open("a", encoding="utf-8") as fh:  # the writer goes on after the file was read
            fh.write(json.dumps(make_measures(date(2025, 3, 4), 1, 1)[0]) + "\n")
        return result

    catalog = CatalogResource(definitions_dir=str(DEFINITIONS)).measures()
    with open_warehouse(warehouse_url) as wh:
        with monkeypatch.context() as patched:
            patched.setattr(intake_files, "read_items", read_then_written)
            patched.setattr(intake_fast, "read_items", read_then_written)
            report = inbox_source.process_file(wh, path, catalog, date(2020, 1, 1))
        assert report["status"] == "still_changing" and "changed while it was read" in report["reason"]
        assert path.exists() and not (inbox / "processed").exists() and not (inbox / "failed").exists()
        assert wh.loss_counts() == (0, 0, 0) and wh.read_table("intake_batches").empty
        report = inbox_source.process_file(wh, path, catalog, date(2020, 1, 1))
        assert (report["status"], report["received"]) == ("ingested", first + 1)
        assert wh.loss_counts() == (first + 1, first + 1, 0)


def test_a_reason_that_cannot_be_written_leaves_the_file_in_the_inbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk: the malformed file went to failed/ beside an empty `.reason` and the run failed. Now the
    `.reason` is written first: the run fails, the file stays in the inbox (the sensor retries it) and
    failed/ holds nothing."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    path = inbox / "bad.json"
    path.write_text("[1, 2", encoding="utf-8")  # not a JSON document: the file fails as a whole
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, fd: int, *args: Any, **kwargs: Any) -> None:
            self.file = real_fdopen(fd, *args, **kwargs)

        def __enter__(self) -> "FullDisk":
            return self

        def __exit__(self, *exc: object) -> None:
            self.file.close()

        def write(self, text: str) -> int:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(inbox_source.os, "fdopen", FullDisk)
    catalog = CatalogResource(definitions_dir=str(DEFINITIONS)).measures()
    with open_warehouse(f"duckdb:///{tmp_path / 'wh.duckdb'}") as wh:
        with pytest.raises(OSError, match="No space left on device"):
            inbox_source.process_file(wh, path, catalog, date(2020, 1, 1))
        assert wh.loss_counts() == (0, 0, 0)
    assert path.read_text(encoding="utf-8") == "[1, 2"
    assert list((inbox / "failed").iterdir()) == []
