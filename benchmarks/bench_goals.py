"""Goals aggregation speed: the experiment goals query over 20M events against a bare two-level GROUP BY.

Environment: BENCH_EVENTS (default 20,000,000). Both run on the same DuckDB file in the same run.
"""

import os
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import duckdb

from aggassets.experiments.definition import load_experiments
from aggassets.settings import definitions_dir
from aggassets.warehouse import open_warehouse
from aggassets.warehouse.experiments import compute_goals

TARGET_RATIO = 2.0
UNITS = 1_000_000

# Events of one experiment: a variant per unit (50/25/25), goals with the demo experiments' names and
# dimensions; about 10 % exposures, 45 % views, 30 % clicks, 10 % purchases, 5 % inconsistent exposures.
GENERATE = f"""
INSERT INTO events (batch_id, date, exp_id, exp_variant_id, unit_type, unit_id, goal, count, value,
                    dim_country, dim_element, dim_product, dim_price)
SELECT 1, DATE '2026-10-12' + CAST(h % 28 AS INTEGER), 'bench', ['a', 'a', 'b', 'c'][u % 4 + 1], 'user',
  'u' || u, goal, 1 + CAST(h % 3 AS BIGINT), CASE WHEN goal = 'purchase' THEN (h % 10000) / 100.0 ELSE 0 END,
  ['FR', 'DE', 'US', 'CZ'][h % 4 + 1], ['buy-button', 'link', 'banner'][h % 3 + 1],
  ['shoe-1', 'shoes', 'hat', 'gift-card', 'bag'][h % 5 + 1], CAST((h % 300) AS VARCHAR)
FROM (
  SELECT u, h, CASE WHEN g < 10 THEN 'exposure' WHEN g < 55 THEN 'view' WHEN g < 85 THEN 'click'
                    WHEN g < 95 THEN 'purchase' ELSE 'inconsistent_exposure' END AS goal
  FROM (SELECT i % {UNITS} AS u, CAST(hash(i) % 1000003 AS BIGINT) AS h, CAST(hash(i * 7 + 1) % 100 AS INTEGER) AS g
        FROM range($n) t(i))
)"""

# The floor: ep-stats' integration SQL, per unit then per variant, every goal, no filters.
FLOOR = """
SELECT exp_id, exp_variant_id, unit_type, goal, sum(c) AS count, sum(c * c) AS sum_sqr_count,
  sum(v) AS sum_value, sum(v * v) AS sum_sqr_value, sum(CASE WHEN c > 0 THEN 1 ELSE 0 END) AS count_unique
FROM (
  SELECT exp_id, exp_variant_id, unit_type, goal, unit_id, sum(count) AS c, sum(value) AS v
  FROM events GROUP BY exp_id, exp_variant_id, unit_type, goal, unit_id
) GROUP BY exp_id, exp_variant_id, unit_type, goal"""


def _best_of(fn: Callable[[], object], repeat: int = 2) -> float:
    """The fastest of `repeat` timed calls, seconds."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def run() -> list[str]:
    """Time the goals of two demo experiments (re-targeted at the generated events) against the floor."""
    n = int(os.environ.get("BENCH_EVENTS", 20_000_000))
    experiments = load_experiments(definitions_dir() / "experiments")
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "goals.duckdb"
        with open_warehouse(f"duckdb:///{path}") as wh:
            for dim in ("country", "element", "product", "price"):
                wh.execute(f"ALTER TABLE events ADD COLUMN dim_{dim} VARCHAR")
            t_gen = _best_of(lambda: wh.execute(GENERATE, {"n": n}), repeat=1)
        con = duckdb.connect(str(path), read_only=True)
        t_floor = _best_of(lambda: con.execute(FLOOR).fetchall())
        con.close()
        lines.append(
            f"goals: {n:,} events of {UNITS:,} units generated in {t_gen:.1f}s; floor two-level GROUP BY {t_floor:.2f}s"
        )
        with open_warehouse(f"duckdb:///{path}") as wh:
            for exp_id in ("recommendations-three-way", "product-page-layout"):
                experiment = experiments[exp_id].model_copy(
                    update={
                        "id": "bench",
                        "date_from": date(2026, 10, 12),
                        "date_to": date(2026, 11, 8),
                        "variants": ["a", "b", "c"],
                        "control_variant": "a",
                    }
                )
                t = _best_of(lambda e=experiment: compute_goals(wh, e, date(2026, 11, 8)))
                lines.append(
                    f"goals of {exp_id} (metrics, checks, filters, cross products): {t:.2f}s; "
                    f"ratio {t / t_floor:.2f}x the floor (target <= {TARGET_RATIO:.0f}x)"
                )
    return lines


if __name__ == "__main__":
    print("\n".join(run()))
