"""The demo experiments in definitions/experiments load and evaluate on consistent unit-level data."""

import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aggassets.experiments.definition import ExperimentDefinition, load_experiment
from aggassets.experiments.evaluate import (
    METRIC_COLUMNS,
    cross_products_needed,
    evaluate_goals,
    goal_refs_needed,
    to_rest_json,
)

DEMO_DIR = Path(__file__).resolve().parents[2] / "definitions" / "experiments"
DEMOS = sorted(DEMO_DIR.glob("*.json"))


def _unit_values(experiment: ExperimentDefinition, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Per-unit values of every goal reference the experiment reads."""
    out = {}
    for ref in goal_refs_needed(experiment):
        if ref.goal == "exposure":
            out[ref.key] = np.ones(n)
        elif ref.func == "value":
            out[ref.key] = rng.gamma(0.3, 40.0, n)
        else:
            counts = rng.poisson(1.5, n).astype(float)
            out[ref.key] = (counts > 0).astype(float) if ref.func == "unique" else counts
    return out


def _frames(experiment: ExperimentDefinition) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Goals (goal_key layout) and cross products computed from simulated units."""
    rng = np.random.default_rng(len(experiment.id))
    goals, cross = [], []
    for variant in experiment.variants or []:
        units = _unit_values(experiment, rng, 2000)
        for key, x in units.items():
            total, squares = x.sum(), (x * x).sum()
            sums = {"count": total, "sum_sqr_count": squares, "sum_value": total, "sum_sqr_value": squares}
            goals.append({"exp_variant_id": variant, "goal_key": key, **sums, "count_unique": (x > 0).sum()})
        for a, b in cross_products_needed(experiment):
            product = (units[a.key] * units[b.key]).sum()
            cross.append(
                {
                    "exp_variant_id": variant,
                    "left_key": a.key,
                    "right_key": b.key,
                    "sum_product": product,
                    "units": 2000,
                }
            )
    return pd.DataFrame(goals), pd.DataFrame(cross)


def test_three_demo_experiments_exist() -> None:
    assert len(DEMOS) == 3


@pytest.mark.parametrize("path", DEMOS, ids=[p.stem for p in DEMOS])
def test_demo_experiment_evaluates(path: Path) -> None:
    experiment = load_experiment(path)
    assert experiment.date_from is not None and experiment.date_to is not None
    assert datetime.date(2026, 10, 1) <= experiment.date_from <= experiment.date_to <= datetime.date(2026, 11, 30)
    goals, cross = _frames(experiment)
    evaluation = evaluate_goals(experiment, goals, cross, as_of=experiment.date_to)
    metrics = evaluation.metrics
    assert list(metrics.columns) == METRIC_COLUMNS
    assert len(metrics) == len(experiment.metrics) * len(experiment.variants or [])
    treatment = metrics[metrics.exp_variant_id != experiment.control_variant]
    assert treatment["p_value"].between(0, 1).all() and (treatment["confidence_interval"] > 0).all()
    assert (metrics["reason"] == "").all()
    assert set(evaluation.checks.check_id) == {c.id for c in experiment.checks}
    assert to_rest_json(evaluation)["id"] == experiment.id
