"""The Makefile's variables as README describes them (make -n: the commands, nothing run)."""

import os
import subprocess
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def _ui_command(**env: str) -> str:
    """The dagster dev line `make ui` would run with these environment variables."""
    base = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "DAGSTER_HOME_DIR", "UI_PORT")}
    done = subprocess.run(
        ["make", "-n", "ui"], cwd=PROJECT, env={**base, **env}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if "dagster dev" in line]
    return line


def test_make_ui_uses_the_projects_dagster_home_unless_dagster_home_dir_names_another() -> None:
    """README: an exported DAGSTER_HOME is not used; `DAGSTER_HOME_DIR=/path make ui` picks another (an
    environment variable was overridden by the Makefile's own value); UI_PORT picks the port."""
    assert _ui_command(DAGSTER_HOME="/srv/prod").startswith(f"DAGSTER_HOME={PROJECT / '.dagster_home'} ")
    line = _ui_command(DAGSTER_HOME_DIR="/tmp/elsewhere", UI_PORT="3001")
    assert line.startswith("DAGSTER_HOME=/tmp/elsewhere ") and line.endswith("-h 127.0.0.1 -p 3001")
