"""Schedules: refresh per grain from the partitioned jobs, and the daily purge."""

from dagster import RunRequest, ScheduleEvaluationContext, build_schedule_from_partitioned_job, schedule

from aggassets.jobs import daily_refresh_job, monthly_refresh_job, purge_job, weekly_refresh_job

daily_refresh_schedule = build_schedule_from_partitioned_job(
    daily_refresh_job, name="daily_refresh_schedule", hour_of_day=0, minute_of_hour=30,
    description="Every day at 00:30 UTC: raw measures and daily aggregates of the day that just ended.",
)
weekly_refresh_schedule = build_schedule_from_partitioned_job(
    weekly_refresh_job, name="weekly_refresh_schedule", hour_of_day=1, minute_of_hour=0,
    description="Every Monday at 01:00 UTC: weekly aggregates of the week (Monday-Sunday) that just ended.",
)
monthly_refresh_schedule = build_schedule_from_partitioned_job(
    monthly_refresh_job, name="monthly_refresh_schedule", hour_of_day=1, minute_of_hour=30,
    description="On the 1st of every month at 01:30 UTC: monthly aggregates of the month that just ended.",
)


@schedule(job=purge_job, cron_schedule="0 3 * * *", execution_timezone="UTC",
          description="Every day at 03:00 UTC: purge raw measures older than 90 days into sealed moments.")
def purge_schedule(context: ScheduleEvaluationContext) -> RunRequest:
    """Every day at 03:00 UTC: purge raw measures older than 90 days into sealed moments."""
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return RunRequest(run_key=f"purge-{day}", run_config={"ops": {"purge_raw_measures": {"config": {"days": 90}}}})


SCHEDULES = [daily_refresh_schedule, weekly_refresh_schedule, monthly_refresh_schedule, purge_schedule]
