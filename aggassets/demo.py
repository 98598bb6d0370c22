"""`make demo`: generate ~1M realistic measures over 90 days and ~500k experiment events, ingest, refresh, summarise."""

import json
import os
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd

from aggassets import settings
from aggassets.catalog import MeasureCatalog, MeasureDefinition, load_measures
from aggassets.demo_events import generate_events
from aggassets.errors import AggassetsError
from aggassets.experiment_runs import run_experiment
from aggassets.experiments.definition import load_experiments
from aggassets.refresh import materialize_definitions, refresh_range
from aggassets.warehouse import demo_sql, duckdb_path, open_warehouse, redacted, refuse_default_in_production
from aggassets.warehouse.values import file_sha256, intake_totals

# Per measure: SQL value expression over random() (r1, r2) and group value choices.
VALUES = {
    "connection-count-daily": "floor(-ln(1 - r1) * 3)",
    "konnector-event-daily": "1",
    "session-duration-daily": "round(exp(5 + 1.2 * sqrt(-2 * ln(1 - r1)) * cos(6.283185 * r2)), 1)",
    "file-size-daily": "round(exp(11 + 2 * sqrt(-2 * ln(1 - r1)) * cos(6.283185 * r2)))",
    "sharing-count-weekly": "floor(-ln(1 - r1) * 2)",
    "active-users-weekly": "CASE WHEN r1 < 0.7 THEN 1 ELSE 0 END",
    "consumption-variation-monthly": "round(12 * sqrt(-2 * ln(1 - r1)) * cos(6.283185 * r2), 2)",
    "storage-used-monthly": "round(exp(21 + sqrt(-2 * ln(1 - r1)) * cos(6.283185 * r2)))",
    "error-count-daily": "CASE WHEN r1 < 0.85 THEN 0 ELSE floor(-ln(1 - r2) * 4) END",
}
CHOICES = {
    "device": ["desktop", "mobile", "tablet"],
    "slug": ["enedis", "grdf", "egl", "sfr", "orange", "free"],
    "event_type": ["connection", "refresh", "deletion"],
    "status": ["success", "error"],
    "sharing_type": ["file", "folder", "album"],
    "fluid_type": ["electricity", "gas", "water"],
    "dwelling_type": ["house", "apartment"],
    "offer": ["free", "premium", "pro"],
    "app": ["drive", "photos", "banks", "ecolyo"],
    "error_code": ["E401", "E500", "E504", "ETIMEOUT"],
}
PER_PERIOD = {"day": 2100, "week": 500, "month": 2000}
MALFORMED = [
    "{not json",
    '{"measureName": "connection-count-daily", "value": NaN, "startDate": "%s", "group1": {"device": "mobile"}}',
    '{"measureName": "unknown-measure", "value": 1, "startDate": "%s"}',
    '{"measureName": "connection-count-daily", "value": 1, "startDate": "yesterday", "group1": {"device": "x"}}',
    '{"measureName": "connection-count-daily", "value": 2, "startDate": "%s"}',
    "[1, 2, 3]",
    '{"measureName": "konnector-event-daily", "value": "abc", "startDate": "%s", "group1": {"slug": "egl"}}',
]


def _insert_measures(con: duckdb.DuckDBPyConnection, m: MeasureDefinition, first: date, last: date, count: int) -> None:
    """Generate one measure's payloads into the `payloads` table, `count` a period."""
    keys = [k for k in m.group_keys() if k]
    params: dict[str, object] = {"name": m.name, "first": first, "last": last, "count": count}
    if m.created_by:
        params["created_by"] = m.created_by
    for i, key in enumerate(keys, start=1):  # a rare value: below every threshold
        params |= {f"key{i}": key, f"rare{i}": f"{key}-rare", f"options{i}": CHOICES.get(key, ["a", "b"])}
    statement = demo_sql.insert_measures(VALUES.get(m.name, "r1"), m.aggregation_period, bool(m.created_by), len(keys))
    con.execute(statement, params)


def generate(
    catalog: MeasureCatalog, folder: Path, first: date, last: date, per_period: dict[str, int] | None = None
) -> tuple[Path, Path]:
    """The main NDJSON file and a late file (late + malformed measures)."""
    folder.mkdir(parents=True, exist_ok=True)
    counts = per_period or PER_PERIOD
    main, late = folder / "measures.ndjson", folder / "late-measures.ndjson"
    with duckdb.connect() as con:
        con.execute(demo_sql.SETUP)
        for m in catalog.measures:
            _insert_measures(con, m, first, last, counts[m.aggregation_period])
        con.execute(demo_sql.WRITE_PAYLOADS, {"path": str(main)})
        con.execute(demo_sql.CLEAR_PAYLOADS)
        daily = catalog.get("connection-count-daily")
        _insert_measures(con, daily, last - timedelta(days=2), last, PER_PERIOD["day"])  # 300 sampled
        lines = [r[0] for r in con.execute(demo_sql.LATE_PAYLOADS).fetchall()]
    lines += [t % last.isoformat() if "%s" in t else t for t in MALFORMED for _ in range(20)]
    late.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return main, late


def summary(url: str, first: date, last: date) -> dict[str, object]:
    """What the demo warehouse holds: measures, partitions, rows per grain, rejected, released."""
    with open_warehouse(url) as wh:
        out: dict[str, object] = {"measures": len(wh.read_table("measure_definitions"))}
        received, accepted, rejected = wh.loss_counts()
        out |= {"received": received, "accepted": accepted, "rejected": rejected}
        out["rejected_by_reason"] = wh.rejected_counts()
        for grain, table in (
            ("day", "daily_aggregates"),
            ("week", "weekly_aggregates"),
            ("month", "monthly_aggregates"),
        ):
            s = wh.fetch(wh.sql.window_summary(grain), {"start": date(2000, 1, 1), "end": date(2999, 1, 1)}).iloc[0]
            parts = wh.fetch(demo_sql.PARTITIONS[table]).iloc[0, 0]
            out[table] = {
                "partitions": int(parts),
                "rows": int(s["rows"]),
                "released": int(s["released"] or 0),
                "suppressed": int(s["suppressed"] or 0),
            }
    return out


def demo_warehouse() -> Path:
    """The project's DuckDB file, which the demo resets; AggassetsError when AGGASSETS_WAREHOUSE names another
    warehouse (one exported for production, say), which the demo must neither delete nor add to."""
    own = settings.PROJECT_ROOT / "data" / "aggassets.duckdb"
    chosen = os.environ.get("AGGASSETS_WAREHOUSE")
    path = duckdb_path(chosen) if chosen else None
    if chosen and (path in (None, ":memory:") or Path(str(path)).resolve() != own.resolve()):
        raise AggassetsError(
            f"the demo resets the project's own warehouse {own}, but AGGASSETS_WAREHOUSE names "
            f"{redacted(chosen)!r}: unset it to run the demo (nothing was changed)"
        )
    refuse_default_in_production(f"duckdb:///{own}")  # before the file is reset
    return own


def main() -> int:
    """Run the demo end to end on the embedded DuckDB file and print a summary."""
    own = demo_warehouse()
    url = f"duckdb:///{own}"
    catalog = load_measures(settings.definitions_dir())
    today = datetime.now(UTC).date()
    first, last = today - timedelta(days=90), today - timedelta(days=1)
    own.unlink(missing_ok=True)
    t0 = time.perf_counter()
    settings.inbox_dir().mkdir(parents=True, exist_ok=True)  # the folder inbox_sensor watches (make ui)
    main_file, late_file = generate(catalog, settings.PROJECT_ROOT / "data" / "demo", first, last)
    print(f"generated {main_file} and {late_file} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    with open_warehouse(url) as wh:
        wh.sync_definitions(catalog.measures)
        t1 = time.perf_counter()
        ingest = wh.ingest_file(main_file, catalog.measures, settings.partitions_start(), sha256=file_sha256(main_file))
        print(f"ingested {ingest.as_dict()} in {time.perf_counter() - t1:.1f}s", file=sys.stderr)
    t2 = time.perf_counter()
    materialize_definitions(url, str(settings.definitions_dir()))  # so that the UI shows the catalog too
    runs = refresh_range(first, today, url, str(settings.definitions_dir()))
    print(f"refreshed {runs} in {time.perf_counter() - t2:.1f}s", file=sys.stderr)
    with open_warehouse(url) as wh:
        late = wh.ingest_file(late_file, catalog.measures, settings.partitions_start(), sha256=file_sha256(late_file))
        late_parts = wh.late_partitions()
    print(f"late file: {late.as_dict()}; partitions to re-materialize: {len(late_parts)}", file=sys.stderr)
    late_runs = refresh_range(last - timedelta(days=2), today, url, str(settings.definitions_dir()))
    print(f"refreshed the late measures' partitions: {late_runs}", file=sys.stderr)
    t3 = time.perf_counter()
    event_files = generate_events(settings.PROJECT_ROOT / "data" / "demo" / "events")
    with open_warehouse(url) as wh:
        events = intake_totals([wh.ingest_events(path, file_sha256(path)) for path in event_files])
    print(f"generated and ingested {len(event_files)} event files in {time.perf_counter() - t3:.1f}s", file=sys.stderr)
    t4 = time.perf_counter()
    experiments = load_experiments(settings.definitions_dir() / "experiments")
    folder = str(settings.definitions_dir())
    evaluations = {exp_id: run_experiment(exp_id, today, url, folder) for exp_id in experiments}
    print(f"evaluated {len(evaluations)} experiments in {time.perf_counter() - t4:.1f}s", file=sys.stderr)
    result = summary(url, first, last)
    result["events"] = events
    result["experiments"] = {k: experiment_lines(v, experiments[k].control_variant) for k, v in evaluations.items()}
    result["window"] = f"{first} .. {last}"
    result["next"] = next_commands(first, today)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(render(result))
    return 0


def next_commands(first: date, today: date) -> list[str]:
    """The query and the three Dagster backfills of the demo's data, with its own dates (complete
    partitions only: weeks and months that ended before today)."""
    last_week = today - timedelta(days=today.weekday() + 7)
    last_month = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    materialize = "dagster asset materialize -m aggassets.definitions --select"
    return [
        f"aggassets aggregates query --measure connection-count-daily --start {first} --end {today}",
        f"export DAGSTER_HOME={settings.PROJECT_ROOT / '.dagster_home'}",
        f"{materialize} raw_measures,daily_aggregates --partition-range {first}...{today - timedelta(days=1)}",
        f"{materialize} weekly_aggregates --partition-range {first - timedelta(days=first.weekday())}...{last_week}",
        f"{materialize} monthly_aggregates --partition-range {first.replace(day=1)}...{last_month}",
    ]


def experiment_lines(metrics: pd.DataFrame, control: str) -> list[str]:
    """One line per metric and treatment variant: relative difference, interval, p-value, verdict."""
    lines = []
    for r in metrics[metrics.exp_variant_id != control].to_dict("records"):
        if r["reason"]:
            lines.append(f"{r['metric_name']} [{r['exp_variant_id']}]: {r['reason']}")
            continue
        verdict = "significant" if r["p_value"] < 1 - r["confidence_level"] else "not significant"
        lines.append(
            f"{r['metric_name']} [{r['exp_variant_id']}]: {100 * r['diff']:+.2f} % "
            f"(± {100 * r['confidence_interval']:.2f} %), p = {r['p_value']:.4f}, {verdict}"
        )
    return lines


def render(result: dict[str, object]) -> str:
    """The summary as readable text."""
    lines = [
        f"aggassets demo: {result['window']} ({result['seconds']} s)",
        f"  measures defined: {result['measures']}",
        f"  received {result['received']:,}  accepted {result['accepted']:,}  rejected {result['rejected']:,}",
        "  rejected by reason: " + json.dumps(result["rejected_by_reason"]),
        f"  {'table':<20}{'partitions':>11}{'rows':>9}{'released':>10}{'suppressed':>12}",
    ]
    for table in ("daily_aggregates", "weekly_aggregates", "monthly_aggregates"):
        t = result[table]
        assert isinstance(t, dict)
        lines.append(f"  {table:<20}{t['partitions']:>11}{t['rows']:>9}{t['released']:>10}{t['suppressed']:>12}")
    events = result.get("events")
    if isinstance(events, dict):
        lines.append(
            f"  events: received {events['received']:,}  accepted {events['accepted']:,}  rejected "
            f"{events['rejected']:,}  by reason {json.dumps(events['rejected_by_reason'])}"
        )
    for exp_id, rows in dict(result.get("experiments") or {}).items():  # type: ignore[call-overload]
        lines.append(f"  experiment {exp_id}:")
        lines += [f"    {row}" for row in rows]
    lines.append("Next: `make ui` to browse the runs; in the virtualenv (source .venv/bin/activate):")
    lines += [f"  {command}" for command in list(result.get("next") or [])]  # type: ignore[call-overload]
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AggassetsError as exc:
        print(f"aggassets demo: error: {exc}", file=sys.stderr)
        sys.exit(2)
