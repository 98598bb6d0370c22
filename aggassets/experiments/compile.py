"""Metric expressions to per-variant sums for all metrics at once (sparse linear maps, delta sums)."""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from aggassets.errors import AggassetsError
from aggassets.experiments.definition import ExperimentDefinition
from aggassets.experiments.expressions import Const, Expr, GoalRef, evaluate, goal_refs
from aggassets.experiments.goals import CrossTable, GoalTable
from aggassets.stats.ratio import RatioSums


@dataclass(frozen=True)
class LinearForm:
    """`constant + Σ coefficient · goal`, the form of most metric expressions."""

    terms: tuple[tuple[GoalRef, float], ...]
    constant: float = 0.0

    def scaled(self, factor: float) -> "LinearForm":
        """This form multiplied by a number."""
        return LinearForm(tuple((g, c * factor) for g, c in self.terms), self.constant * factor)

    def plus(self, other: "LinearForm", sign: float) -> "LinearForm":
        """This form plus `sign` times another, like terms merged."""
        merged: dict[str, tuple[GoalRef, float]] = {g.key: (g, c) for g, c in self.terms}
        for g, c in other.terms:
            merged[g.key] = (g, merged.get(g.key, (g, 0.0))[1] + sign * c)
        return LinearForm(tuple(merged.values()), self.constant + sign * other.constant)


def linear_form(expr: Expr, square_constants: bool = False) -> LinearForm | None:
    """The expression as a LinearForm, or None when it multiplies or divides two goal terms."""
    # square_constants squares every constant first: ep-stats' rule for the nominator's sum of
    # squares (the same operations applied to the goals' squared columns)
    if isinstance(expr, Const):
        return LinearForm((), expr.value**2 if square_constants else expr.value)
    if isinstance(expr, GoalRef):
        return LinearForm(((expr, 1.0),))
    left = linear_form(expr.left, square_constants)
    right = linear_form(expr.right, square_constants)
    if left is None or right is None:
        return None
    if expr.op in ("+", "-"):
        return left.plus(right, 1.0 if expr.op == "+" else -1.0)
    if expr.op == "*":
        if not left.terms:
            return right.scaled(left.constant)
        return left.scaled(right.constant) if not right.terms else None
    if right.terms or right.constant == 0:
        return None
    return left.scaled(1.0 / right.constant)


@dataclass(frozen=True)
class CompiledMetric:
    """One metric's parsed expressions and their linear forms (None when not linear)."""

    nominator: Expr
    denominator: Expr
    nominator_form: LinearForm | None
    denominator_form: LinearForm | None
    square_form: LinearForm | None
    disjoint_square_form: LinearForm | None
    counts_units: bool

    @property
    def delta_ready(self) -> bool:
        """Linear nominator and denominator without constant terms: the delta method applies."""
        forms = (self.nominator_form, self.denominator_form)
        return all(f is not None and f.constant == 0 and f.terms for f in forms)


def compile_metrics(experiment: ExperimentDefinition) -> list[CompiledMetric]:
    """Parse and linearise every metric of the experiment."""
    out = []
    for metric in experiment.metrics:
        nom, den = metric.expressions(experiment.unit_type)
        counts_units = metric.simple or all(r.func != "value" for r in goal_refs(den))
        nom_form, square_form = linear_form(nom), linear_form(nom, True)
        disjoint = square_form
        if nom_form is not None and nom_form.constant == 0 and nom_form.terms:
            disjoint = LinearForm(tuple((g, c * c) for g, c in nom_form.terms))
        out.append(CompiledMetric(nom, den, nom_form, linear_form(den), square_form, disjoint, counts_units))
    return out


def cross_pairs(metric: CompiledMetric) -> list[tuple[GoalRef, GoalRef]]:
    """Distinct goal pairs whose per-unit cross products the delta method needs for this metric."""
    if not metric.delta_ready:
        return []
    nom = [g for g, _ in metric.nominator_form.terms]  # type: ignore[union-attr]
    den = [g for g, _ in metric.denominator_form.terms]  # type: ignore[union-attr]
    pairs = [(a, b) for a in nom for b in den] + [(a, b) for a in den for b in den] + [(a, b) for a in nom for b in nom]
    return [(a, b) if a.key < b.key else (b, a) for a, b in pairs if a.key != b.key]


def _matrix(forms: Sequence[LinearForm], index: dict[str, int]) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Coefficient matrix (forms x references) and constants of linear forms."""
    rows, cols, data = [], [], []
    for i, form in enumerate(forms):
        for ref, coef in form.terms:
            rows.append(i)
            cols.append(index[ref.key])
            data.append(coef)
    shape = (len(forms), len(index))
    matrix = sparse.csr_matrix((data, (rows, cols)), shape=shape)
    return matrix, np.array([f.constant for f in forms], dtype=float)


def _apply(metrics: Sequence[CompiledMetric], attr: str, expr_attr: str, table: GoalTable, square: bool) -> np.ndarray:
    """Evaluate one expression of every metric, shaped (metrics, variants)."""
    refs = table.refs
    source = np.stack([table.squares(r) if square else table.sums(r) for r in refs]) if refs else None
    out = np.zeros((len(metrics), len(table.variants)))
    linear = [i for i, m in enumerate(metrics) if getattr(m, attr) is not None]
    if linear and source is not None:
        matrix, const = _matrix([getattr(metrics[i], attr) for i in linear], table.index)
        out[linear] = matrix @ source + const[:, None]
    elif linear:
        out[linear] = np.array([getattr(metrics[i], attr).constant for i in linear])[:, None]
    for i, m in enumerate(metrics):
        if getattr(m, attr) is None:
            leaf = table.squares if square else table.sums
            out[i] = evaluate(getattr(m, expr_attr), leaf, (lambda c: c * c) if square else float)
    return out


@dataclass(frozen=True)
class MetricSums:
    """Per metric and variant: denominator total, nominator total and ep-stats' nominator squares."""

    count: np.ndarray
    sum_value: np.ndarray
    sum_sqr_value: np.ndarray


def metric_sums(metrics: Sequence[CompiledMetric], table: GoalTable, compat: bool = False) -> MetricSums:
    """Totals of every metric's nominator and denominator, and the nominator's Σx² without cross products:
    for Σ c·goal, Σ c²·Σgoal² (exact when no unit has two of its goals: `a - b` gives Σa² + Σb²); else, and
    with `compat`, ep-stats' rule (the expression applied to the squared columns: `a - b` gives Σa² - Σb²)."""
    return MetricSums(
        _apply(metrics, "denominator_form", "denominator", table, False),
        _apply(metrics, "nominator_form", "nominator", table, False),
        _apply(metrics, "square_form" if compat else "disjoint_square_form", "nominator", table, True),
    )


def _second_moment(
    left: LinearForm, right: LinearForm, table: GoalTable, cross: CrossTable, missing: set[str]
) -> np.ndarray:
    """Σ_units (Σ a_i g_i)(Σ b_j g_j) from the goals' squares and the cross products."""
    total = np.zeros(len(table.variants))
    for a, ca in left.terms:
        for b, cb in right.terms:
            if a.key == b.key:
                total = total + ca * cb * table.squares(a)
                continue
            product = cross.product(a.key, b.key)
            if product is None:
                missing.add(f"{a.key} x {b.key}")
            else:
                total = total + ca * cb * product
    return total


def delta_sums(
    metrics: Sequence[CompiledMetric], sums: MetricSums, table: GoalTable, cross: CrossTable
) -> tuple[np.ndarray, RatioSums]:
    """Which metrics use the delta method, and their unit-level sums (NaN rows for the others)."""
    shape = (len(metrics), len(table.variants))
    x2, y2, xy = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    ready = np.array([m.delta_ready for m in metrics], dtype=bool)
    missing: set[str] = set()
    for i in np.flatnonzero(ready):
        nom, den = metrics[i].nominator_form, metrics[i].denominator_form
        x2[i] = _second_moment(nom, nom, table, cross, missing)  # type: ignore[arg-type]
        y2[i] = _second_moment(den, den, table, cross, missing)  # type: ignore[arg-type]
        xy[i] = _second_moment(nom, den, table, cross, missing)  # type: ignore[arg-type]
    if missing:
        raise AggassetsError(f"cross products lack pair(s): {', '.join(sorted(missing))}")
    units = np.broadcast_to(cross.units, shape)
    return ready, RatioSums(units, sums.sum_value, x2, sums.count, y2, xy)
