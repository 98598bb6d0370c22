"""Experiment goals from the events table, and the history of every evaluation (both engines)."""

from dataclasses import dataclass
from datetime import date, datetime

import pandas as pd
import pyarrow as pa

from aggassets.errors import AggassetsError
from aggassets.experiments.definition import ExperimentDefinition
from aggassets.experiments.evaluate import (
    CHECK_COLUMNS,
    EXPOSURE_COLUMNS,
    METRIC_COLUMNS,
    Evaluation,
    cross_products_needed,
    goal_refs_needed,
)
from aggassets.experiments.expressions import GoalRef
from aggassets.experiments.goals import NUMERIC
from aggassets.warehouse import goals_sql
from aggassets.warehouse.base import Warehouse
from aggassets.warehouse.values import utc_now

GOAL_COLUMNS = ["exp_id", "exp_variant_id", "unit_type", "agg_type", "goal", "goal_key", "dimensions", *NUMERIC]
CROSS_COLUMNS = ["exp_variant_id", "left_key", "right_key", "sum_product", "units"]
_HISTORY = {  # table -> (columns after exp_id, evaluation_date, evaluated_at)
    "experiment_goals": GOAL_COLUMNS[1:],
    "experiment_metrics": METRIC_COLUMNS[1:],
    "experiment_checks": CHECK_COLUMNS[1:],
    "experiment_exposures": EXPOSURE_COLUMNS[1:],
}


@dataclass(frozen=True)
class ExperimentGoals:
    """Aggregated goals (ep-stats' layout with goal_key rows) and the delta method's cross products."""

    exp_id: str
    evaluation_date: date
    goals: pd.DataFrame
    cross: pd.DataFrame


def dialect(wh: Warehouse) -> goals_sql.Dialect:
    """The goals-query dialect of the warehouse's engine."""
    return wh.sql.GOALS_DIALECT


def _param(wh: Warehouse, name: str) -> str:
    return dialect(wh).param_format.format(name=name)


def event_dimensions(wh: Warehouse) -> list[str]:
    """Dimension names carried by the events table (lower case)."""
    columns = wh.fetch("SELECT * FROM events WHERE FALSE").columns
    return sorted(c[4:] for c in columns if c.startswith("dim_"))


def last_data_day(experiment: ExperimentDefinition, as_of: date) -> date:
    """The last day of events an evaluation on `as_of` reads: min(date_to, as_of)."""
    return min(experiment.date_to, as_of) if experiment.date_to else as_of


def _dimension_text(ref: GoalRef) -> str:
    """The reference's conditions as text: `element=button,price>=10` ('' when none)."""
    return ",".join(f"{d}{op}{v}" for d, op, v in sorted(ref.dimensions))


def _dimension_cell(ref: GoalRef, dimension: str) -> str:
    """ep-stats' cell for a dimension: the value for `=`, the operator and value otherwise ('^' for `=^`)."""
    texts = [("" if op == "=" else "^" if op == "=^" else op) + v for d, op, v in ref.dimensions if d == dimension]
    return ",".join(sorted(texts))


def compute_goals(wh: Warehouse, experiment: ExperimentDefinition, as_of: date) -> ExperimentGoals:
    """Aggregate the goals and cross products the experiment needs, from the events, in one query."""
    refs = goal_refs_needed(experiment)
    pairs = cross_products_needed(experiment)
    query = goals_sql.goals_query(
        experiment, refs, pairs, last_data_day(experiment, as_of), event_dimensions(wh), dialect(wh)
    )
    wide = wh.fetch(query.sql, query.params)
    found = set(wide["exp_variant_id"].astype(str))
    # every variant gets its rows, zeros when it has no event yet (the listed ones, else found + control)
    variants = sorted(experiment.variants or found | {experiment.control_variant})
    wide = wide.drop(columns="exp_variant_id").set_index(wide["exp_variant_id"].astype(str))
    wide = wide.reindex(variants, fill_value=0)
    rows = []
    for ref in refs:
        i = query.selections.index(goals_sql.selection_key(ref))
        sums = {col: wide[f"s{i}_{col}"].to_numpy(dtype=float) for col in NUMERIC}
        for v, variant in enumerate(variants):
            rows.append(
                [
                    experiment.id,
                    variant,
                    ref.unit_type,
                    ref.agg_type,
                    ref.goal,
                    ref.key,
                    _dimension_text(ref),
                    *(sums[col][v] for col in NUMERIC),
                ]
            )
    goals = pd.DataFrame(rows, columns=GOAL_COLUMNS)
    for dim in sorted({d for ref in refs for d, _, _ in ref.dimensions}):  # ep-stats' dimension columns
        goals.insert(
            goals.columns.get_loc("goal_key"), dim, [_dimension_cell(ref, dim) for ref in refs for _ in variants]
        )
    cross_rows = [
        [variant, left.key, right.key, float(wide[f"x{j}"].iloc[v]), int(wide["units"].iloc[v])]
        for j, (left, right) in enumerate(query.pairs)
        for v, variant in enumerate(variants)
    ]
    return ExperimentGoals(experiment.id, as_of, goals, pd.DataFrame(cross_rows, columns=CROSS_COLUMNS))


_TYPES = {
    "exp_id": pa.string(),
    "evaluation_date": pa.date32(),
    "evaluated_at": pa.timestamp("us"),
    "metric_id": pa.int64(),
    "check_id": pa.int64(),
    "exposures": pa.int64(),
    "units": pa.int64(),
}
_TEXT = {
    "exp_variant_id",
    "unit_type",
    "agg_type",
    "goal",
    "goal_key",
    "dimensions",
    "metric_name",
    "check_name",
    "variable_id",
    "reason",
    "left_key",
    "right_key",
}


def _arrow(frame: pd.DataFrame, columns: list[str]) -> pa.Table:
    """The frame as an Arrow table with the history tables' types (works for empty frames)."""
    fields = [pa.field(c, _TYPES.get(c, pa.string() if c in _TEXT else pa.float64())) for c in columns]
    schema = pa.schema(fields)
    data = {c: frame[c].tolist() for c in columns}
    return pa.Table.from_pydict(data, schema=schema)


def _replace(wh: Warehouse, table: str, frame: pd.DataFrame, columns: list[str], key: dict[str, object]) -> None:
    """Delete the rows of (exp_id, evaluation_date) from `table`, then insert the frame's rows."""
    wh.execute(
        f"DELETE FROM {table} WHERE exp_id = {_param(wh, 'exp_id')} AND evaluation_date = {_param(wh, 'day')}",
        key,
    )
    staged = f"staged_{table}"
    wh.stage(staged, _arrow(frame, columns))
    names = ", ".join(columns)
    wh.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {staged}")


def _with_keys(frame: pd.DataFrame, exp_id: str, day: date, at: datetime) -> pd.DataFrame:
    """The frame with the history key columns in front."""
    out = frame.copy()
    out["exp_id"], out["evaluation_date"], out["evaluated_at"] = exp_id, day, at
    return out


def store_goals(wh: Warehouse, goals: ExperimentGoals) -> None:
    """Keep the goals (and cross products) of one evaluation date; replaces an earlier run of that date."""
    key = {"exp_id": goals.exp_id, "day": goals.evaluation_date}
    with wh.transaction():
        at = utc_now()
        frame = _with_keys(goals.goals, goals.exp_id, goals.evaluation_date, at)
        _replace(wh, "experiment_goals", frame, ["exp_id", "evaluation_date", "evaluated_at", *GOAL_COLUMNS[1:]], key)
        cross = _with_keys(goals.cross, goals.exp_id, goals.evaluation_date, at)
        _replace(wh, "experiment_goal_products", cross, ["exp_id", "evaluation_date", *CROSS_COLUMNS], key)


def latest_goals(wh: Warehouse, exp_id: str) -> ExperimentGoals:
    """The goals stored last for the experiment (the evaluation date of the latest goals run)."""
    p = _param(wh, "exp_id")
    found = wh.fetch(
        f"SELECT evaluation_date FROM experiment_goals WHERE exp_id = {p} ORDER BY evaluated_at DESC LIMIT 1",
        {"exp_id": exp_id},
    )
    if found.empty:
        raise AggassetsError(f"no goals stored for experiment {exp_id!r}: materialize experiment_goals first")
    day = pd.Timestamp(found.iloc[0, 0]).date()
    key = {"exp_id": exp_id, "day": day}
    where = f"WHERE exp_id = {p} AND evaluation_date = {_param(wh, 'day')}"
    goals = wh.fetch(f"SELECT {', '.join(GOAL_COLUMNS)} FROM experiment_goals {where}", key)
    cross = wh.fetch(f"SELECT {', '.join(CROSS_COLUMNS)} FROM experiment_goal_products {where}", key)
    return ExperimentGoals(exp_id, day, goals, cross)


def store_evaluation(wh: Warehouse, evaluation: Evaluation, day: date) -> None:
    """Keep metrics, checks and exposures of one evaluation date (replacing an earlier run of that date)."""
    key = {"exp_id": evaluation.exp_id, "day": day}
    head = ["exp_id", "evaluation_date", "evaluated_at"]
    with wh.transaction():
        at = utc_now()
        for table, frame in (
            ("experiment_metrics", evaluation.metrics),
            ("experiment_checks", evaluation.checks),
            ("experiment_exposures", evaluation.exposures),
        ):
            rows = _with_keys(frame, evaluation.exp_id, day, at)
            _replace(wh, table, rows, [*head, *_HISTORY[table]], key)


def evaluation_history(wh: Warehouse, table: str, exp_id: str, day: date | None = None) -> pd.DataFrame:
    """Rows of one history table for an experiment (one evaluation date, or all of them)."""
    if table not in _HISTORY:
        raise AggassetsError(f"unknown history table {table!r}")
    params: dict[str, object] = {"exp_id": exp_id, "day": day}
    where = f"exp_id = {_param(wh, 'exp_id')}" + (f" AND evaluation_date = {_param(wh, 'day')}" if day else "")
    columns = ", ".join(["exp_id", "evaluation_date", "evaluated_at", *_HISTORY[table]])
    return wh.fetch(f"SELECT {columns} FROM {table} WHERE {where} ORDER BY evaluation_date", params)
