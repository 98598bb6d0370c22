"""The code location loads; schedules tick to the right partitions."""

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import AssetKey, AssetsDefinition, build_schedule_context

from aggassets.definitions import build_definitions, defs
from aggassets.errors import AggassetsError
from aggassets.partitions import PARTITIONS_BY_GRAIN
from aggassets_tests.helpers import DEFINITIONS

ASSETS = {
    "measure_definitions",
    "raw_measures",
    "daily_aggregates",
    "weekly_aggregates",
    "monthly_aggregates",
    "experiment_goals",
    "experiment_evaluations",
}


def test_definitions_load_with_every_part() -> None:
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert keys >= ASSETS
    assert {
        "daily_refresh_job",
        "weekly_refresh_job",
        "monthly_refresh_job",
        "purge_job",
        "ingest_inbox_job",
        "experiment_evaluation_job",
    } <= {j.name for j in repo.get_all_jobs()}
    assert {
        "daily_refresh_schedule",
        "weekly_refresh_schedule",
        "monthly_refresh_schedule",
        "purge_schedule",
        "experiment_evaluation_schedule",
    } == {s.name for s in repo.schedule_defs}
    partitions = repo.asset_graph.get(AssetKey("experiment_goals")).partitions_def
    assert partitions.get_partition_keys() == sorted(p.stem for p in (DEFINITIONS / "experiments").glob("*.json"))
    assert {"inbox_sensor", "late_measures_sensor"} == {s.name for s in repo.sensor_defs}


def test_every_asset_is_labelled_with_the_warehouse_engines_and_takes_its_pool() -> None:
    """The UI's kinds (duckdb, postgres) and DESIGN §3's pool on every asset, the partitioned ones included."""
    for assets in defs.assets or []:
        assert isinstance(assets, AssetsDefinition)
        assert [spec.kinds for spec in assets.specs] == [{"duckdb", "postgres"}], assets.key
        assert assets.op.pool == "warehouse", assets.key


def test_every_definition_has_a_one_line_docstring() -> None:
    """DESIGN §2: every asset, job, schedule, sensor and check has a one-line docstring (the UI's text;
    measure_definitions' ran over two lines)."""
    repo = defs.get_repository_def()
    described = {str(key): repo.asset_graph.get(key).description for key in (AssetKey(a) for a in ASSETS)}
    for item in [*repo.schedule_defs, *repo.sensor_defs, *repo.get_all_jobs()]:
        if not item.name.startswith("__"):
            described[item.name] = item.description
    for key in repo.asset_graph.asset_check_keys:
        described[key.to_user_string()] = repo.asset_graph.get_check_spec(key).description
    assert len(described) > len(ASSETS) + 10
    assert {name: text for name, text in described.items() if not text or "\n" in text.strip()} == {}


@pytest.mark.parametrize(
    ("schedule", "tick", "partition"),
    [
        ("daily_refresh_schedule", datetime(2026, 11, 23, 0, 30, tzinfo=UTC), "2026-11-22"),
        ("weekly_refresh_schedule", datetime(2026, 11, 23, 1, 0, tzinfo=UTC), "2026-11-16"),
        ("monthly_refresh_schedule", datetime(2026, 12, 1, 1, 30, tzinfo=UTC), "2026-11-01"),
    ],
)
def test_refresh_schedules_tick_to_the_period_that_ended(schedule: str, tick: datetime, partition: str) -> None:
    repo = defs.get_repository_def()
    sched = repo.get_schedule_def(schedule)
    with build_schedule_context(scheduled_execution_time=tick, repository_def=repo) as context:
        data = sched.evaluate_tick(context)
    assert [r.partition_key for r in data.run_requests or []] == [partition]


def test_purge_schedule_runs_daily_with_90_days() -> None:
    repo = defs.get_repository_def()
    sched = repo.get_schedule_def("purge_schedule")
    assert sched.cron_schedule == "0 3 * * *"
    tick = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
    with build_schedule_context(scheduled_execution_time=tick, repository_def=repo) as context:
        data = sched.evaluate_tick(context)
    (request,) = data.run_requests or []
    assert request.run_config == {"ops": {"purge_raw_measures": {"config": {"days": 90}}}}


def test_first_week_and_month_contain_the_partitions_start() -> None:
    # AGGASSETS_PARTITIONS_START defaults to 2020-01-01, a Wednesday: its week starts Monday 2019-12-30
    assert PARTITIONS_BY_GRAIN["day"].get_first_partition_key() == "2020-01-01"
    assert PARTITIONS_BY_GRAIN["week"].get_first_partition_key() == "2019-12-30"
    assert PARTITIONS_BY_GRAIN["month"].get_first_partition_key() == "2020-01-01"


@pytest.mark.parametrize("child", ["weekly_aggregates", "monthly_aggregates"])
@pytest.mark.parametrize("parent", ["raw_measures", "daily_aggregates"])
def test_every_week_and_month_can_be_backfilled_though_the_first_begin_before_the_first_day(
    child: str, parent: str
) -> None:
    """A backfill of all weeks (the UI's default) failed: week 2019-12-30 needs days before 2020-01-01."""
    graph = defs.resolve_asset_graph()
    child_def = graph.get(AssetKey(child)).partitions_def
    parent_def = graph.get(AssetKey(parent)).partitions_def
    assert child_def is not None and parent_def is not None
    mapping = graph.get_partition_mapping(AssetKey(child), AssetKey(parent))  # as a backfill plans it
    every = child_def.subset_with_all_partitions()
    result = mapping.get_upstream_mapped_partitions_result_for_partitions(every, child_def, parent_def)
    assert result.required_but_nonexistent_subset.is_empty
    assert result.partitions_subset.get_partition_keys()[0] == "2020-01-01"


def test_a_warehouse_password_does_not_reach_the_ui(monkeypatch: pytest.MonkeyPatch) -> None:
    """The resource holds AGGASSETS_WAREHOUSE as an EnvVar: the code location's snapshot, which the UI
    shows, names the variable, not the URL with its password."""
    from dagster._core.remote_representation.external_data import RepositorySnap
    from dagster._serdes import serialize_value

    monkeypatch.setenv("AGGASSETS_WAREHOUSE", "postgresql://app:S3cretPassw0rd@db.internal:5432/warehouse")
    snapshot = serialize_value(RepositorySnap.from_def(build_definitions().get_repository_def()))
    assert "S3cretPassw0rd" not in snapshot and "AGGASSETS_WAREHOUSE" in snapshot


def test_refresh_schedules_tick_at_the_readme_times() -> None:
    """README: daily at 00:30 UTC, weekly on Mondays at 01:00, monthly on the 1st at 01:30."""
    repo = defs.get_repository_def()
    crons = {
        name: (repo.get_schedule_def(name).cron_schedule, repo.get_schedule_def(name).execution_timezone)
        for name in ("daily_refresh_schedule", "weekly_refresh_schedule", "monthly_refresh_schedule")
    }
    assert crons == {
        "daily_refresh_schedule": ("30 0 * * *", "UTC"),
        "weekly_refresh_schedule": ("0 1 * * 1", "UTC"),
        "monthly_refresh_schedule": ("30 1 1 * *", "UTC"),
    }


def test_purge_schedule_run_keys_differ_per_day() -> None:
    """A daily purge needs a run key of its own each day: one key for every day would run it once."""
    repo = defs.get_repository_def()
    sched = repo.get_schedule_def("purge_schedule")
    keys = []
    for day in (23, 23, 24):
        tick = datetime(2026, 11, day, 3, 0, tzinfo=UTC)
        with build_schedule_context(scheduled_execution_time=tick, repository_def=repo) as context:
            (request,) = sched.evaluate_tick(context).run_requests or []
        keys.append(request.run_key)
    assert keys[0] == keys[1] != keys[2]


def test_a_catalog_folder_that_does_not_exist_fails_the_code_location_naming_it(tmp_path: Path) -> None:
    """A deployment whose AGGASSETS_DEFINITIONS names no folder fails to load, naming it (the UI shows the
    location's error), rather than loading without experiments and failing every run later."""
    missing = tmp_path / "catalog"
    with pytest.raises(AggassetsError, match=f"^the catalog folder {missing} does not exist: copy the catalog"):
        build_definitions(warehouse="duckdb:///:memory:", definitions=str(missing))
    env = {**os.environ, "AGGASSETS_DEFINITIONS": str(missing)}
    dagster = Path(sys.executable).with_name("dagster")
    done = subprocess.run(
        [str(dagster), "definitions", "validate", "-m", "aggassets.definitions"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and f"the catalog folder {missing} does not exist" in done.stdout + done.stderr
