"""The UI: a real `dagster dev` on 127.0.0.1 loads the code location (checked over GraphQL)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from aggassets.settings import PROJECT_ROOT
from aggassets_tests.test_definitions import ASSETS

QUERY = """{ repositoriesOrError { ... on RepositoryConnection { nodes {
  name location { name } jobs { name } schedules { name } sensors { name }
  assetNodes { assetKey { path } } } } } }"""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def graphql(port: int) -> dict[str, Any]:
    """POST the query to the webserver."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": QUERY}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def dagster_home(tmp_path: Path, config: str) -> Path:
    """tmp_path/dagster_home holding `config` as its dagster.yaml (created once, rewritten after)."""
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text(config)
    return home


@contextmanager
def dagster_process(tmp_path: Path, config: str, *argv: str) -> Iterator[subprocess.Popen[bytes]]:
    """A Dagster command (`dagster dev`, `dagster-daemon run`) on tmp_path/dagster_home, its dagster.yaml
    `config`, with a temporary warehouse and inbox, in its own process group; stopped (the group this test
    started) after."""
    home = dagster_home(tmp_path, config)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "AGGASSETS_WAREHOUSE": f"duckdb:///{tmp_path / 'ui.duckdb'}",
        "AGGASSETS_INBOX": str(tmp_path / "inbox"),
    }
    command = [str(Path(sys.executable).parent / argv[0]), *argv[1:], "-w", str(PROJECT_ROOT / "workspace.yaml")]
    proc = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
def test_dagster_dev_serves_the_code_location(tmp_path: Path) -> None:
    port = free_port()
    config = (PROJECT_ROOT / "deploy" / "dagster.yaml").read_text()
    with dagster_process(tmp_path, config, "dagster", "dev", "-h", "127.0.0.1", "-p", str(port)) as proc:
        data: dict[str, Any] = {}
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not data:
            try:
                data = graphql(port)["data"]["repositoriesOrError"]
            except (OSError, KeyError, ValueError):
                assert proc.poll() is None, "dagster dev exited"
                time.sleep(2)
        (repo,) = data["nodes"]
    assert repo["location"]["name"] == "aggassets"
    assets = {"/".join(a["assetKey"]["path"]) for a in repo["assetNodes"]}
    assert assets >= ASSETS
    assert {
        "daily_refresh_job",
        "weekly_refresh_job",
        "monthly_refresh_job",
        "purge_job",
        "experiment_evaluation_job",
    } <= {j["name"] for j in repo["jobs"]}
    assert {s["name"] for s in repo["schedules"]} >= {
        "daily_refresh_schedule",
        "purge_schedule",
        "experiment_evaluation_schedule",
    }
    assert {s["name"] for s in repo["sensors"]} >= {"inbox_sensor", "late_measures_sensor"}


@pytest.mark.slow
def test_the_daemon_frees_the_pool_slot_of_a_run_whose_worker_was_killed(tmp_path: Path) -> None:
    """A run worker killed outright (kill -9, OOM) leaves its run failed but its "warehouse" slot claimed, and
    every later run queued behind it: both instance files turn on run monitoring, whose daemon frees the
    slots of ended runs (a real `dagster-daemon`; its intervals shortened from 30 s to 2 s here)."""
    import yaml
    from dagster import DagsterInstance
    from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

    local, production = (
        yaml.safe_load((PROJECT_ROOT / "deploy" / name).read_text())
        for name in ("dagster.yaml", "dagster.production.yaml")
    )
    assert local["run_monitoring"]["enabled"] and local["run_monitoring"]["free_slots_after_run_end_seconds"] > 0
    assert production["run_monitoring"] == local["run_monitoring"]
    local["run_monitoring"] |= {"poll_interval_seconds": 2, "free_slots_after_run_end_seconds": 2}
    config = yaml.safe_dump(local)
    with DagsterInstance.from_config(str(dagster_home(tmp_path, config))) as instance:
        slots = instance.event_log_storage
        run = instance.add_run(DagsterRun(job_name="ingest_inbox_job", status=DagsterRunStatus.STARTED))
        slots.initialize_concurrency_limit_to_default("warehouse")
        slots.claim_concurrency_slot("warehouse", run.run_id, "ingest_inbox_files")
        instance.report_run_failed(run)  # what Dagster records when the worker is gone; the slot stays
        assert slots.get_concurrency_info("warehouse").active_run_ids == {run.run_id}
        with dagster_process(tmp_path, config, "dagster-daemon", "run") as daemon:
            deadline = time.monotonic() + 120
            while slots.get_concurrency_info("warehouse").active_slot_count and time.monotonic() < deadline:
                assert daemon.poll() is None, "dagster-daemon exited"
                time.sleep(1)
            assert slots.get_concurrency_info("warehouse").active_slot_count == 0
