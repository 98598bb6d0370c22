"""Aggregated goals (ep-stats' layout) to per-variant arrays, one row per goal reference."""

import datetime
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from aggassets.errors import AggassetsError
from aggassets.experiments.definition import ExperimentDefinition
from aggassets.experiments.expressions import GoalRef

NUMERIC = ("count", "sum_sqr_count", "sum_value", "sum_sqr_value", "count_unique")
_SEP = "\x1f"
# A dimension cell or condition value is a number when it is a plain decimal (same rule in the warehouse SQL).
# At most NUMBER_MAX_LENGTH characters and a two-digit exponent: every such number is within float64's normal
# range (1e-299 to 1e299), so the engines' casts never overflow (PostgreSQL's would fail) and never underflow.
NUMBER_PATTERN = r"^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]{1,2})?$"
NUMBER_MAX_LENGTH = 200
_NUMBER_TEXT = re.compile(NUMBER_PATTERN)


def number_or_none(text: str) -> float | None:
    """The number a dimension value denotes, or None when it is text."""
    return float(text) if len(text) <= NUMBER_MAX_LENGTH and _NUMBER_TEXT.fullmatch(text) else None


@dataclass(frozen=True)
class GoalTable:
    """Per-variant sums of every goal reference: `values[column]` is shaped (refs, variants)."""

    variants: tuple[str, ...]
    refs: tuple[GoalRef, ...]
    index: dict[str, int]
    values: dict[str, np.ndarray]

    def sums(self, ref: GoalRef) -> np.ndarray:
        """Σ over units of the reference's per-unit value, per variant."""
        return self.values[ref.sum_column][self.index[ref.key]]

    def squares(self, ref: GoalRef) -> np.ndarray:
        """Σ over units of the squared per-unit value, per variant."""
        return self.values[ref.square_column][self.index[ref.key]]


def text_cells(column: pd.Series) -> pd.Series:
    """Cells as text: missing -> '', integral floats without '.0' (CSV reads '1' as 1.0)."""
    if pd.api.types.is_numeric_dtype(column):
        values = column.to_numpy(dtype=float)
        out = np.where(np.isnan(values), "", column.astype(object).astype(str))
        whole = ~np.isnan(values) & (values == np.round(values))
        out = np.where(whole, np.nan_to_num(values).astype(np.int64).astype(str), out)
        return pd.Series(out, index=column.index, dtype=object)
    return column.astype(object).where(column.notna(), "").astype(str)


def experiment_variants(experiment: ExperimentDefinition, goals: pd.DataFrame) -> tuple[str, ...]:
    """The listed variants, or those in the goals plus the control and every weighted variant (one with
    no rows is an arm that got no traffic); sorted as ep-stats."""
    if experiment.variants is not None:
        return tuple(sorted(experiment.variants))
    found = set(text_cells(goals["exp_variant_id"])) if len(goals) else set()
    return tuple(sorted(found | {experiment.control_variant} | set(experiment.traffic_weights or {})))


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """AggassetsError naming every missing column."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise AggassetsError(f"{what} lack column(s): {', '.join(missing)}")


def _date_window(frame: pd.DataFrame, experiment: ExperimentDefinition, as_of: datetime.date) -> pd.DataFrame:
    """Dated rows from date_from to min(date_to, as_of); undated rows are kept."""
    text = text_cells(frame["date"])
    dated = text != ""
    parsed = pd.to_datetime(text.where(dated), errors="coerce")
    if bool((dated & parsed.isna()).any()):
        raise AggassetsError(f"goals: unreadable date {text[dated & parsed.isna()].iloc[0]!r}")
    upper = min(experiment.date_to, as_of) if experiment.date_to else as_of
    keep = parsed <= pd.Timestamp(upper)
    if experiment.date_from is not None:
        keep &= parsed >= pd.Timestamp(experiment.date_from)
    return frame[~dated | keep]


def _apply_filters(frame: pd.DataFrame, experiment: ExperimentDefinition, literal: bool) -> pd.DataFrame:
    """ep-stats' exposure / goal filters on aggregated rows (trigger filters need unit-level data): a cell
    is accepted when it is `=` one of the values, as in the warehouse (ep-stats' text match if literal)."""
    for f in experiment.filters:
        if f.scope == "trigger":
            raise AggassetsError(
                "a trigger filter needs unit-level data: apply it in the warehouse and pass goal_key rows"
            )
        _require(frame, [str(f.dimension)], "goals")
        cells = text_cells(frame[str(f.dimension)])
        accepted = np.logical_or.reduce(
            [np.zeros(len(frame), bool), *(matches(cells, "=", v, literal) for v in f.values_text())]
        )
        is_exposure = text_cells(frame["goal"]) == "exposure"
        frame = frame[(~is_exposure | accepted) if f.scope == "exposure" else (is_exposure | accepted)]
    return frame


def select_goals(
    experiment: ExperimentDefinition,
    goals: pd.DataFrame,
    variants: Sequence[str],
    as_of: datetime.date,
    literal: bool = False,
) -> pd.DataFrame:
    """Rows of the variants, inside the date window, through the filters (`literal`: see matches)."""
    frame = goals[text_cells(goals["exp_variant_id"]).isin(set(variants))]
    if "date" in frame.columns:
        frame = _date_window(frame, experiment, as_of)
    if "goal_key" not in frame.columns:
        frame = _apply_filters(frame, experiment, literal)
    return frame


def _numeric(frame: pd.DataFrame) -> pd.DataFrame:
    """The five sum columns as floats, with a clear error for a non-number."""
    out = pd.DataFrame(index=frame.index)
    for col in NUMERIC:
        values = pd.to_numeric(frame[col], errors="coerce").astype(float)
        if not bool(np.isfinite(values).all()):
            raise AggassetsError(f"goals: column {col} holds a value that is not a finite number")
        if col != "sum_value" and bool((values < 0).any()):
            raise AggassetsError(f"goals: column {col} holds a negative value (counts and squares are >= 0)")
        out[col] = values
    return out


def _sum_by(keys: pd.Series, frame: pd.DataFrame, wanted: list[str], variants: Sequence[str]) -> np.ndarray:
    """Σ of the numeric columns per (key, variant), shaped (len(wanted), variants, 5), zeros when absent."""
    if not wanted:
        return np.zeros((0, len(variants), len(NUMERIC)))
    numbers = _numeric(frame)
    grouped = numbers.groupby([keys.to_numpy(), text_cells(frame["exp_variant_id"]).to_numpy()]).sum()
    full = pd.MultiIndex.from_product([wanted, list(variants)])
    return grouped.reindex(full, fill_value=0.0).to_numpy().reshape(len(wanted), len(variants), len(NUMERIC))


def matches(cells: pd.Series, op: str, value: str, literal: bool = False) -> np.ndarray:
    """Rows whose (non-empty) dimension cell satisfies `op value`; `literal` matches as ep-stats' text."""
    if literal:
        return (cells == (value if op == "=" else ("^" + value if op == "=^" else op + value))).to_numpy()
    filled = (cells != "").to_numpy()
    if op == "=^":
        return filled & cells.str.startswith(value).to_numpy()
    numeric = (cells.str.fullmatch(NUMBER_PATTERN[1:-1]) & (cells.str.len() <= NUMBER_MAX_LENGTH)).fillna(False)
    numeric = numeric.to_numpy(dtype=bool)
    numbers = np.full(len(cells), np.nan)
    numbers[numeric] = cells[numeric].astype(float).to_numpy()
    target = number_or_none(value)
    if op in ("=", "!="):
        equal = (cells == value).to_numpy() | (numbers == target if target is not None else False)
        return filled & (equal if op == "=" else ~equal)
    compare = {"<": np.less, ">": np.greater, "<=": np.less_equal, ">=": np.greater_equal}[op]
    if target is not None:
        return filled & compare(numbers, target)
    return filled & compare(cells.to_numpy(dtype=str), value)


def _selection(ref: GoalRef) -> str:
    """The rows a reference selects, whatever its function."""
    return _SEP.join([ref.unit_type, ref.agg_type, ref.goal, repr(sorted(ref.dimensions))])


def _dimension_sums(
    frame: pd.DataFrame, refs: Sequence[GoalRef], variants: Sequence[str], literal: bool
) -> dict[str, np.ndarray]:
    """Per-reference sums from dimension columns: conditions evaluated, other dimensions empty."""
    _require(frame, ["unit_type", "agg_type", "goal"], "goals")
    dims = sorted({d for ref in refs for d, _, _ in ref.dimensions})
    _require(frame, dims, "goals (dimension columns used by the expressions)")
    cells = {d: text_cells(frame[d]) for d in dims}
    base = text_cells(frame["unit_type"]) + _SEP + text_cells(frame["agg_type"]) + _SEP + text_cells(frame["goal"])
    empty = {d: (cells[d] == "").to_numpy() for d in dims}
    all_empty = np.logical_and.reduce([empty[d] for d in dims]) if dims else np.ones(len(frame), bool)
    plain = sorted({_SEP.join([r.unit_type, r.agg_type, r.goal]) for r in refs if not r.dimensions})
    sums = _sum_by(base[all_empty], frame[all_empty], plain, variants)
    out = {_SEP.join([*p.split(_SEP), "[]"]): sums[i] for i, p in enumerate(plain)}
    for ref in {_selection(r): r for r in refs if r.dimensions}.values():
        mask = np.array(base == _SEP.join([ref.unit_type, ref.agg_type, ref.goal]), dtype=bool)
        used = {d for d, _, _ in ref.dimensions}
        for d in dims:
            if d not in used:
                mask = mask & empty[d]
        for d, op, value in ref.dimensions:
            mask = mask & matches(cells[d], op, value, literal)
        out[_selection(ref)] = _sum_by(base[mask].map(lambda _: "x"), frame[mask], ["x"], variants)[0]
    return out


def build_goal_table(
    experiment: ExperimentDefinition,
    goals: pd.DataFrame,
    refs: Sequence[GoalRef],
    as_of: datetime.date,
    literal_dimensions: bool = False,
) -> GoalTable:
    """Match the goals to every reference (by goal_key when present, else by dimension columns)."""
    _require(goals, ["exp_variant_id", *NUMERIC], "goals")
    if "exp_id" in goals.columns:
        goals = goals[text_cells(goals["exp_id"]) == experiment.id]
    variants = experiment_variants(experiment, goals)
    frame = select_goals(experiment, goals, variants, as_of, literal_dimensions)
    refs = list({r.key: r for r in refs}.values())
    if "goal_key" in frame.columns:
        stacked = _sum_by(text_cells(frame["goal_key"]), frame, [r.key for r in refs], variants)
    else:
        by_selection = _dimension_sums(frame, refs, variants, literal_dimensions)
        stacked = (
            np.stack([by_selection[_selection(r)] for r in refs])
            if refs
            else _sum_by(pd.Series(dtype=str), frame, [], variants)
        )
    values = {col: stacked[:, :, i] for i, col in enumerate(NUMERIC)}
    return GoalTable(tuple(variants), tuple(refs), {r.key: i for i, r in enumerate(refs)}, values)


@dataclass(frozen=True)
class CrossTable:
    """Σ over units of left·right per variant for pairs of goal references, and units per variant."""

    units: np.ndarray
    products: dict[tuple[str, str], np.ndarray]

    def product(self, left: str, right: str) -> np.ndarray | None:
        """The pair's per-variant sums in either orientation, or None when absent."""
        found = self.products.get((left, right))
        return found if found is not None else self.products.get((right, left))


def build_cross_table(cross: pd.DataFrame, variants: Sequence[str]) -> CrossTable:
    """Read the cross-products frame (exp_variant_id, left_key, right_key, sum_product, units)."""
    _require(cross, ["exp_variant_id", "left_key", "right_key", "sum_product", "units"], "cross products")
    frame = cross[text_cells(cross["exp_variant_id"]).isin(set(variants))]
    variant = text_cells(frame["exp_variant_id"])
    numbers = frame[["sum_product", "units"]].apply(pd.to_numeric, errors="coerce")
    if bool(numbers.isna().any().any()):
        raise AggassetsError("cross products: sum_product and units must be numbers")
    units = numbers["units"].groupby(variant.to_numpy()).max().reindex(list(variants)).to_numpy(dtype=float)
    keys = text_cells(frame["left_key"]) + _SEP + text_cells(frame["right_key"])
    grouped = numbers["sum_product"].groupby([keys.to_numpy(), variant.to_numpy()]).sum().unstack()
    grouped = grouped.reindex(columns=list(variants)).fillna(0.0)
    products = {tuple(k.split(_SEP, 1)): row.to_numpy(dtype=float) for k, row in grouped.iterrows()}
    return CrossTable(units, products)  # type: ignore[arg-type]
