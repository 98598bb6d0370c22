"""Evaluate one experiment from the warehouse events: an in-process run of its two assets."""

from datetime import date
from pathlib import Path

import pandas as pd
from dagster import Definitions, in_process_executor

from aggassets.assets.experiments import build_experiment_assets
from aggassets.errors import AggassetsError
from aggassets.experiments.definition import ExperimentDefinition, load_experiments
from aggassets.jobs import build_experiment_job
from aggassets.resources import CatalogResource, WarehouseResource
from aggassets.runs import QUIET, cli_run_tags, failure_causes, instance_for_runs
from aggassets.warehouse import open_warehouse, require_existing
from aggassets.warehouse.experiments import evaluation_history


def run_experiment(exp_id: str, as_of: date, warehouse_url: str, definitions_dir: str) -> pd.DataFrame:
    """Materialize experiment_goals + experiment_evaluations for `exp_id`; its stored metrics rows, in the
    evaluation's order (metrics as defined, variants sorted), as `experiments evaluate` prints them."""
    experiments = load_experiments(Path(definitions_dir) / "experiments")
    if exp_id not in experiments:
        raise AggassetsError(f"unknown experiment {exp_id!r} (catalog: {', '.join(sorted(experiments)) or 'none'})")
    require_existing(warehouse_url)
    assets = build_experiment_assets(list(experiments))
    job = build_experiment_job(assets[0].partitions_def)
    run_definitions = Definitions(
        assets=assets,
        jobs=[job],
        resources={
            "warehouse": WarehouseResource(url=warehouse_url),
            "catalog": CatalogResource(definitions_dir=definitions_dir),
        },
        executor=in_process_executor,
    )
    result = run_definitions.resolve_job_def(job.name).execute_in_process(  # listed under its job in the UI
        run_config={"ops": {"experiment_goals": {"config": {"as_of": as_of.isoformat()}}}, **QUIET},
        partition_key=exp_id,
        tags={"aggassets/evaluation_date": as_of.isoformat(), **cli_run_tags()},
        instance=instance_for_runs(),
        raise_on_error=False,
    )
    if not result.success:
        raise AggassetsError(f"evaluation of {exp_id} failed (run {result.run_id}): {failure_causes(result)}")
    with open_warehouse(warehouse_url) as wh:
        stored = evaluation_history(wh, "experiment_metrics", exp_id, as_of)
    position = {m.id: i for i, m in enumerate(experiments[exp_id].metrics)}
    order = stored.assign(_p=stored.metric_id.map(position)).sort_values(["_p", "exp_variant_id"], kind="stable")
    return order.drop(columns="_p").reset_index(drop=True)


def stored_checks(
    exp_id: str, as_of: date, warehouse_url: str, definitions_dir: str
) -> tuple[pd.DataFrame, ExperimentDefinition]:
    """The check rows run_experiment stored for `exp_id` at `as_of`, and the experiment's definition."""
    experiment = load_experiments(Path(definitions_dir) / "experiments")[exp_id]
    with open_warehouse(warehouse_url) as wh:
        return evaluation_history(wh, "experiment_checks", exp_id, as_of), experiment
