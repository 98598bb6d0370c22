"""Dagster resources: the warehouse (synced with the catalog on open) and the catalog."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dagster import ConfigurableResource

from aggassets.catalog import MeasureCatalog, load_measures
from aggassets.errors import AggassetsError
from aggassets.experiments.definition import ExperimentDefinition, load_experiments
from aggassets.warehouse import Warehouse, open_warehouse


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
    """The warehouse named by a URL (duckdb:///... or postgresql://...)."""

    url: str

    @contextmanager
    def open(self, catalog: MeasureCatalog | None = None) -> Iterator[Warehouse]:
        """An open warehouse, its measure_definitions table synced with `catalog` when given."""
        warehouse = open_warehouse(self.url)
        try:
            if catalog is not None:
                warehouse.sync_definitions(catalog.measures)
            yield warehouse
        finally:
            warehouse.close()
