"""Experiment evaluation speed: ours against ep-stats' evaluate_agg on the same goals, in the same run."""

import time
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd

from aggassets.experiments.definition import ExperimentDefinition, parse_experiment
from aggassets.experiments.evaluate import evaluate_goals

TARGET_RATIO = 50.0


def _definition(n_metrics: int, n_variants: int) -> dict[str, object]:
    """Metrics alternating a conversion, a revenue and a clicks-per-view ratio over distinct goals."""
    metrics = []
    for i in range(n_metrics):
        kind = i % 3
        nominator = [f"count(user.unit.click_{i})", f"value(user.unit.purchase_{i})", f"count(user.unit.click_{i})"][
            kind
        ]
        denominator = "count(user.unit.view)" if kind == 2 else "count(user.global.exposure)"
        metrics.append({"id": i + 1, "name": f"metric {i + 1}", "nominator": nominator, "denominator": denominator})
    variants = [chr(ord("a") + j) for j in range(n_variants)]
    srm = {"id": 1, "name": "SRM", "type": "SRM", "denominator": "count(user.global.exposure)"}
    return {"id": "bench", "control_variant": "a", "variants": variants, "unit_type": "user", "metrics": metrics,
            "checks": [srm]}  # fmt: skip


def _goals(raw: dict[str, object], rng: np.random.Generator) -> pd.DataFrame:
    """Aggregated goals of every goal the metrics read, for every variant (ep-stats' layout)."""
    goals = {"exposure": "global", "view": "unit"}
    for m in raw["metrics"]:  # type: ignore[attr-defined]
        goals[m["nominator"].split(".")[2].rstrip(")")] = "unit"
    rows = []
    for variant in raw["variants"]:  # type: ignore[attr-defined]
        for goal, agg in goals.items():
            n = 10_000 if goal == "exposure" else int(rng.integers(500, 3000))
            value = n * rng.uniform(5, 50)
            rows.append(("bench", variant, "user", agg, goal, n, n * 1.4, value, value * value / n * 3, n * 0.8))
    columns = ["exp_id", "exp_variant_id", "unit_type", "agg_type", "goal", "count", "sum_sqr_count"]
    return pd.DataFrame(rows, columns=[*columns, "sum_value", "sum_sqr_value", "count_unique"])


def _epstats_experiment(raw: dict[str, object]) -> Callable[[pd.DataFrame], object]:
    """ep-stats' Experiment for the same definition; its evaluate_agg."""
    from epstats.toolkit import Experiment, Metric, SrmCheck

    metrics = [Metric(m["id"], m["name"], m["nominator"], m["denominator"]) for m in raw["metrics"]]  # type: ignore[attr-defined]
    checks = [SrmCheck(1, "SRM", "count(user.global.exposure)")]
    experiment = Experiment("bench", "a", metrics, checks, unit_type="user", variants=raw["variants"])
    return experiment.evaluate_agg


def _best_of(fn: Callable[[], object], repeat: int) -> float:
    """Fastest of `repeat` timed calls, seconds."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _case(n_metrics: int, n_variants: int) -> str:
    """One printable line: both timings and the ratio."""
    raw = _definition(n_metrics, n_variants)
    goals = _goals(raw, np.random.default_rng(n_metrics))
    experiment: ExperimentDefinition = parse_experiment(raw)
    ours = _best_of(lambda: evaluate_goals(experiment, goals), 5)
    epstats = _epstats_experiment(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = _best_of(lambda: epstats(goals), 1 if n_metrics > 200 else 2)
    ratio = theirs / ours
    verdict = (
        "" if n_metrics > 200 else (" (target >= 50x: met)" if ratio >= TARGET_RATIO else " (target >= 50x: MISSED)")
    )
    return (f"experiments {n_metrics} metrics x {n_variants} variants: aggassets {ours * 1000:.1f} ms, "
            f"ep-stats evaluate_agg {theirs * 1000:.0f} ms, {ratio:.0f}x faster{verdict}")  # fmt: skip


def run() -> list[str]:
    """Time 100 metrics x 3 variants and 1000 metrics x 5 variants, ours and ep-stats'."""
    return [_case(100, 3), _case(1000, 5)]


if __name__ == "__main__":
    for line in run():
        print(line)
