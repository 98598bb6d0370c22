"""The UI: a real `dagster dev` on 127.0.0.1 loads the code location (checked over GraphQL)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
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


@pytest.mark.slow
def test_dagster_dev_serves_the_code_location(tmp_path: Path) -> None:
    port = free_port()
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "deploy" / "dagster.yaml").read_text())
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "AGGASSETS_WAREHOUSE": f"duckdb:///{tmp_path / 'ui.duckdb'}",
        "AGGASSETS_INBOX": str(tmp_path / "inbox"),
    }
    dagster = Path(sys.executable).parent / "dagster"
    proc = subprocess.Popen(
        [str(dagster), "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        data: dict[str, Any] = {}
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not data:
            try:
                data = graphql(port)["data"]["repositoriesOrError"]
            except (OSError, KeyError, ValueError):
                assert proc.poll() is None, "dagster dev exited"
                time.sleep(2)
        (repo,) = data["nodes"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the group of the process this test started
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
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
