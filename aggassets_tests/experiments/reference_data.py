"""ep-stats' bundled test data shaped for evaluate_goals, and the bundled expectations."""

import json
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
from epstats.toolkit.testing import TestData

from aggassets.experiments.definition import ExperimentDefinition, parse_experiment
from aggassets.experiments.expressions import FUNCS, GoalRef

REFERENCE_DIR = Path(__file__).parent / "epstats_reference"
METRIC_TOLERANCES = {
    "sum_value": 1e-3, "diff": 1e-3, "mean": 1e-3, "confidence_level": 1e-3, "power": 1e-3,
    "false_positive_risk": 1e-3, "p_value": 1e-2, "confidence_interval": 1e-2, "sample_size": 0.0,
    "required_sample_size": 0.0, "minimum_effect": 0.0,
}  # fmt: skip


def reference_files() -> list[Path]:
    """Every transcribed ep-stats test experiment."""
    return sorted(REFERENCE_DIR.glob("*.json"))


def load_reference(path: Path) -> tuple[dict[str, object], ExperimentDefinition]:
    """The raw JSON and its validated definition."""
    raw = json.loads(path.read_text())
    return raw, parse_experiment(raw, str(path))


def _by_unit_goals(experiment: ExperimentDefinition) -> pd.DataFrame:
    """goals_by_unit filtered per unit as ep-stats' TestDao does, then aggregated per unit and variant."""
    g = TestData.load_goals_by_unit(experiment.id)
    segments: list[set[object]] = []
    for f in experiment.filters:
        exposure, dim = g.goal == "exposure", g.dimension == f.dimension
        value = g.dimension_value.astype(str).isin(f.values_text())
        if f.scope == "exposure":
            segments.append(set(g.unit_id[exposure & dim & value]))
        elif f.scope == "goal":
            g = g[exposure | (dim & value)]
        else:
            segments.append(set(g.unit_id[(g.goal == f.goal) & dim & value]))
    if segments:
        g = g[g.unit_id.isin(set.intersection(*segments))]
    keys = ["exp_id", "exp_variant_id", "unit_type", "agg_type", "goal"]
    unit = g.groupby([*keys, "unit_id"])[["count", "sum_value"]].sum().reset_index()
    unit = unit.assign(sqc=unit["count"] ** 2, sqv=unit["sum_value"] ** 2, uniq=(unit["count"] > 0).astype(int))
    agg = unit.groupby(keys).agg(
        count=("count", "sum"), sum_sqr_count=("sqc", "sum"), sum_value=("sum_value", "sum"),
        sum_sqr_value=("sqv", "sum"), count_unique=("uniq", "sum"),
    ).reset_index()  # fmt: skip
    agg = pd.concat([agg, agg[agg.goal == "exposure"].assign(agg_type="global")], ignore_index=True)
    # filters are already applied per unit (as the warehouse does): rows keyed by goal reference
    triples = list(zip(agg.unit_type, agg.agg_type, agg.goal, strict=True))
    keyed = [agg.assign(goal_key=[GoalRef(f, u, a, g).key for u, a, g in triples]) for f in FUNCS]
    return pd.concat(keyed, ignore_index=True)


def _simple_goals() -> pd.DataFrame:
    """goals_simple_agg (one column per goal) as long aggregated rows."""
    wide = TestData.load_goals_simple_agg()
    rows = []
    for _, r in wide.iterrows():
        for goal in ("views", "clicks", "conversions", "bookings"):
            sqr = r.get(f"{goal}_squared", r[goal])
            rows.append((r["exp_id"], r["variant"], "test_unit_type", "global", goal, 0, 0, r[goal], sqr, 0))
    columns = ["exp_id", "exp_variant_id", "unit_type", "agg_type", "goal", "count", "sum_sqr_count"]
    return pd.DataFrame(rows, columns=[*columns, "sum_value", "sum_sqr_value", "count_unique"])


def reference_goals(raw: dict[str, object], experiment: ExperimentDefinition) -> pd.DataFrame:
    """The goals ep-stats' own test feeds to this experiment."""
    if raw.get("by_unit"):
        return _by_unit_goals(experiment)
    if any(m.simple for m in experiment.metrics):
        return _simple_goals()
    return _goals_agg()


@cache
def _goals_agg() -> pd.DataFrame:
    """goals_agg.csv, read once."""
    return TestData.load_goals_agg()


def expected_metrics(exp_id: str, metric_id: int) -> pd.DataFrame:
    """Bundled metric expectations of one metric, numbers as floats (N/A -> NaN)."""
    frame = TestData.load_evaluations_metrics(exp_id)
    frame = frame[frame.metric_id == metric_id].copy()
    for col in METRIC_TOLERANCES:
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame


def expected_exposures(exp_id: str, unit_type: str) -> pd.DataFrame:
    """Bundled exposures per variant (global exposure goal), as ep-stats' assertion reads them."""
    e = TestData.load_evaluations_exposures(exp_id)
    e = e[(e.unit_type == unit_type) & (e.agg_type == "global") & (e.goal == "exposure")]
    return e.groupby("exp_variant_id").agg(exposures=("count", "sum")).reset_index()


def metric_mismatches(ours: pd.DataFrame, expected: pd.DataFrame) -> list[str]:
    """Columns where our rows differ from the expectation beyond ep-stats' tolerance."""
    if list(ours.exp_variant_id) != list(expected.exp_variant_id):
        return [f"variants {list(ours.exp_variant_id)} != {list(expected.exp_variant_id)}"]
    bad = []
    for col, tol in METRIC_TOLERANCES.items():
        a, b = ours[col].to_numpy(dtype=float), expected[col].to_numpy(dtype=float)
        if not np.allclose(a, b, atol=tol, rtol=0 if tol == 0 else 1e-5, equal_nan=True):
            bad.append(f"{col}: ours {a} expected {b}")
    return bad
