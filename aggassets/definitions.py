"""The one Definitions object of the code location."""

from dagster import Definitions, in_process_executor

from aggassets.assets.measures import MEASURE_ASSETS
from aggassets.jobs import REFRESH_JOBS, ingest_inbox_job, purge_job
from aggassets.resources import CatalogResource, WarehouseResource
from aggassets.schedules import SCHEDULES
from aggassets.sensors import SENSORS
from aggassets.settings import definitions_dir, warehouse_url


def build_definitions(warehouse: str | None = None, definitions: str | None = None) -> Definitions:
    """Definitions wired to a warehouse URL and a catalog folder (defaults: env, then project)."""
    return Definitions(
        assets=[*MEASURE_ASSETS],
        jobs=[*REFRESH_JOBS.values(), purge_job, ingest_inbox_job],
        schedules=SCHEDULES,
        sensors=SENSORS,
        resources={
            "warehouse": WarehouseResource(url=warehouse or warehouse_url()),
            "catalog": CatalogResource(definitions_dir=str(definitions or definitions_dir())),
        },
        executor=in_process_executor,
    )


defs = build_definitions()
