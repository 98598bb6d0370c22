"""Goals aggregated in the warehouse from events, on every engine, against independent computations."""

import io
import json
import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from epstats.toolkit.testing import TestData

from aggassets.cli import main
from aggassets.experiments.definition import ExperimentDefinition, parse_experiment
from aggassets.experiments.evaluate import cross_products_needed, evaluate_goals, goal_refs_needed
from aggassets.experiments.expressions import GoalRef
from aggassets.warehouse import open_warehouse
from aggassets.warehouse.base import Warehouse
from aggassets.warehouse.experiments import (
    compute_goals,
    evaluation_history,
    latest_goals,
    store_evaluation,
    store_goals,
)
from aggassets_tests.events import insert_events
from aggassets_tests.experiments.reference_data import (
    REFERENCE_DIR,
    expected_exposures,
    expected_metrics,
    load_reference,
    metric_mismatches,
)

SUMS = ["count", "sum_sqr_count", "sum_value", "sum_sqr_value", "count_unique"]


# --- ep-stats' by-unit test data through the warehouse -------------------------------------------


def _epstats_events(exp_id: str) -> pd.DataFrame:
    """ep-stats' goals_by_unit rows as events (one event per row, its dimension as a dim_ column)."""
    g = TestData.load_goals_by_unit(exp_id)
    events = pd.DataFrame({
        "date": date(2021, 3, 1), "exp_id": g.exp_id, "exp_variant_id": g.exp_variant_id, "unit_type": g.unit_type,
        "unit_id": g.unit_id.astype(str), "goal": g.goal, "count": g["count"].astype("int64"),
        "value": g.sum_value.astype(float),
    })  # fmt: skip
    for dim in sorted(set(g.dimension.dropna()) - {""}):
        pairs = zip(g.dimension, g.dimension_value, strict=True)
        events[f"dim_{dim}"] = [str(v) if d == dim else None for d, v in pairs]
    return events


@pytest.mark.parametrize("name", ["test-trigger-by-unit.json", "test-real-valued-by-unit.json"])
def test_epstats_by_unit_experiments_from_events(warehouse: Warehouse, name: str) -> None:
    raw, experiment = load_reference(REFERENCE_DIR / name)
    insert_events(warehouse, _epstats_events(experiment.id))
    goals = compute_goals(warehouse, experiment, date(2021, 3, 2))
    evaluation = evaluate_goals(experiment, goals.goals, goals.cross, as_of=date(2021, 3, 2))
    for metric in raw["metrics"]:  # type: ignore[union-attr]
        ours = evaluation.metrics[evaluation.metrics.metric_id == metric["id"]]
        assert metric_mismatches(ours, expected_metrics(experiment.id, int(metric["id"]))) == []
    expected = expected_exposures(experiment.id, experiment.unit_type)
    assert list(evaluation.exposures.exposures) == list(expected.exposures)
    checks = TestData.load_evaluations_checks(experiment.id)
    for variable in ("p_value", "test_stat"):
        mine = evaluation.checks[evaluation.checks.variable_id == variable]["value"].to_numpy(dtype=float)
        theirs = checks[checks.variable_id == variable]["value"].astype(float).to_numpy()
        np.testing.assert_allclose(mine, theirs, atol=1e-4)


# --- goals SQL against pandas on generated events ---------------------------------------------------

DAY0 = date(2026, 1, 1)
METRICS = [
    ("count(user.unit.click(element=buy-button, product=^shoe))", "count(user.global.exposure)"),
    ("value(user.unit.purchase(product!=gift-card))", "count(user.unit.exposure)"),
    ("count(user.unit.view(price>=100))", "count(user.unit.view)"),
    ("unique(user.unit.purchase(price<100))", "unique(user.unit.view(price>abc))"),
    ("count(user.unit.click(price<=99.99)) + value(user.unit.purchase(element!=link))", "count(user.global.exposure)"),
    ("value(user.unit.purchase(price>5, price<=250.5))", "count(user.unit.view(element=link))"),
    ("count(user.unit.view(product<hat))", "count(user.unit.view(missing_dim=1))"),
    ("count(user.unit.view(price=100.0))", "count(user.global.exposure)"),
]
FILTERS = {
    "none": [],
    "exposure": [{"scope": "exposure", "dimension": "country", "value": ["FR", "DE"]}],
    "goal": [{"scope": "goal", "dimension": "country", "value": ["FR"]}],
    "trigger": [{"scope": "trigger", "goal": "click", "dimension": "element", "value": ["buy-button"]}],
    "trigger-any": [{"scope": "trigger", "goal": "purchase"}],
    "all": [
        {"scope": "exposure", "dimension": "country", "value": ["FR", "US"]},
        {"scope": "goal", "dimension": "country", "value": ["FR", "DE"]},
        {"scope": "trigger", "goal": "view", "dimension": "price", "value": [100]},
    ],
}


def _experiment(filters: list[dict[str, object]]) -> ExperimentDefinition:
    raw = {
        "id": "exp-1", "control_variant": "a", "variants": ["a", "b", "c"], "unit_type": "user",
        "date_from": str(DAY0 + timedelta(days=2)), "date_to": str(DAY0 + timedelta(days=14)), "filters": filters,
        "metrics": [{"id": i, "name": f"m{i}", "nominator": n, "denominator": d} for i, (n, d) in enumerate(METRICS)],
    }  # fmt: skip
    return parse_experiment(raw)


def _events(seed: int = 7, n: int = 6000) -> pd.DataFrame:
    """Random events of several experiments, variants, unit types, days and dimension values."""
    rng = np.random.default_rng(seed)
    pick = lambda values: rng.choice(np.array(values, dtype=object), n)  # noqa: E731
    events = pd.DataFrame({
        "date": [DAY0 + timedelta(days=int(d)) for d in rng.integers(0, 20, n)],
        "exp_id": pick(["exp-1"] * 9 + ["exp-2"]),
        "exp_variant_id": pick(["a", "b", "c", "z"]),
        "unit_type": pick(["user"] * 9 + ["device"]),
        "unit_id": [f"u{i}" for i in rng.integers(0, 300, n)],
        "goal": pick(["exposure", "click", "click", "view", "view", "purchase"]),
        "count": rng.integers(0, 4, n).astype("int64"),
        "value": np.round(rng.gamma(2.0, 10.0, n), 2),
        "dim_element": pick(["buy-button", "link", None]),
        "dim_product": pick(["shoe-1", "shoes", "hat", "gift-card", "Hat", None]),
        "dim_price": pick(["5", "100", "250.5", "99.99", "abc", "100.0", "", None]),
        "dim_country": pick(["FR", "DE", "US"]),
    })  # fmt: skip
    return events


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _holds(cell: object, op: str, value: str) -> bool:
    """One condition on one cell, written out by hand: empty cells never match."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)) or cell == "":
        return False
    cell = str(cell)
    if op == "=^":
        return cell.startswith(value)
    a, b = _number(cell), _number(value)
    if op in ("=", "!="):
        equal = cell == value or (a is not None and b is not None and a == b)
        return equal if op == "=" else not equal
    if b is not None:
        if a is None:
            return False
        left, right = a, b
    else:
        left, right = cell, value  # type: ignore[assignment]
    return {"<": left < right, ">": left > right, "<=": left <= right, ">=": left >= right}[op]


def _in(cell: object, values: list[object]) -> bool:
    return any(_holds(cell, "=", str(v)) for v in values)


def _reference(events: pd.DataFrame, experiment: ExperimentDefinition, as_of: date) -> tuple[dict, dict, dict]:
    """Goals, cross products and units per variant, computed row by row in pandas."""
    last = min(experiment.date_to, as_of)  # type: ignore[type-var]
    e = events[(events.exp_id == experiment.id) & events.exp_variant_id.isin(experiment.variants)]
    e = e[(e.date >= experiment.date_from) & (e.date <= last)]
    unit = list(zip(e.exp_variant_id, e.unit_type, e.unit_id, strict=True))
    e = e.assign(unit=unit)
    keep = set(unit)
    for f in experiment.filters:
        if f.scope == "goal":
            continue
        goal = "exposure" if f.scope == "exposure" else f.goal
        accepted = e[f"dim_{f.dimension}"].map(lambda c, f=f: _in(c, f.value)) if f.dimension else True
        rows = e[(e.goal == goal) & accepted]
        keep &= set(rows.unit)
    for f in experiment.filters:
        if f.scope == "goal":
            e = e[(e.goal == "exposure") | e[f"dim_{f.dimension}"].map(lambda c, f=f: _in(c, f.value))]
    e = e[e.unit.isin(keep)]

    def selected(ref: GoalRef) -> pd.Series:
        mask = (e.unit_type == ref.unit_type) & (e.goal == ref.goal)
        for d, op, v in ref.dimensions:
            column = e[f"dim_{d}"] if f"dim_{d}" in e else pd.Series(None, index=e.index)
            mask &= column.map(lambda c, op=op, v=v: _holds(c, op, v))
        return mask

    refs = goal_refs_needed(experiment)
    per_unit = {}
    for ref in refs:
        m = selected(ref)
        c = e[m].groupby("unit")["count"].sum()
        v = e[m].groupby("unit")["value"].sum()
        per_unit[ref.key] = {"count": c, "value": v, "unique": (c > 0).astype(int)}
    goals = {}
    for ref in refs:
        c, v = per_unit[ref.key]["count"], per_unit[ref.key]["value"]
        for variant in experiment.variants:  # type: ignore[union-attr]
            cv = c[[u[0] == variant for u in c.index]]
            vv = v[[u[0] == variant for u in v.index]]
            goals[(ref.key, variant)] = [cv.sum(), (cv**2).sum(), vv.sum(), (vv**2).sum(), (cv > 0).sum()]
    cross = {}
    for left, right in cross_products_needed(experiment):
        a = per_unit[left.key][left.func if left.func != "value" else "value"]
        b = per_unit[right.key][right.func if right.func != "value" else "value"]
        product = (a * b.reindex(a.index, fill_value=0)).fillna(0)
        for variant in experiment.variants:  # type: ignore[union-attr]
            cross[(left.key, right.key, variant)] = product[[u[0] == variant for u in product.index]].sum()
    hits = pd.Series(False, index=e.index)
    for ref in refs:
        hits |= selected(ref)
    units = {v: len({u for u in e[hits & (e.unit_type == "user")].unit if u[0] == v}) for v in experiment.variants}
    return goals, cross, units


@pytest.mark.parametrize("scope", list(FILTERS))
def test_goals_sql_matches_pandas(warehouse: Warehouse, scope: str) -> None:
    events = _events()
    insert_events(warehouse, events)
    experiment = _experiment(FILTERS[scope])
    as_of = DAY0 + timedelta(days=11)
    got = compute_goals(warehouse, experiment, as_of)
    goals, cross, units = _reference(events, experiment, as_of)
    table = got.goals.set_index(["goal_key", "exp_variant_id"])
    assert len(goals) == len(refs := goal_refs_needed(experiment)) * 3 and len(refs) >= 14
    nonzero = 0
    for (key, variant), want in goals.items():
        have = table.loc[(key, variant), SUMS].to_numpy(dtype=float) if (key, variant) in table.index else np.zeros(5)
        np.testing.assert_allclose(have, np.array(want, dtype=float), rtol=1e-9, atol=1e-6, err_msg=f"{key} {variant}")
        nonzero += bool(want[0])
    assert nonzero >= len(goals) // 2  # the data exercise the conditions (not all-zero goals)
    products = got.cross.set_index(["left_key", "right_key", "exp_variant_id"])
    assert len(cross) == len(products) > 0
    for k, want in cross.items():
        assert math.isclose(products.loc[k, "sum_product"], want, rel_tol=1e-9, abs_tol=1e-6), k
    for variant, n in units.items():
        assert set(products.xs(variant, level=2)["units"]) == {n}


def test_conditions_on_a_dimension_no_event_carries_match_nothing(warehouse: Warehouse) -> None:
    events = _events(n=500).drop(columns=["dim_price"])
    insert_events(warehouse, events)
    got = compute_goals(warehouse, _experiment([]), DAY0 + timedelta(days=11)).goals
    priced = got[got.goal_key.str.contains("price")]
    assert len(priced) > 0 and (priced[SUMS].to_numpy() == 0).all()
    assert (got[got.goal_key == "count(user.unit.view)"]["count"] > 0).all()


def test_date_window_is_from_date_from_to_min_of_date_to_and_as_of(warehouse: Warehouse) -> None:
    days = [DAY0 + timedelta(days=d) for d in range(20)]
    events = pd.DataFrame({
        "date": days, "exp_id": "exp-1", "exp_variant_id": "a", "unit_type": "user", "unit_id": "u1",
        "goal": "exposure", "count": [1 << d for d in range(20)], "value": 0.0,
    })  # fmt: skip
    insert_events(warehouse, events)
    experiment = _experiment([])
    exposures = {
        as_of: compute_goals(warehouse, experiment, as_of).goals.query("goal_key == 'count(user.global.exposure)'")
        for as_of in (DAY0 + timedelta(days=5), DAY0 + timedelta(days=30))
    }
    # variant a has the events; b and c, listed but without events yet, get zeros
    assert exposures[DAY0 + timedelta(days=5)]["count"].tolist() == [sum(1 << d for d in range(2, 6)), 0, 0]
    assert exposures[DAY0 + timedelta(days=30)]["count"].tolist() == [sum(1 << d for d in range(2, 15)), 0, 0]


def test_goal_history_keeps_every_evaluation_date_and_replaces_a_rerun(warehouse: Warehouse) -> None:
    insert_events(warehouse, _events(n=800))
    experiment = _experiment([])
    for day in (DAY0 + timedelta(days=5), DAY0 + timedelta(days=6), DAY0 + timedelta(days=5)):
        goals = compute_goals(warehouse, experiment, day)
        store_goals(warehouse, goals)
        evaluation = evaluate_goals(experiment, goals.goals, goals.cross, as_of=day)
        store_evaluation(warehouse, evaluation, day)
    latest = latest_goals(warehouse, "exp-1")
    assert latest.evaluation_date == DAY0 + timedelta(days=5)  # the last run wins, whatever its date
    fresh = compute_goals(warehouse, experiment, DAY0 + timedelta(days=5))
    pd.testing.assert_frame_equal(
        latest.goals.sort_values(["goal_key", "exp_variant_id"]).reset_index(drop=True),
        fresh.goals[latest.goals.columns].sort_values(["goal_key", "exp_variant_id"]).reset_index(drop=True),
        check_dtype=False,
    )
    metrics = evaluation_history(warehouse, "experiment_metrics", "exp-1")
    assert sorted(set(metrics.evaluation_date.astype(str))) == [str(DAY0 + timedelta(days=d)) for d in (5, 6)]
    assert len(metrics) == 2 * len(METRICS) * 3
    exposures = evaluation_history(warehouse, "experiment_exposures", "exp-1", DAY0 + timedelta(days=6))
    assert list(exposures.exp_variant_id) == ["a", "b", "c"]


def test_goals_frame_round_trips_through_the_evaluate_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_warehouse(f"duckdb:///{tmp_path / 'wh.duckdb'}") as wh:
        insert_events(wh, _events(n=2000))
        goals = compute_goals(wh, _experiment(FILTERS["all"]), DAY0 + timedelta(days=11))
    assert {"element", "price", "product"} <= set(goals.goals.columns)  # ep-stats' dimension columns
    row = goals.goals[goals.goals.goal_key == "count(user.unit.click(element=buy-button,product=^shoe))"].iloc[0]
    assert (row["element"], row["product"], row["price"]) == ("buy-button", "^shoe", "")
    goals.goals.to_csv(tmp_path / "goals.csv", index=False)
    goals.cross.to_csv(tmp_path / "cross.csv", index=False)
    experiment = tmp_path / "exp.json"
    raw = _experiment(FILTERS["all"]).model_dump(mode="json", exclude_none=True)
    experiment.write_text(json.dumps(raw))
    code = main(
        [
            "experiments",
            "evaluate",
            "--experiment",
            str(experiment),
            "--goals",
            str(tmp_path / "goals.csv"),
            "--cross",
            str(tmp_path / "cross.csv"),
            "--as-of",
            str(DAY0 + timedelta(days=11)),
            "--extended",
        ]
    )
    assert code == 0
    printed = pd.read_csv(io.StringIO(capsys.readouterr().out), keep_default_na=False, na_values=[""])
    direct = evaluate_goals(_experiment(FILTERS["all"]), goals.goals, goals.cross, as_of=DAY0 + timedelta(days=11))
    for col in ("mean", "std", "diff", "p_value", "confidence_interval", "abs_p_value"):
        np.testing.assert_allclose(printed[col].to_numpy(float), direct.metrics[col].to_numpy(float), rtol=1e-9)
