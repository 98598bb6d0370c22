"""The experiment goals query: events to ep-stats' aggregated goals, two levels, in one pass.

Level 1 groups the experiment's events per unit (exp_variant_id, unit_type, unit_id) with one
filtered sum per goal selection (and one flag per unit filter); level 2 sums the unit values,
their squares and the cross products per variant. Both engines run the same text; a Dialect
supplies the few differences (parameters, numeric casts, byte-order text comparison).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from aggassets.experiments.definition import ExperimentDefinition, FilterDefinition
from aggassets.experiments.expressions import GoalRef
from aggassets.experiments.goals import NUMBER_MAX_LENGTH, NUMBER_PATTERN, number_or_none
from aggassets.warehouse import aggregates_sql
from aggassets.warehouse.values import quote


@dataclass(frozen=True)
class Dialect:
    """What differs between the engines in the goals query."""

    param_format: str
    number_test: str
    double: str
    text_collate: str
    sum_fn: str  # the correctly rounded sum of `{x}` whatever the row order (aggregates_sql.Dialect.sum_fn)

    def sum(self, x: str, where: str = "TRUE") -> str:
        """The exact sum of x over the rows where `where` holds, rounded once: a re-run gives the same bits.
        Zeros are left out (PostgreSQL's exact sum costs a cast per term; most events carry no value)."""
        return f"coalesce({self.sum_fn.format(x=f'CASE WHEN {where} AND {x} <> 0 THEN {x} END')}, 0)"

    def number(self, column: str) -> str:
        """The column's value as a number when it is a plain decimal, else NULL."""
        test = self.number_test.replace("{col}", column)
        return f"(CASE WHEN {test} THEN CAST({column} AS {self.double}) END)"


_SHORT = f"length({{col}}) <= {NUMBER_MAX_LENGTH} AND "
DUCKDB = Dialect(
    "${name}", _SHORT + "regexp_full_match({col}, '" + NUMBER_PATTERN + "')", "DOUBLE", "", aggregates_sql.DUCKDB.sum_fn
)
POSTGRES = Dialect(
    "%({name})s",
    _SHORT + "{col} ~ '" + NUMBER_PATTERN + "'",
    "DOUBLE PRECISION",
    ' COLLATE "C"',
    aggregates_sql.POSTGRES.sum_fn,
)


def dimension_column(name: str) -> str:
    """The events column holding a dimension (dimension names are case-insensitive)."""
    return f"dim_{name.lower()}"


Selection = tuple[str, str, tuple[tuple[str, str, str], ...]]  # unit type, goal, dimension conditions


def selection_key(ref: GoalRef) -> Selection:
    """What a reference selects from the events, whatever its function and agg_type."""
    return ref.unit_type, ref.goal, tuple(sorted(ref.dimensions))


@dataclass
class _Builder:
    """Accumulates named parameters while the SQL text is built."""

    dialect: Dialect
    dimensions: frozenset[str]
    params: dict[str, Any] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)

    def param(self, value: Any) -> str:
        """A placeholder bound to `value`."""
        name = f"p{len(self.params)}"
        self.params[name] = value
        return self.dialect.param_format.format(name=name)

    def condition(self, dimension: str, op: str, value: str) -> str:
        """`dimension op value` on a non-empty cell (numeric when the value is a number); never NULL."""
        if dimension.lower() not in self.dimensions:
            return "FALSE"  # no event ever carried this dimension: every cell is empty
        self.used.add(dimension.lower())
        col = quote(dimension_column(dimension))
        filled = f"{col} <> ''"  # NULL <> '' is NULL: CASE takes it as false
        target = number_or_none(value)
        number = self.dialect.number(col)
        if op == "=^":
            test = f"starts_with({col}, {self.param(value)})"
        elif op in ("=", "!="):
            equal = f"{col} = {self.param(value)}"
            if target is not None:  # the cast only where the text differs (CASE evaluates lazily)
                equal = f"CASE WHEN {equal} THEN TRUE ELSE coalesce({number} = {self.param(target)}, FALSE) END"
            test = equal if op == "=" else f"NOT ({equal})"
        elif target is not None:
            test = f"coalesce({number} {op} {self.param(target)}, FALSE)"
        else:
            test = f"{col}{self.dialect.text_collate} {op} {self.param(value)}"
        return f"(CASE WHEN {filled} THEN {test} ELSE FALSE END)"

    def accepted(self, f: FilterDefinition) -> str:
        """The filter's dimension holds one of its values."""
        return "(" + " OR ".join(self.condition(str(f.dimension), "=", v) for v in sorted(f.values_text())) + ")"

    def selection(self, key: tuple[str, str, tuple[tuple[str, str, str], ...]], goal_filters: str) -> str:
        """Events of one selection; goal-scope filters apply to every goal but the exposure."""
        unit_type, goal, conditions = key
        parts = [self.condition(d, op, v) for d, op, v in conditions]
        if goal != "exposure" and goal_filters:
            parts.append(goal_filters)
        base = f"unit_type = {self.param(unit_type)} AND goal = {self.param(goal)}"
        # the conditions are evaluated only on the events of the goal (CASE evaluates lazily)
        return f"CASE WHEN {base} THEN {' AND '.join(parts) or 'TRUE'} ELSE FALSE END"


def _unit_value(ref: GoalRef, index: int) -> str:
    """The per-unit value of a reference in level 2: count, value or unique (0/1)."""
    if ref.func == "value":
        return f"v{index}"
    return f"c{index}" if ref.func == "count" else f"(CASE WHEN c{index} > 0 THEN 1 ELSE 0 END)"


@dataclass(frozen=True)
class GoalsQuery:
    """The SQL text, its parameters, and how to read the wide result back."""

    sql: str
    params: dict[str, Any]
    selections: list[tuple[str, str, tuple[tuple[str, str, str], ...]]]
    pairs: list[tuple[GoalRef, GoalRef]]


def _scope(experiment: ExperimentDefinition, b: _Builder, selections: Sequence[Selection], last_day: date) -> list[str]:
    """The conditions on the events an evaluation reads: its experiment, dates, variants and goals."""
    where = [f"exp_id = {b.param(experiment.id)}", f"date <= {b.param(last_day)}"]
    if experiment.date_from is not None:
        where.append(f"date >= {b.param(experiment.date_from)}")
    if experiment.variants is not None:
        where.append(f"exp_variant_id IN ({', '.join(b.param(v) for v in sorted(experiment.variants))})")
    goals = sorted({s[1] for s in selections} | {"exposure"} | {str(f.goal) for f in experiment.filters if f.goal})
    where.append(f"goal IN ({', '.join(b.param(g) for g in goals)})")
    return where


def _per_unit(
    experiment: ExperimentDefinition, b: _Builder, selections: Sequence[Selection], dialect: Dialect
) -> tuple[list[str], list[str], list[str]]:
    """(the event columns m{i} / g{k} saying which selection or segment filter an event matches, the per-unit
    sums c{i} / v{i} and flags, the segment{k} columns a unit must have)."""
    goal_filters = " AND ".join(b.accepted(f) for f in experiment.filters if f.scope == "goal")
    matched = [f"({b.selection(key, goal_filters)}) AS m{i}" for i, key in enumerate(selections)]
    level1 = []
    for i in range(len(selections)):
        level1 += [
            f"sum(CASE WHEN m{i} THEN count ELSE 0 END) AS c{i}",
            f"{dialect.sum('value', f'm{i}')} AS v{i}",
        ]
    level1.append(f"bool_or({' OR '.join(f'm{i}' for i in range(len(selections)))}) AS hit")
    segments = []
    for k, f in enumerate(f for f in experiment.filters if f.scope in ("exposure", "trigger")):
        goal = "exposure" if f.scope == "exposure" else str(f.goal)
        test = f"goal = {b.param(goal)}" + (f" AND {b.accepted(f)}" if f.dimension else "")
        matched.append(f"({test}) AS g{k}")
        level1.append(f"bool_or(g{k}) AS segment{k}")
        segments.append(f"segment{k}")
    return matched, level1, segments


def _per_variant(
    selections: Sequence[Selection],
    pairs: Sequence[tuple[GoalRef, GoalRef]],
    unit_type: str,
    b: _Builder,
    dialect: Dialect,
) -> list[str]:
    """The per-variant columns: s{i}_* sums of each selection, x{j} cross products, units."""
    index = {s: i for i, s in enumerate(selections)}
    double = dialect.double
    level2 = []
    for i in range(len(selections)):
        sums = {  # integer sums are exact as they are; sums of values are exact sums, rounded once
            "count": f"sum(c{i})",
            "sum_sqr_count": f"sum(c{i} * c{i})",
            "sum_value": dialect.sum(f"v{i}"),
            "sum_sqr_value": dialect.sum(f"v{i} * v{i}"),
            "count_unique": f"sum(CASE WHEN c{i} > 0 THEN 1 ELSE 0 END)",
        }
        level2 += [f"CAST({expr} AS {double}) AS s{i}_{name}" for name, expr in sums.items()]
    for j, (left, right) in enumerate(pairs):
        product = f"{_unit_value(left, index[selection_key(left)])} * {_unit_value(right, index[selection_key(right)])}"
        exact = "value" in (left.func, right.func)
        level2.append(f"CAST({dialect.sum(product) if exact else f'sum({product})'} AS {double}) AS x{j}")
    level2.append(f"count(*) FILTER (WHERE hit AND unit_type = {b.param(unit_type)}) AS units")
    return level2


def goals_query(
    experiment: ExperimentDefinition,
    refs: Sequence[GoalRef],
    pairs: Sequence[tuple[GoalRef, GoalRef]],
    last_day: date,
    dimensions: Sequence[str],
    dialect: Dialect,
) -> GoalsQuery:
    """One statement: per variant, s{i}_* sums of every selection, x{j} cross products and units."""
    b = _Builder(dialect, frozenset(d.lower() for d in dimensions))
    selections = list(dict.fromkeys(selection_key(r) for r in [*refs, *(g for p in pairs for g in p)]))
    where = _scope(experiment, b, selections, last_day)
    matched, level1, segments = _per_unit(experiment, b, selections, dialect)
    level2 = _per_variant(selections, pairs, experiment.unit_type, b, dialect)
    columns = ["exp_variant_id", "unit_type", "unit_id", "goal", "count", "value"]
    columns += [quote(dimension_column(d)) for d in sorted(b.used)]
    sep1, sep2 = ",\n    ", ",\n  "
    sql = f"""WITH scoped AS (
  SELECT {", ".join(columns)}
  FROM events
  WHERE {" AND ".join(where)}
), matched AS (
  SELECT exp_variant_id, unit_type, unit_id, count, value,
    {sep1.join(matched)}
  FROM scoped
), per_unit AS (
  SELECT exp_variant_id, unit_type, unit_id,
    {sep1.join(level1)}
  FROM matched
  GROUP BY exp_variant_id, unit_type, unit_id
)
SELECT exp_variant_id,
  {sep2.join(level2)}
FROM per_unit
{("WHERE " + " AND ".join(segments)) if segments else ""}
GROUP BY exp_variant_id
ORDER BY exp_variant_id"""
    return GoalsQuery(sql, b.params, selections, list(pairs))
