"""The asset graph under real materialize() on a temporary DuckDB warehouse."""

import html
import re
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster import (
    DagsterInstance,
    ExecuteInProcessResult,
    RunRequest,
    SkipReason,
    build_sensor_context,
    materialize,
)
from markdown_it import MarkdownIt

from aggassets import resources as resources_module
from aggassets.assets.markdown import markdown
from aggassets.assets.measures import MEASURE_ASSETS
from aggassets.catalog import load_measures
from aggassets.definitions import build_definitions, defs
from aggassets.errors import AggassetsError, WarehouseUnavailable
from aggassets.resources import CatalogResource, WarehouseResource
from aggassets.sensors import late_measures_sensor
from aggassets.settings import partitions_start
from aggassets.warehouse import duckdb_engine, open_warehouse, require_existing
from aggassets_tests.helpers import DEFINITIONS, make_measures, write_ndjson

RANGE = {
    "day": ("2025-03-03", "2025-03-16"),
    "week": ("2025-03-03", "2025-03-10"),
    "month": ("2025-03-01", "2025-03-01"),
}
SELECTION = {
    "day": ["raw_measures", "daily_aggregates"],
    "week": ["weekly_aggregates"],
    "month": ["monthly_aggregates"],
}


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A temp DuckDB warehouse holding two weeks of generated measures (and a few bad lines)."""
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    catalog = load_measures(DEFINITIONS)
    rows = make_measures(date(2025, 3, 3), 14, 40)
    path = write_ndjson(tmp_path / "m.ndjson", rows, ("{bad", '{"measureName": "nope"}'))
    with open_warehouse(url) as wh:
        wh.sync_definitions(catalog.measures)
        wh.ingest_file(path, catalog.measures, partitions_start())
    return url


def run_all(url: str, instance: DagsterInstance) -> list[bool]:
    """Materialize every grain over RANGE (one single-run backfill each); all check results."""
    resources = {"warehouse": WarehouseResource(url=url), "catalog": CatalogResource(definitions_dir=str(DEFINITIONS))}
    passed: list[bool] = []
    for grain, (first, last) in RANGE.items():
        tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
        result = materialize(
            MEASURE_ASSETS, selection=SELECTION[grain], resources=resources, tags=tags, instance=instance
        )
        assert result.success
        passed += [
            e.event_specific_data.passed  # type: ignore[union-attr]
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        ]
    return passed


def tables(url: str) -> dict[str, pd.DataFrame]:
    """Every aggregate table, sorted, without the computation time."""
    with open_warehouse(url) as wh:
        return {
            t: wh.read_table(t, "measure_name, period_start, created_by, group1")
            .drop(columns="computed_at")
            .reset_index(drop=True)
            for t in ("daily_aggregates", "weekly_aggregates", "monthly_aggregates")
        }


def test_materialize_all_grains_checks_pass_and_match_numpy(url: str) -> None:
    with DagsterInstance.ephemeral() as instance:
        passed = run_all(url, instance)
    assert passed and all(passed)
    assert len(passed) == 1 + 3 * 5
    rows = make_measures(date(2025, 3, 3), 14, 40)
    frame = pd.DataFrame(
        [{"m": r["measureName"], "v": r["value"], "d": r["startDate"], "g": r["group1"]["device"]} for r in rows]
    )
    weekly = tables(url)["weekly_aggregates"]
    sel = frame[(frame.m == "session-duration-daily") & (frame.g == "mobile") & (frame.d < "2025-03-10")].v.to_numpy()
    row = weekly[
        (weekly.measure_name == "session-duration-daily")
        & (weekly.group1 == '"mobile"')
        & (weekly.period_start == pd.Timestamp("2025-03-03"))
    ].iloc[0]
    assert row["count"] == len(sel)
    assert row["std"] == pytest.approx(np.std(sel, ddof=1), rel=1e-12)
    assert row["median"] == pytest.approx(np.median(sel), rel=1e-12)
    assert row["first_quartile"] == pytest.approx(np.quantile(sel, 0.25), rel=1e-12)


def test_the_stored_checks_job_alone_finds_a_row_corrupted_after_its_run(url: str) -> None:
    """stored_checks_job runs the whole-table checks without a refresh: all pass after the runs, and a
    row changed afterwards fails its table's check (a refresh would have replaced the row)."""

    def stored_results(instance: DagsterInstance) -> dict[str, tuple[bool, dict[str, object]]]:
        job = build_definitions(warehouse=url, definitions=str(DEFINITIONS)).resolve_job_def("stored_checks_job")
        result = job.execute_in_process(instance=instance)
        evaluations = [
            e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
        ]
        return {
            e.asset_key.path[-1]: (e.passed, {k: v.value for k, v in e.metadata.items()})  # type: ignore[union-attr]
            for e in evaluations
        }

    with DagsterInstance.ephemeral() as instance:
        run_all(url, instance)
        before = stored_results(instance)
        assert set(before) == {"daily_aggregates", "weekly_aggregates", "monthly_aggregates"}
        assert all(passed for passed, _ in before.values())
        with open_warehouse(url) as wh:
            wh.execute("UPDATE weekly_aggregates SET std = -1 WHERE measure_name = 'session-duration-daily'")
            corrupted = int(wh.fetch("SELECT count(*) FROM weekly_aggregates WHERE std < 0").iloc[0, 0])
        after = stored_results(instance)
    assert corrupted > 0
    assert after["weekly_aggregates"][0] is False
    assert after["weekly_aggregates"][1]["std_non_negative_violations"] == corrupted
    assert after["daily_aggregates"][0] and after["monthly_aggregates"][0]


def test_raw_measures_metadata_counts_rejections_by_reason(url: str) -> None:
    """The window's accepted measures, and every rejection by reason (these were received today, after
    the window: none is counted in it)."""
    resources = {"warehouse": WarehouseResource(url=url), "catalog": CatalogResource(definitions_dir=str(DEFINITIONS))}
    result = materialize(MEASURE_ASSETS, selection=["raw_measures"], resources=resources, partition_key="2025-03-04")
    meta = result.asset_materializations_for_node("raw_measures")[0].metadata
    day = [r for r in make_measures(date(2025, 3, 3), 14, 40) if r["startDate"][:10] == "2025-03-04"]
    assert meta["accepted"].value == len(day) > 0
    assert meta["rejected_received_in_window"].value == 0 and meta["rejected_by_reason"].value == {}
    assert meta["rejected_by_reason_all_batches"].value == {"invalid_json": 1, "unknown_measure": 1}


def test_raw_measures_metadata_counts_purged_measures_as_accepted(url: str) -> None:
    """After a purge, the window's accepted measures are the same: those moved into sealed moments are
    counted, and named apart (here the day's measures without quartiles; quartile ones wait 100 days)."""
    resources = {"warehouse": WarehouseResource(url=url), "catalog": CatalogResource(definitions_dir=str(DEFINITIONS))}
    day = [r for r in make_measures(date(2025, 3, 3), 14, 40) if r["startDate"][:10] == "2025-03-04"]
    catalog = {d.name: d for d in load_measures(DEFINITIONS).measures}
    purgeable = [r for r in day if not catalog[r["measureName"]].with_quartiles]
    with open_warehouse(url) as wh:  # the day, and the week and month it feeds, refreshed after arrival
        for grain, start, end in [("day", 4, 5), ("week", 3, 10), ("month", 1, 32)]:
            wh.refresh(grain, date(2025, 3, start), date(2025, 3, 1) + timedelta(days=end - 1))
        assert sum(wh.purge(0, now=pd.Timestamp.now("UTC").tz_localize(None) + pd.Timedelta(days=1)).values()) > 0
    result = materialize(MEASURE_ASSETS, selection=["raw_measures"], resources=resources, partition_key="2025-03-04")
    meta = result.asset_materializations_for_node("raw_measures")[0].metadata
    assert meta["accepted"].value == len(day)
    assert meta["accepted_purged_into_sealed_moments"].value == len(purgeable) > 0
    assert len(purgeable) < len(day)


def test_materializing_twice_gives_identical_tables(url: str) -> None:
    with DagsterInstance.ephemeral() as instance:
        run_all(url, instance)
        first = tables(url)
        run_all(url, instance)
    second = tables(url)
    for name in first:
        pd.testing.assert_frame_equal(first[name], second[name])


def test_the_purge_job_seals_what_it_may_and_changes_no_figure(url: str) -> None:
    """purge_job (the daily purge schedule's job) with days=0 after every grain is materialized: the
    non-quartile measure's 560 raw rows go to sealed moments, the quartile measure's 560 stay (100 days
    of maxDaysToUpdateQuartile, counted from their receipt); every figure is unchanged, and the purged
    keys' rows record the purge. A bad config fails the run and purges nothing."""
    defs_here = build_definitions(warehouse=url, definitions=str(DEFINITIONS))
    purge = defs_here.get_job_def("purge_job")

    def run_purge(instance: DagsterInstance, **config: object) -> ExecuteInProcessResult:
        run_config = {"ops": {"purge_raw_measures": {"config": config}}}
        return purge.execute_in_process(run_config=run_config, instance=instance, raise_on_error=False)

    with DagsterInstance.ephemeral() as instance:
        run_all(url, instance)
        before = tables(url)
        for bad, message in (
            ({"days": 0, "measure": "no-such"}, "unknown measure"),
            ({"days": -1}, "days must be >= 0 (the age of the raw measures to purge), not -1"),
        ):
            failed = run_purge(instance, **bad)
            errors = [str(e.event_specific_data.error) for e in failed.get_step_failure_events()]  # type: ignore[union-attr]
            assert not failed.success and any(message in e for e in errors)
        with open_warehouse(url) as wh:
            assert wh.read_table("sealed_moments", "measure_name").empty
        assert run_purge(instance, days=0).success
    with open_warehouse(url) as wh:
        raw = wh.read_table("raw_measures", "seq")
        sealed = wh.read_table("sealed_moments", "measure_name")
    assert raw["measure_name"].value_counts().to_dict() == {"session-duration-daily": 14 * 40}
    assert set(sealed["measure_name"]) == {"connection-count-daily"}
    after = tables(url)
    for name, table in after.items():
        purged = table["measure_name"] == "connection-count-daily"
        assert table.loc[purged, "last_raw_measures_purged"].notna().all() and purged.any()
        assert table.loc[~purged, "last_raw_measures_purged"].isna().all()
        columns = [c for c in table.columns if c != "last_raw_measures_purged"]
        pd.testing.assert_frame_equal(before[name][columns], table[columns])


def test_late_measures_sensor_requests_exactly_the_late_partitions(url: str, tmp_path: Path) -> None:
    with DagsterInstance.ephemeral() as instance:
        run_all(url, instance)
    late = write_ndjson(
        tmp_path / "late.ndjson",
        [
            {
                "measureName": "connection-count-daily",
                "value": 3,
                "startDate": "2025-03-12",
                "group1": {"device": "tv"},
            },
        ],
    )
    catalog = load_measures(DEFINITIONS)
    with open_warehouse(url) as wh:
        wh.ingest_file(late, catalog.measures, partitions_start())
    with DagsterInstance.ephemeral() as instance:
        context = build_sensor_context(resources={"warehouse": WarehouseResource(url=url)}, instance=instance)
        result = late_measures_sensor(context)
        got = sorted((r.job_name, r.partition_key) for r in result.run_requests)
        assert got == [
            ("daily_refresh_job", "2025-03-12"),
            ("monthly_refresh_job", "2025-03-01"),
            ("weekly_refresh_job", "2025-03-10"),
        ]
        day = next(r for r in result.run_requests if r.job_name == "daily_refresh_job")
        run = instance.create_run_for_job(defs.resolve_job_def("daily_refresh_job"), tags=day.tags)
        pending = late_measures_sensor(context).run_requests  # the day's run is not finished: not asked again
        assert sorted(r.job_name for r in pending) == ["monthly_refresh_job", "weekly_refresh_job"]
        instance.report_run_failed(run)
        retried = [r for r in late_measures_sensor(context).run_requests if r.job_name == "daily_refresh_job"]
        assert [r.run_key for r in retried] == [f"{day.run_key}:retry1"]


def requested(requests: list[RunRequest]) -> list[tuple[str | None, str | None, str | None, str | None]]:
    """(job, partition key, range start, range end) of each run request."""
    return [
        (r.job_name, r.partition_key, r.tags.get("dagster/asset_partition_range_start"),
         r.tags.get("dagster/asset_partition_range_end"))
        for r in requests
    ]  # fmt: skip


def run_requests(url: str, instance: DagsterInstance, requests: list[RunRequest]) -> None:
    """Run what a sensor requested, as the daemon would; every run succeeds."""
    jobs = build_definitions(warehouse=url, definitions=str(DEFINITIONS))
    for request in requests:
        assert request.job_name is not None
        result = jobs.resolve_job_def(request.job_name).execute_in_process(
            instance=instance, tags=request.tags, partition_key=request.partition_key
        )
        assert result.success


def test_the_late_measures_sensor_aggregates_history_never_materialized(url: str, tmp_path: Path) -> None:
    """Two weeks of measures ingested and never refreshed (history loaded late): the sensor asks for every
    partition they feed, as ranges, and nothing once those runs are done. Measures of days before the
    partitions start (stored under an earlier AGGASSETS_PARTITIONS_START) have no partition: left out."""
    early = [
        {"measureName": "connection-count-daily", "value": 1, "startDate": "2019-06-04", "group1": {"device": "tv"}}
    ]
    with open_warehouse(url) as wh:
        wh.ingest_file(
            write_ndjson(tmp_path / "early.ndjson", early), load_measures(DEFINITIONS).measures, date(2019, 1, 1)
        )
    with DagsterInstance.ephemeral() as instance:
        context = build_sensor_context(resources={"warehouse": WarehouseResource(url=url)}, instance=instance)
        requests = late_measures_sensor(context).run_requests
        got = requested(requests)
        assert got == [
            ("daily_refresh_job", None, "2025-03-03", "2025-03-16"),
            ("weekly_refresh_job", None, "2025-03-03", "2025-03-10"),
            ("monthly_refresh_job", "2025-03-01", None, None),
        ]
        run_requests(url, instance, requests)
        skipped = late_measures_sensor(context)
        assert isinstance(skipped, SkipReason) and skipped.skip_message == "no late or unaggregated measures"
    with open_warehouse(url) as wh:
        counted = wh.fetch("SELECT sum(count) AS n FROM daily_aggregates")["n"].iloc[0]
    daily = {d.name for d in load_measures(DEFINITIONS).measures if d.aggregation_period == "day"}
    assert counted == sum(r["measureName"] in daily for r in make_measures(date(2025, 3, 3), 14, 40))


def test_late_measures_of_consecutive_days_are_one_ranged_run(url: str, tmp_path: Path) -> None:
    """Late measures on 2025-03-04..06 and 2025-03-12: one single-run backfill for the three days, one run for
    the 12th, one for the two weeks, one for the month; running them puts the late values in the tables."""
    with DagsterInstance.ephemeral() as instance:
        run_all(url, instance)
    days = ["2025-03-04", "2025-03-05", "2025-03-06", "2025-03-12"]
    late = [
        {"measureName": "connection-count-daily", "value": 1000, "startDate": d, "group1": {"device": "tv"}}
        for d in days
        for _ in range(5)  # the measure's threshold: released
    ]
    with open_warehouse(url) as wh:
        wh.ingest_file(
            write_ndjson(tmp_path / "late.ndjson", late), load_measures(DEFINITIONS).measures, date(2020, 1, 1)
        )
    range_of = {
        "daily_refresh_job": ("2025-03-04", "2025-03-06"),
        "weekly_refresh_job": ("2025-03-03", "2025-03-10"),
    }
    with DagsterInstance.ephemeral() as instance:
        context = build_sensor_context(resources={"warehouse": WarehouseResource(url=url)}, instance=instance)
        requests = late_measures_sensor(context).run_requests
        got = requested(requests)
        assert got == [
            ("daily_refresh_job", None, *range_of["daily_refresh_job"]),
            ("daily_refresh_job", "2025-03-12", None, None),
            ("weekly_refresh_job", None, *range_of["weekly_refresh_job"]),
            ("monthly_refresh_job", "2025-03-01", None, None),
        ]
        run_requests(url, instance, requests)
        assert isinstance(late_measures_sensor(context), SkipReason)  # nothing late any more
    with open_warehouse(url) as wh:
        tv = wh.fetch(
            "SELECT period_start, count, sum FROM daily_aggregates WHERE group1 = '\"tv\"' ORDER BY period_start"
        )
    assert [(str(p)[:10], n, total) for p, n, total in tv.itertuples(index=False)] == [(d, 5, 5000.0) for d in days]


def test_late_measures_sensor_skips_when_nothing_is_late(url: str) -> None:
    with DagsterInstance.ephemeral() as instance:
        run_all(url, instance)
        context = build_sensor_context(resources={"warehouse": WarehouseResource(url=url)}, instance=instance)
        result = late_measures_sensor(context)
    assert isinstance(result, SkipReason)
    assert result.skip_message == "no late or unaggregated measures"


def test_late_measures_sensor_skips_a_held_file_and_reports_a_real_error(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file another process holds is tried again at the next tick; a broken warehouse is an error
    the UI shows, not a quiet skip."""
    monkeypatch.setattr(duckdb_engine, "LOCK_WAIT_SECONDS", 0.3)
    path = url.removeprefix("duckdb:///")
    code = f"import duckdb, sys; c = duckdb.connect({path!r}); print('held', flush=True); sys.stdin.read()"
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    with DagsterInstance.ephemeral() as instance:
        resource = WarehouseResource(url=url, unavailable_retries=10)  # as the code location's: no step retry here
        context = build_sensor_context(resources={"warehouse": resource}, instance=instance)
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            skipped = late_measures_sensor(context)
            assert isinstance(skipped, SkipReason) and "warehouse not readable now" in str(skipped.skip_message)
        finally:
            holder.communicate(timeout=30)
        with open_warehouse(url) as wh:
            wh.execute("ALTER TABLE partition_materializations RENAME COLUMN materialized_at TO changed_by_hand")
        with pytest.raises(duckdb.BinderException, match="materialized_at"):
            late_measures_sensor(context)


def refresh_day(resources: dict[str, object], day: str = "2025-03-04", **kwargs: object) -> ExecuteInProcessResult:
    """raw_measures and daily_aggregates of one day, materialized in one run."""
    return materialize(
        MEASURE_ASSETS, selection=["raw_measures", "daily_aggregates"], resources=resources, partition_key=day, **kwargs
    )


def markdown_rows(text: str) -> list[dict[str, str]]:
    """A Markdown table's rows as {header: cell text}."""
    rows = [re.split(r"(?<!\\)\|", line.strip().removeprefix("|").removesuffix("|")) for line in text.splitlines()]
    header, _, *lines = [[re.sub(r"\\(.)", r"\1", c.strip()) for c in cells] for cells in rows]  # GFM escapes
    return [dict(zip(header, cells, strict=True)) for cells in lines]


def test_markdown_cells_keep_their_text_on_one_row() -> None:
    """A '|', a backslash or a line end inside a cell neither ends the cell nor starts a row: a line end
    shows as \\n."""
    frame = pd.DataFrame({"group1": ["slug=a|b", "app=x\ny", "path=c:\\d|", "app=r\r\nq"], "count": [1, 2, 3, 4]})
    text = str(markdown(frame).value)
    assert len(text.splitlines()) == 2 + 4
    shown = [r["group1"] for r in markdown_rows(text)]
    assert shown == ["slug=a|b", "app=x\\ny", "path=c:\\d|", "app=r\\r\\nq"]


def test_markdown_cells_show_markdown_punctuation_as_written() -> None:
    """Rendered by a CommonMark renderer with GFM tables (markdown-it-py), a cell shows its text as written:
    no emphasis, code, link, strikethrough, HTML tag or entity made of a group value."""
    values = ["app=*x* _y_", "slug=`code`", "app=[a](http://b)", "app=<b>bold</b>", "os=~~s~~", "app=&amp; !#x"]
    frame = pd.DataFrame({"group1": values, "count": range(len(values))})
    rendered = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(str(markdown(frame).value))
    cells = re.findall(r"<td[^>]*>(.*?)</td>", rendered)[0::2]
    assert [html.unescape(c) for c in cells] == values
    assert not any("<" in c for c in cells)  # no tag: every '<' of a value is the entity &lt;


def test_aggregate_metadata_counts_released_rows_and_previews_every_key_column(tmp_path: Path) -> None:
    """Rows, released and suppressed rows by the measures' thresholds; the preview shows the released rows
    only, with all three groups (four connector rows differ by group2/group3 only), dates without a time,
    blank cells for absent values (no median of a measure without quartiles)."""
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    day = "2025-03-04"
    rng = np.random.default_rng(7)
    rows: list[dict[str, object]] = []
    for event, status in [("run", "ok"), ("run", "error"), ("login", "ok"), ("login", "error")]:
        group = {"group1": {"slug": "e|df"}, "group2": {"event_type": event}, "group3": {"status": status}}
        rows += [{"measureName": "konnector-event-daily", "value": 1, "startDate": day, **group}] * 12
    for device, n in [("desktop", 6), ("mobile", 3)]:  # threshold 5: mobile is suppressed
        rows += [
            {"measureName": "connection-count-daily", "value": float(v), "startDate": day, "group1": {"device": device}}
            for v in rng.integers(0, 20, n)
        ]
    durations = rng.lognormal(4, 1, 25)  # threshold 20, with quartiles
    rows += [
        {"measureName": "session-duration-daily", "value": float(v), "startDate": day, "group1": {"device": "desktop"}}
        for v in durations
    ]
    catalog = load_measures(DEFINITIONS)
    with open_warehouse(url) as wh:
        wh.sync_definitions(catalog.measures)
        wh.ingest_file(write_ndjson(tmp_path / "m.ndjson", rows), catalog.measures, partitions_start())
    resources = {"warehouse": WarehouseResource(url=url), "catalog": CatalogResource(definitions_dir=str(DEFINITIONS))}
    result = refresh_day(resources, day=day)
    meta = result.asset_materializations_for_node("daily_aggregates")[0].metadata
    assert (meta["rows"].value, meta["released_rows"].value, meta["suppressed_rows"].value) == (7, 6, 1)
    preview = markdown_rows(meta["preview"].value)
    columns = ["measure_name", "period_start", "group1", "group2", "group3", "count", "avg", "std", "median"]
    assert list(preview[0]) == columns  # created_by is blank in every row: left out
    keys = {(r["measure_name"], r["group1"], r["group2"], r["group3"]) for r in preview}
    assert len(keys) == len(preview) == 6 and ("connection-count-daily", "device=desktop", "", "") in keys
    assert ("konnector-event-daily", "slug=e|df", "event_type=login", "status=error") in keys  # '|' escaped
    assert {r["period_start"] for r in preview} == {day}
    session = next(r for r in preview if r["measure_name"] == "session-duration-daily")
    assert float(session["median"]) == pytest.approx(np.median(durations), rel=1e-6)
    assert {r["median"] for r in preview if r["measure_name"] != "session-duration-daily"} == {""}
    desktop = [
        r["value"] for r in rows if r["measureName"] == "connection-count-daily" and r["group1"]["device"] == "desktop"
    ]
    connections = next(r for r in preview if r["measure_name"] == "connection-count-daily")
    assert float(connections["avg"]) == pytest.approx(np.mean(desktop), rel=1e-5)


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_missing_warehouse_fails_runs_and_skips_the_sensor_without_creating_it(
    tmp_path: Path, request: pytest.FixtureRequest, engine: str
) -> None:
    """A mistyped warehouse URL in the code location: refresh, purge and the stored checks fail naming it,
    the late-measure sensor skips naming it, and no empty warehouse appears; materializing
    measure_definitions (the catalog's sync) creates it, after which the refresh runs."""
    missing = tmp_path / "typo" / "wh.duckdb"
    url = f"duckdb:///{missing}" if engine == "duckdb" else request.getfixturevalue("postgres_url")
    message = (
        f"no DuckDB warehouse at {missing}" if engine == "duckdb" else "no aggassets warehouse in PostgreSQL schema"
    )
    resources = {"warehouse": WarehouseResource(url=url), "catalog": CatalogResource(definitions_dir=str(DEFINITIONS))}
    defs_here = build_definitions(warehouse=url, definitions=str(DEFINITIONS))
    with DagsterInstance.ephemeral() as instance:
        runs = [
            refresh_day(resources, instance=instance, raise_on_error=False),
            defs_here.get_job_def("purge_job").execute_in_process(instance=instance, raise_on_error=False),
        ]
        for result in runs:
            assert not result.success
            causes = [e.event_specific_data.error for e in result.get_step_failure_events()]  # type: ignore[union-attr]
            assert causes and all(message in str(c.cause.message if c.cause else c.message) for c in causes)
        context = build_sensor_context(resources={"warehouse": WarehouseResource(url=url)}, instance=instance)
        skipped = late_measures_sensor(context)
        assert isinstance(skipped, SkipReason) and message in str(skipped.skip_message)
        if engine == "duckdb":
            assert not missing.parent.exists()
        else:
            with pytest.raises(AggassetsError, match="no aggassets warehouse"):
                require_existing(url)
        created = materialize(MEASURE_ASSETS, selection=["measure_definitions"], resources=resources, instance=instance)
        assert created.success
        refreshed = refresh_day(resources, instance=instance)
        assert refreshed.success


def test_a_run_retries_its_step_while_another_process_holds_the_file(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The code location's resource (unavailable_retries) retries a step that finds the DuckDB file held, so a
    scheduled refresh outlasts a command holding it; without retries (the `aggassets` command's) the run
    fails at once, naming the file. The holder lets go once a step has found the file held."""
    monkeypatch.setattr(duckdb_engine, "LOCK_WAIT_SECONDS", 0.3)
    path = url.removeprefix("duckdb:///")
    hold = f"import duckdb, sys; c = duckdb.connect({path!r}); print('held', flush=True); sys.stdin.readline()"
    holder: subprocess.Popen[str] | None = None
    opener = resources_module.open_warehouse

    def open_then_release(warehouse_url: str) -> object:
        try:
            return opener(warehouse_url)
        except WarehouseUnavailable:
            assert holder is not None and holder.stdin is not None
            holder.stdin.write("go\n")
            holder.stdin.flush()
            holder.wait(timeout=60)
            raise

    monkeypatch.setattr(resources_module, "open_warehouse", open_then_release)
    catalog = CatalogResource(definitions_dir=str(DEFINITIONS))
    for retries in (0, 3):
        holder = subprocess.Popen(
            [sys.executable, "-c", hold], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            resources = {
                "warehouse": WarehouseResource(url=url, unavailable_retries=retries, unavailable_wait_seconds=0.5),
                "catalog": catalog,
            }
            result = refresh_day(resources, raise_on_error=False)
        finally:
            holder.communicate(timeout=60)
        retried = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
        if retries:
            assert result.success and len(retried) == 1
        else:
            assert not result.success and not retried
            failure = result.get_step_failure_events()[0].event_specific_data.error  # type: ignore[union-attr]
            message = failure.cause.message if failure.cause else failure.message
            assert f"cannot open the DuckDB warehouse {path}" in message
    location = defs.resources["warehouse"]
    assert (location.unavailable_retries, location.unavailable_wait_seconds) == (10, 60.0)  # 10 minutes


def test_a_run_retries_its_step_while_postgresql_refuses_the_connection(tmp_path: Path) -> None:
    """A PostgreSQL server that does not answer (nothing listens on port 1) is unavailable, retried as a
    held DuckDB file is; the run fails naming it once the retries are spent."""
    url = "postgresql://postgres@127.0.0.1:1/postgres?schema=aggassets_nowhere"
    resources = {
        "warehouse": WarehouseResource(url=url, unavailable_retries=2, unavailable_wait_seconds=0.1),
        "catalog": CatalogResource(definitions_dir=str(DEFINITIONS)),
    }
    result = materialize(
        MEASURE_ASSETS,
        selection=["raw_measures"],
        resources=resources,
        partition_key="2025-03-04",
        raise_on_error=False,
    )
    assert not result.success
    assert len([e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]) == 2
    failure = result.get_step_failure_events()[0].event_specific_data.error  # type: ignore[union-attr]
    assert "cannot connect to PostgreSQL" in (failure.cause.message if failure.cause else failure.message)
