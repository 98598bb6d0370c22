"""The one Definitions object of the code location."""

import os
import warnings
from pathlib import Path

from dagster import BetaWarning, Definitions, EnvVar, in_process_executor

from aggassets.assets.experiments import build_experiment_assets
from aggassets.assets.measures import MEASURE_ASSETS, STORED_CHECKS
from aggassets.errors import AggassetsError
from aggassets.experiments.definition import load_experiments
from aggassets.jobs import REFRESH_JOBS, build_experiment_job, ingest_inbox_job, purge_job, stored_checks_job
from aggassets.resources import CatalogResource, WarehouseResource
from aggassets.schedules import SCHEDULES, build_experiment_schedule
from aggassets.sensors import SENSORS
from aggassets.settings import definitions_dir, warehouse_url

# Dagster 1.13 passes `owners` itself when it binds a sensor to its jobs, then warns about that beta
# parameter on every load (CLI, runs, `dagster dev`): not ours to act on.
warnings.filterwarnings("ignore", message="Parameter `owners` of initializer `SensorDefinition", category=BetaWarning)


def _warehouse_url() -> str | EnvVar:
    """The warehouse URL for the resource: the variable itself when set, so the UI shows its name and
    not the URL (a PostgreSQL password in it) and it is read at launch; else the project's DuckDB file."""
    return EnvVar("AGGASSETS_WAREHOUSE") if os.environ.get("AGGASSETS_WAREHOUSE") else warehouse_url()


# A run that finds the warehouse unavailable (the DuckDB file held by a command ingesting or refreshing at
# 00:30, say, or PostgreSQL not answering) retries its step every minute for 10 minutes before it fails.
UNAVAILABLE_RETRIES = 10


def build_definitions(warehouse: str | None = None, definitions: str | None = None) -> Definitions:
    """Definitions wired to a warehouse URL and a catalog folder (defaults: env, then project)."""
    folder = definitions or definitions_dir()
    if not Path(folder).is_dir():  # a deployment that forgot the catalog: the UI shows why nothing loads
        raise AggassetsError(
            f"the catalog folder {folder} does not exist: copy the catalog there, or check AGGASSETS_DEFINITIONS"
        )
    experiment_assets = build_experiment_assets(list(load_experiments(Path(folder) / "experiments")))
    experiment_job = build_experiment_job(experiment_assets[0].partitions_def)
    return Definitions(
        assets=[*MEASURE_ASSETS, *experiment_assets],
        asset_checks=STORED_CHECKS,
        jobs=[*REFRESH_JOBS.values(), purge_job, ingest_inbox_job, stored_checks_job, experiment_job],
        schedules=[*SCHEDULES, build_experiment_schedule(experiment_job)],
        sensors=SENSORS,
        resources={
            "warehouse": WarehouseResource(url=warehouse or _warehouse_url(), unavailable_retries=UNAVAILABLE_RETRIES),
            "catalog": CatalogResource(definitions_dir=str(folder)),
        },
        executor=in_process_executor,
    )


defs = build_definitions()
