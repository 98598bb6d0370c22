"""The inbox: files are ingested once, moved to processed/ or failed/ with a reason, never deleted."""

import json
from datetime import date
from pathlib import Path

import pytest
from dagster import SkipReason, build_sensor_context

from aggassets.jobs import ingest_inbox_job
from aggassets.resources import CatalogResource, WarehouseResource
from aggassets.sensors import inbox_sensor
from aggassets.warehouse import open_warehouse
from aggassets_tests.helpers import DEFINITIONS, make_measures, write_ndjson


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
    assert isinstance(inbox_sensor(build_sensor_context()), SkipReason)
    rows = make_measures(date(2025, 3, 3), 1, 5)
    good = write_ndjson(inbox / "a.ndjson", rows)
    copy = inbox / "b.json"
    copy.write_text(good.read_text())  # the same content under another name
    (inbox / "c.json").write_text('[{"measureName": ')  # unreadable document
    requests = inbox_sensor(build_sensor_context()).run_requests
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
