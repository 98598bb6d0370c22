"""Dagster resources: the warehouse (synced with the catalog on open) and the catalog."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dagster import ConfigurableResource, RetryRequested

from aggassets.catalog import MeasureCatalog, load_measures
from aggassets.errors import AggassetsError, WarehouseUnavailable
from aggassets.experiments.definition import ExperimentDefinition, load_experiments
from aggassets.warehouse import Warehouse, open_warehouse, require_existing

WAREHOUSE_KINDS = {"duckdb", "postgres"}  # the UI's labels of the assets the warehouse stores


class CatalogResource(ConfigurableResource):
    """The definitions/ folder (measures.json, experiments/)."""

    definitions_dir: str

    def measures(self) -> MeasureCatalog:
        """The validated measure catalog."""
        return load_measures(Path(self.definitions_dir))

    def experiments(self) -> dict[str, ExperimentDefinition]:
        """The validated experiments of definitions/experiments/, by id."""
        return load_experiments(Path(self.definitions_dir) / "experiments")

    def experiment(self, exp_id: str) -> ExperimentDefinition:
        """One experiment by id; a clear error when the catalog has no such experiment."""
        experiments = self.experiments()
        if exp_id not in experiments:
            known = ", ".join(sorted(experiments)) or "none"
            raise AggassetsError(f"unknown experiment {exp_id!r} (catalog: {known})")
        return experiments[exp_id]


class WarehouseResource(ConfigurableResource):
    """The warehouse named by a URL (duckdb:///... or postgresql://...). In a run, a warehouse that cannot be
    opened now (a DuckDB file another process holds, a PostgreSQL server not answering) retries the step
    `unavailable_retries` times, `unavailable_wait_seconds` apart: none by default (the `aggassets` command
    fails at once); the code location waits, so that a scheduled run outlasts a command holding the file."""

    url: str
    unavailable_retries: int = 0
    unavailable_wait_seconds: float = 60.0

    @contextmanager
    def open(
        self, catalog: MeasureCatalog | None = None, create: bool = False, in_run: bool = True
    ) -> Iterator[Warehouse]:
        """An open warehouse, its measure_definitions table synced with `catalog` when given. A DuckDB file or
        PostgreSQL schema without the warehouse is refused unless `create` (the catalog's sync and the inbox's
        ingest make it): a mistyped URL must not give green runs over a new empty warehouse. Outside a run
        (`in_run` false: a sensor) an unavailable warehouse is an error, never a step retry."""
        try:
            if not create:
                require_existing(self.url)
            warehouse = open_warehouse(self.url)
        except WarehouseUnavailable as exc:
            if not (in_run and self.unavailable_retries):
                raise
            wait = self.unavailable_wait_seconds
            raise RetryRequested(max_retries=self.unavailable_retries, seconds_to_wait=wait) from exc
        try:
            if catalog is not None:
                warehouse.sync_definitions(catalog.measures)
            yield warehouse
        except WarehouseUnavailable as exc:  # the connection lost in the middle (a server restart): as at open
            if not (in_run and self.unavailable_retries):
                raise
            raise RetryRequested(
                max_retries=self.unavailable_retries, seconds_to_wait=self.unavailable_wait_seconds
            ) from exc
        finally:
            warehouse.close()
