"""Goals query edge cases the main tests leave open: empty cells, text order, other unit types (by hand)."""

import math
from datetime import date

import numpy as np
import pandas as pd
import pytest

from aggassets.experiments.definition import ExperimentDefinition, parse_experiment
from aggassets.warehouse import open_warehouse
from aggassets.warehouse.base import Warehouse
from aggassets.warehouse.experiments import compute_goals
from aggassets_tests.events import insert_events

DAY = date(2026, 1, 5)


def _events(rows: list[tuple[str, str, str, str, int, str | None]]) -> pd.DataFrame:
    """(variant, unit_type, unit_id, goal, count, product) rows of experiment exp-1 on one day."""
    frame = pd.DataFrame(rows, columns=["exp_variant_id", "unit_type", "unit_id", "goal", "count", "dim_product"])
    return frame.assign(date=DAY, exp_id="exp-1", value=0.0, count=frame["count"].astype("int64"))


def _experiment(*metrics: tuple[str, str]) -> ExperimentDefinition:
    return parse_experiment({
        "id": "exp-1", "control_variant": "a", "variants": ["a"], "unit_type": "user",
        "metrics": [{"id": i, "name": f"m{i}", "nominator": n, "denominator": d} for i, (n, d) in enumerate(metrics)],
    })  # fmt: skip


def _counts(wh: Warehouse, experiment: ExperimentDefinition) -> dict[str, float]:
    goals = compute_goals(wh, experiment, DAY).goals
    return dict(zip(goals.goal_key, goals["count"], strict=True))


VIEWS = [("a", "user", "u1", "view", 1, "hat"), ("a", "user", "u2", "view", 2, "Hat"),
         ("a", "user", "u3", "view", 4, ""), ("a", "user", "u4", "view", 8, "gift-card"),
         ("a", "user", "u5", "view", 16, None), ("a", "user", "u6", "view", 32, "shoe"),
         ("a", "user", "u1", "exposure", 1, None)]  # fmt: skip


def test_an_empty_cell_never_satisfies_a_condition(warehouse: Warehouse) -> None:
    """docs: a condition holds on a non-empty cell; `!=` and text `<` included (u3's '' and u5's NULL)."""
    insert_events(warehouse, _events(VIEWS))
    experiment = _experiment(
        ("count(user.unit.view(product!=hat))", "count(user.global.exposure)"),
        ("count(user.unit.view(product<hat))", "count(user.global.exposure)"),
    )
    counts = _counts(warehouse, experiment)
    assert counts["count(user.unit.view(product!=hat))"] == 2 + 8 + 32
    assert counts["count(user.unit.view(product<hat))"] == 2 + 8  # 'Hat' < 'gift-card' < 'hat' in byte order


@pytest.mark.parametrize("collation", ["und-x-icu", "en-US-x-icu"])
def test_text_conditions_use_byte_order_whatever_the_postgres_collation(postgres_url: str, collation: str) -> None:
    """A dimension column with a linguistic collation ('hat' < 'Hat'): `<` still compares byte order, as DuckDB.
    Needs a server built with ICU (PostgreSQL's packages are): without it the test fails, it does not skip."""
    with open_warehouse(postgres_url) as wh:
        has = not wh.fetch(f"SELECT 1 FROM pg_collation WHERE collname = '{collation}'").empty
        assert has, f"the PostgreSQL server has no ICU collation {collation} (built without ICU)"
        insert_events(wh, _events(VIEWS))
        wh.execute(f'ALTER TABLE events ALTER COLUMN dim_product TYPE TEXT COLLATE "{collation}"')
        experiment = _experiment(("count(user.unit.view(product<hat))", "count(user.global.exposure)"))
        assert _counts(wh, experiment)["count(user.unit.view(product<hat))"] == 2 + 8


def test_units_are_the_units_of_the_experiments_unit_type(warehouse: Warehouse) -> None:
    """A metric on device goals in a user experiment: the delta method's N counts users only (2 here)."""
    rows = [("a", "user", "u1", "view", 3, None), ("a", "user", "u1", "click", 1, None),
            ("a", "user", "u2", "view", 2, None), ("a", "device", "d1", "view", 5, None),
            ("a", "device", "d2", "click", 1, None), ("a", "device", "d3", "view", 1, None)]  # fmt: skip
    insert_events(warehouse, _events(rows))
    experiment = _experiment(
        ("count(user.unit.click)", "count(user.unit.view)"), ("count(device.unit.click)", "count(device.unit.view)")
    )
    cross = compute_goals(warehouse, experiment, DAY).cross
    assert len(cross) > 0 and set(cross["units"]) == {2}


def test_cross_products_of_unique_goals_multiply_the_zero_one_flags(warehouse: Warehouse) -> None:
    """unique(click) / unique(view): Σ_units [clicked]·[viewed] is the number of units with both (u1, u2)."""
    rows = [("a", "user", "u1", "view", 3, None), ("a", "user", "u1", "click", 2, None),
            ("a", "user", "u2", "view", 1, None), ("a", "user", "u2", "click", 4, None),
            ("a", "user", "u3", "view", 2, None)]  # fmt: skip
    insert_events(warehouse, _events(rows))
    experiment = _experiment(("unique(user.unit.click)", "unique(user.unit.view)"))
    cross = compute_goals(warehouse, experiment, DAY).cross
    assert cross[["left_key", "right_key", "sum_product", "units"]].values.tolist() == [
        ["unique(user.unit.click)", "unique(user.unit.view)", 2.0, 3]
    ]


def test_the_control_gets_zero_rows_before_its_first_event(warehouse: Warehouse) -> None:
    """Variants not listed: those with events plus the control, which has none yet (docs: zeros)."""
    insert_events(warehouse, _events([("b", "user", "u1", "exposure", 1, None), ("b", "user", "u1", "view", 2, None)]))
    experiment = parse_experiment({
        "id": "exp-1", "control_variant": "a", "unit_type": "user",
        "metrics": [{"id": 1, "name": "views", "nominator": "count(user.unit.view)",
                     "denominator": "count(user.global.exposure)"}],
    })  # fmt: skip
    goals = compute_goals(warehouse, experiment, DAY).goals
    views = goals[goals.goal_key == "count(user.unit.view)"].set_index("exp_variant_id")["count"]
    assert views.to_dict() == {"a": 0.0, "b": 2.0}


def test_long_digit_runs_are_text_so_every_number_fits_a_float(warehouse: Warehouse) -> None:
    """docs: a number is at most 200 characters long (so within 1e-299..1e299); longer runs of digits are
    text, which numeric conditions never match (PostgreSQL's cast of a 400-digit cell used to fail)."""
    cells = {
        "1" * 400: 1,  # text (was inf on DuckDB, an error on PostgreSQL)
        "0." + "0" * 330 + "1": 2,  # text (was 0 on DuckDB)
        "1" * 200: 4,  # a number, about 1.1e199
        "1" * 201: 8,  # text
        "0." + "0" * 197 + "1": 16,  # a number, 1e-198
        "150": 32,
        "9" * 197 + "e99": 64,  # a number, about 1e296
    }
    rows = [("a", "user", f"u{i}", "view", n, cell) for i, (cell, n) in enumerate(cells.items())]
    insert_events(warehouse, _events(rows).rename(columns={"dim_product": "dim_price"}))
    huge = "1" + "0" * 150 + "e99"  # 1e249
    experiment = _experiment(
        ("count(user.unit.view(price>100))", "count(user.unit.view)"),
        ("count(user.unit.view(price<1))", "count(user.unit.view)"),
        (f"count(user.unit.view(price>{huge}))", "count(user.unit.view)"),
    )
    counts = _counts(warehouse, experiment)
    assert counts["count(user.unit.view(price>100))"] == 4 + 32 + 64
    assert counts["count(user.unit.view(price<1))"] == 16
    assert counts[f"count(user.unit.view(price>{huge}))"] == 64


def _valued_events(values: list[list[float]]) -> pd.DataFrame:
    """One purchase event per value, the values of unit i in values[i] (variant a), in that order."""
    rows = [("a", "user", f"u{i}", "purchase", 1, None) for i, unit in enumerate(values) for _ in unit]
    return _events(rows).assign(value=[v for unit in values for v in unit])


@pytest.mark.parametrize("values", [[[1e16, 1.0, 1.0, -1e16]], [[1e16], [1.0], [1.0], [-1e16]]], ids=["unit", "units"])
def test_value_sums_cancel_exactly(warehouse: Warehouse, values: list[list[float]]) -> None:
    """1e16, 1, 1 and -1e16 sum to 2 within a unit and across units (a plain float sum gives 0)."""
    insert_events(warehouse, _valued_events(values))
    result = compute_goals(warehouse, _experiment(("value(user.unit.purchase)", "count(user.unit.purchase)")), DAY)
    assert result.goals.set_index("goal_key").loc["value(user.unit.purchase)", "sum_value"] == 2.0
    cross = result.cross.set_index(["left_key", "right_key"])["sum_product"]
    assert cross[("count(user.unit.purchase)", "value(user.unit.purchase)")] == (8.0 if len(values) == 1 else 2.0)


def _assert_rounded_sum(got: float, values: list[float], postgres: bool) -> None:
    """README: DuckDB's fsum gives the correctly rounded sum (math.fsum, barring huge cancellations);
    PostgreSQL adds each value's shortest round-trip text exactly and rounds once, so it is within half
    an ulp of each value (how far such a text can be from it) plus half an ulp of the sum."""
    exact = math.fsum(values)
    if not postgres:
        assert got == exact
        return
    bound = math.fsum(float(np.spacing(abs(v))) / 2 for v in values) + float(np.spacing(abs(exact))) / 2
    assert abs(got - exact) <= bound


def test_sums_of_values_are_rounded_once_whatever_the_order(warehouse: Warehouse, warehouse_url: str) -> None:
    """Per unit, then per variant, Σx, Σx² and Σxy are exact sums rounded once, whatever the order the
    rows are added up in: a re-run gives the same bits (plain float sums moved with DuckDB's threads)."""
    postgres = warehouse_url.startswith("postgresql")
    rng = np.random.default_rng(5)
    values = [[1e16, 1.0, 1.0, -1e16], [1e16], [1.0], [3.0, -1e16], [0.1, 0.2, 0.3]]
    values += [list(rng.lognormal(3.0, 2.0, size=int(k))) for k in rng.integers(1, 6, size=20_000)]
    insert_events(warehouse, _valued_events(values))
    experiment = _experiment(("value(user.unit.purchase)", "count(user.unit.purchase)"))
    result = compute_goals(warehouse, experiment, DAY)
    per_unit = [math.fsum(unit) for unit in values]  # what both engines give for this data (seen)
    value = result.goals.set_index("goal_key").loc["value(user.unit.purchase)"]
    _assert_rounded_sum(value["sum_value"], per_unit, postgres)
    _assert_rounded_sum(value["sum_sqr_value"], [v * v for v in per_unit], postgres)
    cross = result.cross.set_index(["left_key", "right_key"])["sum_product"]
    products = [len(unit) * v for unit, v in zip(values, per_unit, strict=True)]
    _assert_rounded_sum(cross[("count(user.unit.purchase)", "value(user.unit.purchase)")], products, postgres)
    again = compute_goals(warehouse, experiment, DAY)
    pd.testing.assert_frame_equal(again.goals, result.goals)
    pd.testing.assert_frame_equal(again.cross, result.cross)
