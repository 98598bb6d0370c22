"""The demo's data generator and the commands it suggests."""

import json
from datetime import date
from pathlib import Path

from aggassets.catalog import MeasureCatalog, MeasureDefinition
from aggassets.demo import generate, next_commands


def test_next_commands_name_the_complete_partitions_of_the_demo() -> None:
    sunday = next_commands(date(2026, 9, 7), date(2026, 12, 6))  # the week of Monday 11-30 is not over
    assert sunday[0].endswith("--start 2026-09-07 --end 2026-12-06")
    assert sunday[2].endswith("raw_measures,daily_aggregates --partition-range 2026-09-07...2026-12-05")
    assert sunday[3].endswith("weekly_aggregates --partition-range 2026-09-07...2026-11-23")
    assert sunday[4].endswith("monthly_aggregates --partition-range 2026-09-01...2026-11-01")
    monday = next_commands(date(2026, 9, 9), date(2026, 12, 7))  # now it is; the first week began 09-07
    assert monday[3].endswith("weekly_aggregates --partition-range 2026-09-07...2026-11-30")


def test_generated_measures_are_valid_json_even_with_quotes_in_the_catalog(tmp_path: Path) -> None:
    catalog = MeasureCatalog((
        MeasureDefinition(
            name="connection-count-daily", aggregationPeriod="day", createdBy="o'brien app", group1Key="device"
        ),
        MeasureDefinition(name="plain-monthly", aggregationPeriod="month"),
    ))  # fmt: skip
    main, late = generate(catalog, tmp_path, date(2026, 1, 1), date(2026, 1, 10), {"day": 4, "week": 2, "month": 3})
    items = [json.loads(line) for line in main.read_text().splitlines()]
    by_name = {n: [i for i in items if i["measureName"] == n] for n in ("connection-count-daily", "plain-monthly")}
    assert len(by_name["connection-count-daily"]) == 10 * 4 and len(by_name["plain-monthly"]) == 1 * 3
    assert {i.get("createdBy") for i in by_name["connection-count-daily"]} <= {"o'brien app", "cozy-home"}
    assert all(set(i["group1"]) == {"device"} for i in by_name["connection-count-daily"])
    assert late.read_text().count("\n") > 0
