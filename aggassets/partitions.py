"""Daily, weekly (Monday) and monthly partitions, UTC, from one start date.

The first week and month are those containing the start date, so that a measure of the first days
(rolled up to its Monday or its month) has a partition.
"""

from datetime import timedelta

from dagster import DailyPartitionsDefinition, MonthlyPartitionsDefinition, WeeklyPartitionsDefinition

from aggassets.settings import partitions_start

_START = partitions_start()

daily_partitions = DailyPartitionsDefinition(start_date=_START.isoformat(), timezone="UTC")
weekly_partitions = WeeklyPartitionsDefinition(
    start_date=(_START - timedelta(days=_START.weekday())).isoformat(), day_offset=1, timezone="UTC"
)
monthly_partitions = MonthlyPartitionsDefinition(start_date=_START.replace(day=1).isoformat(), timezone="UTC")

PARTITIONS_BY_GRAIN = {"day": daily_partitions, "week": weekly_partitions, "month": monthly_partitions}
