"""Experiment assets through real Dagster runs on a DuckDB warehouse; the daily schedule; `experiments run`."""

import io
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from dagster import (
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    DagsterRunStatus,
    build_schedule_context,
    materialize,
)
from scipy import stats

from aggassets.assets.experiments import build_experiment_assets
from aggassets.cli import main
from aggassets.definitions import build_definitions
from aggassets.resources import CatalogResource, WarehouseResource
from aggassets.runs import root_message
from aggassets.warehouse import open_warehouse
from aggassets.warehouse.experiments import evaluation_history
from aggassets_tests.events import insert_events

START = date(2026, 3, 2)
CONVERSION = {
    "id": "conv", "control_variant": "a", "variants": ["a", "b"], "unit_type": "user",
    "date_from": "2026-03-02", "date_to": "2026-03-15", "confidence_level": 0.95,
    "metrics": [
        {"id": 1, "name": "Conversion", "nominator": "unique(user.unit.purchase)",
         "denominator": "count(user.global.exposure)"},
        {"id": 2, "name": "Clicks per view", "nominator": "count(user.unit.click)",
         "denominator": "count(user.unit.view)"},
    ],
    "checks": [{"id": 1, "name": "SRM", "type": "SRM", "denominator": "count(user.global.exposure)"}],
}  # fmt: skip


def conversion_events(units: dict[str, int], rate: dict[str, float], seed: int = 3) -> pd.DataFrame:
    """One exposure per unit, a purchase with the variant's rate, and views / clicks per unit."""
    rng = np.random.default_rng(seed)
    parts = []
    for variant, n in units.items():
        ids = np.array([f"{variant}-{i}" for i in range(n)], dtype=object)
        day = [START + timedelta(days=int(d)) for d in rng.integers(0, 10, n)]
        bought = rng.random(n) < rate[variant]
        views = rng.integers(1, 6, n)
        clicks = rng.binomial(views, 0.3)
        one = np.ones(n, int)
        for goal, count, keep in (("exposure", one, one > 0), ("purchase", one, bought),
                                  ("view", views, views > 0), ("click", clicks, clicks > 0)):  # fmt: skip
            parts.append(pd.DataFrame({
                "date": np.array(day, dtype=object)[keep], "exp_id": "conv", "exp_variant_id": variant,
                "unit_type": "user", "unit_id": ids[keep], "goal": goal, "count": count[keep].astype("int64"),
                "value": 0.0,
            }))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


@pytest.fixture
def catalog_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "definitions"
    (folder / "experiments").mkdir(parents=True)
    (folder / "experiments" / "conv.json").write_text(json.dumps(CONVERSION))
    return folder


def _run(url: str, catalog: Path, as_of: date) -> Any:
    return materialize(
        build_experiment_assets(["conv"]), partition_key="conv",
        run_config={"ops": {"experiment_goals": {"config": {"as_of": as_of.isoformat()}}}},
        resources={"warehouse": WarehouseResource(url=url), "catalog": CatalogResource(definitions_dir=str(catalog))},
        raise_on_error=False,
    )  # fmt: skip


def _checks(result: Any) -> dict[str, Any]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_materialized_evaluation_matches_scipy_on_unit_level_data(tmp_path: Path, catalog_dir: Path) -> None:
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    events = conversion_events({"a": 3000, "b": 3000}, {"a": 0.10, "b": 0.20})
    with open_warehouse(url) as wh:
        insert_events(wh, events)
    result = _run(url, catalog_dir, date(2026, 3, 20))
    assert result.success
    with open_warehouse(url) as wh:
        metrics = evaluation_history(wh, "experiment_metrics", "conv", date(2026, 3, 20))
        exposures = evaluation_history(wh, "experiment_exposures", "conv")
    assert list(exposures.exposures) == [3000, 3000]
    bought: dict[str, np.ndarray] = {}
    for v in "ab":
        who = set(events[(events.goal == "purchase") & (events.exp_variant_id == v)].unit_id)
        bought[v] = np.array([f"{v}-{i}" in who for i in range(3000)], dtype=float)
    conv = metrics[metrics.metric_id == 1].set_index("exp_variant_id")
    assert conv.loc["b", "mean"] == pytest.approx(bought["b"].mean(), rel=1e-12)
    assert conv.loc["b", "abs_diff"] == pytest.approx(bought["b"].mean() - bought["a"].mean(), rel=1e-12)
    va, vb = (bought[v].var(ddof=1) / len(bought[v]) for v in "ab")  # Welch by hand, df truncated as ep-stats
    df = np.trunc((va + vb) ** 2 / (va * va / 2999 + vb * vb / 2999))
    t = (bought["b"].mean() - bought["a"].mean()) / np.sqrt(va + vb)
    assert conv.loc["b", "abs_p_value"] == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-9)
    assert conv.loc["b", "p_value"] < 1e-6  # a doubled rate on 3000 units per variant is plain to see
    ratio = metrics[metrics.metric_id == 2].set_index("exp_variant_id")
    for v in "ab":
        rows = events[events.exp_variant_id == v]
        want = rows[rows.goal == "click"]["count"].sum() / rows[rows.goal == "view"]["count"].sum()
        assert ratio.loc[v, "mean"] == pytest.approx(want, rel=1e-12)
        assert ratio.loc[v, "sample_size"] == 3000  # delta method: units, not views
    checks = _checks(result)
    assert checks["srm"].passed and checks["finite_statistics"].passed
    meta = result.asset_materializations_for_node("experiment_evaluations")[0].metadata
    table = meta["metrics"].value
    assert "| metric" in table and "Conversion" in table and "yes" in table
    assert meta["evaluation_date"].value == "2026-03-20"


def test_srm_check_warns_on_an_unbalanced_split(tmp_path: Path, catalog_dir: Path) -> None:
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    with open_warehouse(url) as wh:
        insert_events(wh, conversion_events({"a": 2000, "b": 2300}, {"a": 0.1, "b": 0.1}))
    result = _run(url, catalog_dir, date(2026, 3, 20))
    assert result.success  # a warning check does not fail the run
    srm = _checks(result)["srm"]
    assert stats.chisquare([2000, 2300]).pvalue < 0.001
    assert not srm.passed and srm.severity == AssetCheckSeverity.WARN
    assert srm.metadata["failed"].value == "SRM"


def test_history_keeps_each_evaluation_date(tmp_path: Path, catalog_dir: Path) -> None:
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    events = conversion_events({"a": 500, "b": 500}, {"a": 0.1, "b": 0.2})
    with open_warehouse(url) as wh:
        insert_events(wh, events)
    for day in (date(2026, 3, 5), date(2026, 3, 8), date(2026, 3, 5)):
        assert _run(url, catalog_dir, day).success
    with open_warehouse(url) as wh:
        exposures = evaluation_history(wh, "experiment_exposures", "conv")
    first = events[(events.goal == "exposure") & (events.date <= date(2026, 3, 5))]
    want = first.groupby("exp_variant_id").size().tolist()
    assert exposures[exposures.evaluation_date.astype(str) == "2026-03-05"].exposures.tolist() == want
    assert sorted(set(exposures.evaluation_date.astype(str))) == ["2026-03-05", "2026-03-08"]


def test_experiment_without_goals_materialized_first_fails_clearly(tmp_path: Path, catalog_dir: Path) -> None:
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    open_warehouse(url).close()  # a warehouse without goals (a missing one is refused first)
    assets = build_experiment_assets(["conv"])
    resources = {"warehouse": WarehouseResource(url=url), "catalog": CatalogResource(definitions_dir=str(catalog_dir))}
    result = materialize(assets, selection=["experiment_evaluations"], partition_key="conv", resources=resources,
                         raise_on_error=False)  # fmt: skip
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert "no goals stored for experiment 'conv'" in root_message(failure.event_specific_data.error)


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (date(2026, 3, 1), {}),
        (date(2026, 3, 2), {"conv": "2026-03-02"}),
        (date(2026, 3, 10), {"conv": "2026-03-09", "open": "2026-03-09"}),
        (date(2026, 3, 16), {"conv": "2026-03-15", "open": "2026-03-15"}),
        (date(2026, 3, 17), {"open": "2026-03-16"}),
    ],
)
def test_daily_schedule_evaluates_running_experiments(catalog_dir: Path, today: date, expected: dict) -> None:
    opened = {**CONVERSION, "id": "open", "date_from": "2026-03-05", "date_to": None}
    (catalog_dir / "experiments" / "open.json").write_text(json.dumps(opened))
    repo = build_definitions(warehouse="duckdb:///:memory:", definitions=str(catalog_dir)).get_repository_def()
    schedule = repo.get_schedule_def("experiment_evaluation_schedule")
    assert schedule.cron_schedule == "0 2 * * *"
    tick = datetime(today.year, today.month, today.day, 2, 0, tzinfo=UTC)
    resources = {"catalog": CatalogResource(definitions_dir=str(catalog_dir))}
    with build_schedule_context(scheduled_execution_time=tick, repository_def=repo, resources=resources) as context:
        data = schedule.evaluate_tick(context)
    got = {r.partition_key: r.run_config["ops"]["experiment_goals"]["config"]["as_of"] for r in data.run_requests or []}
    assert got == expected
    assert repo.asset_graph.get(AssetKey("experiment_goals")).partitions_def.get_partition_keys() == ["conv", "open"]


def cli_run(
    tmp_path: Path, catalog: Path, units: dict[str, int], rate: dict[str, float], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """`experiments run conv` on a new DuckDB warehouse holding conversion_events(units, rate): (code, out, err)."""
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    with open_warehouse(url) as wh:
        insert_events(wh, conversion_events(units, rate))
    code = main(["--warehouse", url, "--definitions", str(catalog), "experiments", "run", "conv",
                 "--as-of", "2026-03-20"])  # fmt: skip
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_run_prints_metrics_csv_with_absolute_columns(
    tmp_path: Path, catalog_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli_run(tmp_path, catalog_dir, {"a": 400, "b": 400}, {"a": 0.1, "b": 0.2}, capsys)
    assert code == 0 and err == ""  # an even split: no SRM warning
    frame = pd.read_csv(io.StringIO(out))
    assert list(frame.columns[-4:]) == ["abs_diff", "abs_confidence_interval", "abs_p_value", "reason"]
    assert {"exp_id", "metric_id", "p_value", "confidence_interval", "false_positive_risk"} <= set(frame.columns)
    assert len(frame) == 4 and set(frame.exp_variant_id) == {"a", "b"}


def test_cli_run_says_why_a_statistic_is_empty(
    tmp_path: Path, catalog_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No purchase in the control: the relative difference is NaN, and the printed reason says why."""
    code, out, _ = cli_run(tmp_path, catalog_dir, {"a": 400, "b": 400}, {"a": 0.0, "b": 0.2}, capsys)
    frame = pd.read_csv(io.StringIO(out), keep_default_na=False)
    b = frame[(frame.exp_variant_id == "b") & (frame.metric_id == 1)].iloc[0]
    assert code == 0 and b["diff"] == "" and b["reason"].startswith("zero control mean")


def test_cli_run_warns_on_stderr_when_the_srm_check_fails(
    tmp_path: Path, catalog_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """400 exposures against 250 for an even split: the SRM check fails (the asset check warns in the UI), and
    `experiments run` says so on stderr, with scipy's chi-square p-value; the metrics are printed all the same."""
    code, out, err = cli_run(tmp_path, catalog_dir, {"a": 400, "b": 250}, {"a": 0.1, "b": 0.1}, capsys)
    assert code == 0 and len(pd.read_csv(io.StringIO(out))) == 4
    p_value = stats.chisquare([400, 250]).pvalue
    assert p_value < 0.001 and err == (
        f"aggassets: warning: SRM check 'SRM' failed (p-value {p_value:.3g}): the variants' exposures do not "
        "follow the expected split, so the metrics may be biased\n"
    )


def test_cli_run_is_a_run_of_the_experiment_job_in_dagster_home(
    tmp_path: Path, catalog_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`experiments run` records a run of experiment_evaluation_job (as the UI and the schedule name it) for the
    experiment's partition, with both assets materialized."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((Path(__file__).parents[1] / "deploy" / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    with open_warehouse(url) as wh:
        insert_events(wh, conversion_events({"a": 50, "b": 50}, {"a": 0.1, "b": 0.2}))
    argv = [
        "--warehouse",
        url,
        "--definitions",
        str(catalog_dir),
        "experiments",
        "run",
        "conv",
        "--as-of",
        "2026-03-20",
    ]
    assert main(argv) == 0
    capsys.readouterr()
    with DagsterInstance.get() as instance:
        (run,) = instance.get_runs()
        assert run.tags["aggassets/evaluation_date"] == "2026-03-20"  # shown in the UI's run list
        assert (run.job_name, run.tags["dagster/partition"], run.status) == (
            "experiment_evaluation_job",
            "conv",
            DagsterRunStatus.SUCCESS,
        )
        materialized = {
            e.dagster_event.asset_key.to_user_string()
            for e in instance.all_logs(run.run_id)
            if e.dagster_event and e.dagster_event.event_type_value == "ASSET_MATERIALIZATION"
        }
        assert materialized == {"experiment_goals", "experiment_evaluations"}


def test_cli_run_prints_metrics_in_definition_then_variant_order(
    tmp_path: Path, catalog_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As `experiments evaluate` and ep-stats order them, whatever order the warehouse returns rows in."""
    ids = [7, 3, 12, 1, 9, 5, 11, 2, 8, 4, 10, 6]
    metrics = [{**CONVERSION["metrics"][i % 2], "id": m, "name": f"m{m}"} for i, m in enumerate(ids)]  # type: ignore[index]
    three = {**CONVERSION, "variants": ["c", "a", "b"], "metrics": metrics}
    (catalog_dir / "experiments" / "conv.json").write_text(json.dumps(three))
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    with open_warehouse(url) as wh:
        insert_events(wh, conversion_events({"a": 300, "b": 300, "c": 300}, {"a": 0.1, "b": 0.2, "c": 0.1}))
    code = main(["--warehouse", url, "--definitions", str(catalog_dir), "experiments", "run", "conv",
                 "--as-of", "2026-03-20"])  # fmt: skip
    assert code == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(zip(frame.metric_id, frame.exp_variant_id, strict=True)) == [(m, v) for m in ids for v in "abc"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["experiments", "run", "nope", "--as-of", "2026-03-20"], "unknown experiment 'nope' (catalog: conv)"),
        (["experiments", "run", "conv", "--as-of", "20-03-2026"], "run: error: argument --as-of: not a date"),
        (["experiments", "run", "conv", "--as-of", "20260320"], "run: error: argument --as-of: not a date"),
    ],
)
def test_cli_run_errors_are_one_line(
    tmp_path: Path, catalog_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    try:
        code = main(["--warehouse", f"duckdb:///{tmp_path / 'wh.duckdb'}", "--definitions", str(catalog_dir), *argv])
    except SystemExit as exc:  # argparse's own error (a malformed argument), as from the shell
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_cli_run_refuses_an_invalid_catalog_listing_every_error(
    tmp_path: Path, catalog_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (catalog_dir / "experiments" / "renamed.json").write_text(json.dumps(CONVERSION))
    broken = {**CONVERSION, "id": "broken", "metrics": [{**CONVERSION["metrics"][0], "nominator": "count(user.unit.)"}]}
    (catalog_dir / "experiments" / "broken.json").write_text(json.dumps(broken))
    code = main(["--warehouse", f"duckdb:///{tmp_path / 'wh.duckdb'}", "--definitions", str(catalog_dir),
                 "experiments", "run", "conv", "--as-of", "2026-03-20"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "broken.json" in err and "expected a goal name" in err
    assert "id 'conv' must equal the file name 'renamed'" in err


def test_cli_run_without_events_gives_nan_with_reasons(
    tmp_path: Path, catalog_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    open_warehouse(f"duckdb:///{tmp_path / 'wh.duckdb'}").close()  # an empty warehouse
    code = main(["--warehouse", f"duckdb:///{tmp_path / 'wh.duckdb'}", "--definitions", str(catalog_dir),
                 "experiments", "run", "conv", "--as-of", "2026-03-20"])  # fmt: skip
    assert code == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert len(frame) == 4 and frame["mean"].isna().all() and frame["p_value"].isna().all()
    with open_warehouse(f"duckdb:///{tmp_path / 'wh.duckdb'}") as wh:
        metrics = evaluation_history(wh, "experiment_metrics", "conv")
    assert set(metrics.reason) == {"empty variant: denominator is 0"}


def test_daily_schedule_gives_each_day_its_own_run_and_names_a_day_without_any(catalog_dir: Path) -> None:
    """Dagster launches a run key once: each day's evaluation has its own; a day with no running experiment
    is a skip that names the day."""
    repo = build_definitions(warehouse="duckdb:///:memory:", definitions=str(catalog_dir)).get_repository_def()
    schedule = repo.get_schedule_def("experiment_evaluation_schedule")
    resources = {"catalog": CatalogResource(definitions_dir=str(catalog_dir))}
    keys = []
    for day in (date(2026, 3, 3), date(2026, 3, 4)):
        tick = datetime(day.year, day.month, day.day, 2, 0, tzinfo=UTC)
        with build_schedule_context(scheduled_execution_time=tick, repository_def=repo, resources=resources) as context:
            keys += [r.run_key for r in schedule.evaluate_tick(context).run_requests or []]
    assert keys == ["conv:2026-03-03", "conv:2026-03-04"]
    tick = datetime(2026, 3, 20, 2, 0, tzinfo=UTC)
    with build_schedule_context(scheduled_execution_time=tick, repository_def=repo, resources=resources) as context:
        data = schedule.evaluate_tick(context)
    assert not data.run_requests and data.skip_message == "no experiment running on 2026-03-20"


@pytest.mark.parametrize("as_of", ["2026/03/10", "20260310", "2026-3-10"])
def test_an_as_of_that_is_not_yyyy_mm_dd_fails_the_run_naming_it(tmp_path: Path, catalog_dir: Path, as_of: str) -> None:
    """experiment_goals' config: the evaluation date is YYYY-MM-DD (README); anything else fails the run with a
    message that names the value, before any goal is stored."""
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    with open_warehouse(url) as wh:
        insert_events(wh, conversion_events({"a": 50, "b": 50}, {"a": 0.1, "b": 0.2}))
    resources = {"warehouse": WarehouseResource(url=url), "catalog": CatalogResource(definitions_dir=str(catalog_dir))}
    result = materialize(
        build_experiment_assets(["conv"]), partition_key="conv", resources=resources,
        run_config={"ops": {"experiment_goals": {"config": {"as_of": as_of}}}}, raise_on_error=False,
    )  # fmt: skip
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert failure.step_key == "experiment_goals"
    assert repr(as_of) in root_message(failure.event_specific_data.error)
    with open_warehouse(url) as wh:
        assert wh.read_table("experiment_goals").empty


def test_a_run_for_an_experiment_removed_from_the_catalog_fails_naming_it(tmp_path: Path, catalog_dir: Path) -> None:
    """A partition (or a run launched before the catalog changed) of an experiment whose file is gone: the run
    fails with the id and the experiments the catalog does hold."""
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    open_warehouse(url).close()
    resources = {"warehouse": WarehouseResource(url=url), "catalog": CatalogResource(definitions_dir=str(catalog_dir))}
    result = materialize(
        build_experiment_assets(["conv", "gone"]), partition_key="gone", resources=resources,
        run_config={"ops": {"experiment_goals": {"config": {"as_of": "2026-03-20"}}}}, raise_on_error=False,
    )  # fmt: skip
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert root_message(failure.event_specific_data.error).endswith("unknown experiment 'gone' (catalog: conv)")


def test_cli_run_whose_dagster_run_fails_is_one_line_naming_the_evaluation(
    tmp_path: Path, catalog_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """README: a failed run's cause is the error line. The warehouse path is a file (so the command goes on to
    launch the run) that DuckDB cannot open: the run fails at its first step; status 2, one line, no CSV."""
    path = tmp_path / "wh.duckdb"
    path.write_text("not a database\n")
    code = main(["--warehouse", f"duckdb:///{path}", "--definitions", str(catalog_dir), "experiments", "run", "conv",
                 "--as-of", "2026-03-20"])  # fmt: skip
    out, err = capsys.readouterr()
    assert (code, out) == (2, "") and len(err.strip().splitlines()) == 1
    assert err.startswith("aggassets: error: evaluation of conv failed (run ")
    assert "not a valid DuckDB database" in err
