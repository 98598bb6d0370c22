"""Schedules: refresh per grain from the partitioned jobs, and the daily purge."""

from datetime import date, timedelta
from typing import Any

from dagster import (
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    build_schedule_from_partitioned_job,
    schedule,
)

from aggassets.experiments.definition import ExperimentDefinition
from aggassets.jobs import daily_refresh_job, monthly_refresh_job, purge_job, weekly_refresh_job
from aggassets.resources import CatalogResource

daily_refresh_schedule = build_schedule_from_partitioned_job(
    daily_refresh_job,
    name="daily_refresh_schedule",
    hour_of_day=0,
    minute_of_hour=30,
    description="Every day at 00:30 UTC: raw measures and daily aggregates of the day that just ended.",
)
weekly_refresh_schedule = build_schedule_from_partitioned_job(
    weekly_refresh_job,
    name="weekly_refresh_schedule",
    hour_of_day=1,
    minute_of_hour=0,
    description="Every Monday at 01:00 UTC: weekly aggregates of the week (Monday-Sunday) that just ended.",
)
monthly_refresh_schedule = build_schedule_from_partitioned_job(
    monthly_refresh_job,
    name="monthly_refresh_schedule",
    hour_of_day=1,
    minute_of_hour=30,
    description="On the 1st of every month at 01:30 UTC: monthly aggregates of the month that just ended.",
)


@schedule(
    job=purge_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    description="Every day at 03:00 UTC: purge raw measures older than 90 days into sealed moments.",
)
def purge_schedule(context: ScheduleEvaluationContext) -> RunRequest:
    """Every day at 03:00 UTC: purge raw measures older than 90 days into sealed moments."""
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return RunRequest(run_key=f"purge-{day}", run_config={"ops": {"purge_raw_measures": {"config": {"days": 90}}}})


SCHEDULES = [daily_refresh_schedule, weekly_refresh_schedule, monthly_refresh_schedule, purge_schedule]


def running_on(experiment: ExperimentDefinition, today: date) -> bool:
    """date_from <= today <= date_to + 1 day (missing bounds are open)."""
    started = experiment.date_from is None or experiment.date_from <= today
    return started and (experiment.date_to is None or today <= experiment.date_to + timedelta(days=1))


def experiment_run_requests(experiments: dict[str, ExperimentDefinition], today: date) -> list[RunRequest]:
    """One run per running experiment, evaluated on the day that just ended (never before date_from)."""
    requests = []
    for exp_id, experiment in sorted(experiments.items()):
        if not running_on(experiment, today):
            continue
        as_of = today - timedelta(days=1)
        if experiment.date_from is not None:
            as_of = max(as_of, experiment.date_from)
        requests.append(RunRequest(
            run_key=f"{exp_id}:{today}", partition_key=exp_id,
            run_config={"ops": {"experiment_goals": {"config": {"as_of": as_of.isoformat()}}}},
            tags={"aggassets/evaluation_date": as_of.isoformat()},
        ))  # fmt: skip
    return requests


def build_experiment_schedule(job: Any) -> ScheduleDefinition:
    """The daily evaluation schedule of the experiment job."""

    @schedule(
        job=job,
        cron_schedule="0 2 * * *",
        execution_timezone="UTC",
        name="experiment_evaluation_schedule",
        description="Every day at 02:00 UTC: evaluate every running experiment (date_from <= today <= "
        "date_to + 1) on the day that just ended (on its first day: date_from).",
    )
    def experiment_evaluation_schedule(
        context: ScheduleEvaluationContext, catalog: CatalogResource
    ) -> list[RunRequest] | SkipReason:
        """Every day at 02:00 UTC: evaluate every running experiment on the day that just ended."""
        today = context.scheduled_execution_time.date()
        requests = experiment_run_requests(catalog.experiments(), today)
        return requests or SkipReason(f"no experiment running on {today}")

    return experiment_evaluation_schedule
