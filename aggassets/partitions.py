"""Daily, weekly (Monday) and monthly partitions, UTC, one start date."""

from dagster import DailyPartitionsDefinition, MonthlyPartitionsDefinition, WeeklyPartitionsDefinition

from aggassets.settings import partitions_start

_START = partitions_start().isoformat()

daily_partitions = DailyPartitionsDefinition(start_date=_START, timezone="UTC")
weekly_partitions = WeeklyPartitionsDefinition(start_date=_START, day_offset=1, timezone="UTC")
monthly_partitions = MonthlyPartitionsDefinition(start_date=_START, timezone="UTC")

PARTITIONS_BY_GRAIN = {"day": daily_partitions, "week": weekly_partitions, "month": monthly_partitions}
