"""Demo events for the three demo experiments (definitions/experiments/*.json), with known true effects.

Every unit (a user) gets one `exposure` event on its first day (front-loaded over date_from..date_to) and its
goals on days between that day and date_to. Sizes below are for scale=1 (about 500k events in all).

- checkout-button-conversion (CSV), 40,000 users split 50/50: a user buys with probability 0.100 (control)
  or 0.110 (green-button, +10% relative: TRUE EFFECT, z about 3.3, detectable); a buyer makes 1 + Poisson(0.25)
  purchases of value lognormal(3.6, 0.6) (median 37); the value distribution is the same in both variants.
- recommendations-three-way (Parquet, typed columns), 80,000 users split 50/25/25 as its traffic_weights:
  conversion 0.40 in every variant, purchase values lognormal(3.6, 0.4) x1.05 in b (revenue per user +5%:
  TRUE EFFECT, z about 3.8), c identical to a (no effect); views Poisson(2) per user, each clicked with
  probability 0.12 in every variant (clicks per view: no effect); 0.3% of users get an `inconsistent_exposure`
  (below the check's 1%).
- product-page-layout (NDJSON), 30,000 users split 50/50, dimension `country` on every event (FR 35%, DE 25%,
  US 20%, GB 10%, CZ 10%); views Poisson(4) with dimensions product and price (text such as "9.99" and "120",
  so `price>=100` must compare numbers, not text); clicks with element (buy-button, image, wishlist) and
  product; purchases with product, value = the product's price. A view leads to a buy-button click with
  probability 0.10, except on shoe products (`product=^shoe`) for new-layout: x1.15 in FR and DE (TRUE EFFECT
  within the exposure filter) and x0.90 elsewhere (so the filter matters). Revenue and expensive views: no effect.

A few malformed rows are appended (MALFORMED_REASONS lists their reasons): they are rejected at intake.
"""

from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from aggassets import settings
from aggassets.experiments.definition import ExperimentDefinition, load_experiment
from aggassets.warehouse import demo_sql

MALFORMED_REASONS = {
    "missing_unit_id": 2,
    "bad_count": 2,
    "bad_date": 1,
    "bad_goal": 1,
    "bad_value": 1,
    "bad_unit_type": 1,
    "invalid_json": 1,
    "missing_exp_variant_id": 1,
}
COUNTRIES = (["FR", "DE", "US", "GB", "CZ"], [0.35, 0.25, 0.20, 0.10, 0.10])
PRODUCTS = {  # product: (price text, share of views)
    "shoe-running": ("120", 0.2),
    "shoe-trail": ("89.90", 0.15),
    "shoelace": ("4.5", 0.05),
    "shirt": ("35", 0.2),
    "watch": ("250", 0.1),
    "sock": ("9.99", 0.15),
    "gift-card": ("50", 0.15),
}


class _Units:
    """The units of one experiment: variant index, first (exposure) day, and an id prefix."""

    def __init__(self, rng: np.random.Generator, exp: ExperimentDefinition, n: int, prefix: str) -> None:
        self.exp, self.rng, self.n, self.prefix = exp, rng, n, prefix
        self.variants = list(exp.variants or [exp.control_variant])
        weights = np.array([(exp.traffic_weights or {}).get(v, 1.0) for v in self.variants])
        self.variant = rng.choice(len(self.variants), n, p=weights / weights.sum())
        assert exp.date_from is not None and exp.date_to is not None
        self.first, self.last = np.datetime64(exp.date_from, "D"), np.datetime64(exp.date_to, "D")
        days = int((self.last - self.first) / np.timedelta64(1, "D")) + 1
        self.start = self.first + (days * rng.random(n) ** 1.5).astype(int)

    def events(
        self,
        units: np.ndarray,
        goal: str,
        value: np.ndarray | None = None,
        exposure: bool = False,
        dims: dict[str, np.ndarray] | None = None,
    ) -> pa.Table:
        """One event per entry of `units` (indices), dated on the unit's first day or a later day."""
        start = self.start[units]
        span = ((self.last - start) / np.timedelta64(1, "D")).astype(int) + 1
        day = start if exposure else start + (self.rng.random(len(units)) * span).astype(int)
        ids = pc.binary_join_element_wise(self.prefix, pa.array(units).cast(pa.string()), "")
        columns = {
            "date": pa.array(day, pa.date32()),
            "exp_id": pa.repeat(self.exp.id, len(units)),
            "exp_variant_id": pa.array(np.array(self.variants, dtype=object)[self.variant[units]], pa.string()),
            "unit_type": pa.repeat(self.exp.unit_type, len(units)),
            "unit_id": ids,
            "goal": pa.repeat(goal, len(units)),
            "count": pa.array(np.ones(len(units), np.int64)),
            "value": pa.array(np.zeros(len(units)) if value is None else np.round(value, 2)),
        }
        return pa.table(columns | {k: pa.array(v, pa.string()) for k, v in (dims or {}).items()})

    def repeat(self, per_unit: np.ndarray) -> np.ndarray:
        """Unit indices repeated `per_unit` times each."""
        return np.repeat(np.arange(self.n), per_unit)


def _purchases(units: _Units, p: np.ndarray, sigma: float, scale: np.ndarray) -> pa.Table:
    """Buyers with probability p; 1 + Poisson(0.25) purchases each, lognormal(3.6, sigma) values times `scale`."""
    rng = units.rng
    buyers = rng.random(units.n) < p
    idx = units.repeat(np.where(buyers, 1 + rng.poisson(0.25, units.n), 0))
    return units.events(idx, "purchase", rng.lognormal(3.6, sigma, len(idx)) * scale[units.variant[idx]])


def checkout(exp: ExperimentDefinition, rng: np.random.Generator, n: int) -> pa.Table:
    """checkout-button-conversion: green-button buys 10% more often."""
    units = _Units(rng, exp, n, "cb-")
    p = np.where(np.array(units.variants)[units.variant] == "green-button", 0.110, 0.100)
    return pa.concat_tables(
        [units.events(np.arange(n), "exposure", exposure=True), _purchases(units, p, 0.6, np.ones(len(units.variants)))]
    )


def recommendations(exp: ExperimentDefinition, rng: np.random.Generator, n: int) -> pa.Table:
    """recommendations-three-way: b's purchases are worth 5% more; c is a copy of a."""
    units = _Units(rng, exp, n, "rt-")
    views = units.repeat(rng.poisson(2.0, n))
    clicks = views[rng.random(len(views)) < 0.12]
    scale = np.array([1.05 if v == "b" else 1.0 for v in units.variants])
    return pa.concat_tables(
        [
            units.events(np.arange(n), "exposure", exposure=True),
            units.events(np.flatnonzero(rng.random(n) < 0.003), "inconsistent_exposure", exposure=True),
            units.events(views, "view"),
            units.events(clicks, "click"),
            _purchases(units, np.full(n, 0.40), 0.4, scale),
        ]
    )


def product_page(exp: ExperimentDefinition, rng: np.random.Generator, n: int) -> pa.Table:
    """product-page-layout: more buy-button clicks on shoes with new-layout in FR/DE, fewer elsewhere."""
    units = _Units(rng, exp, n, "pp-")
    country = rng.choice(COUNTRIES[0], n, p=COUNTRIES[1])
    names = np.array(list(PRODUCTS), dtype=object)
    prices = np.array([p for p, _ in PRODUCTS.values()], dtype=object)
    views = units.repeat(rng.poisson(4.0, n))
    product = rng.choice(len(names), len(views), p=[s for _, s in PRODUCTS.values()])
    new = np.array(units.variants)[units.variant[views]] == "new-layout"
    shoe = np.char.startswith(names[product].astype(str), "shoe")
    home = np.isin(country[views], ["FR", "DE"])
    p_buy = 0.10 * np.where(new & shoe, np.where(home, 1.15, 0.90), 1.0)
    u = rng.random(len(views))
    clicked = u < p_buy + 0.08
    element = np.where(u < p_buy, "buy-button", np.where(u < p_buy + 0.05, "image", "wishlist"))[clicked]
    buyers = units.repeat((rng.random(n) < 0.08).astype(int))
    bought = rng.choice(len(names), len(buyers), p=[s for _, s in PRODUCTS.values()])
    return pa.concat_tables(
        [
            units.events(np.arange(n), "exposure", exposure=True, dims={"country": country}),
            units.events(
                views, "view", dims={"country": country[views], "product": names[product], "price": prices[product]}
            ),
            units.events(
                views[clicked],
                "click",
                dims={"country": country[views][clicked], "element": element, "product": names[product][clicked]},
            ),
            units.events(
                buyers,
                "purchase",
                prices[bought].astype(float),
                dims={"country": country[buyers], "product": names[bought]},
            ),
        ],
        promote_options="default",
    )


def _malformed_csv(exp_id: str) -> list[str]:
    """CSV rows rejected at intake: bad_date, missing_unit_id, bad_count, bad_goal."""
    return [
        f"2026-10-32,{exp_id},control,user,cb-x1,exposure,1,0",
        f"2026-10-06,{exp_id},control,user,,exposure,1,0",
        f"2026-10-06,{exp_id},control,user,cb-x3,purchase,-1,10",
        f"2026-10-06,{exp_id},control,user,cb-x4,add-to-cart,1,0",
    ]


def _malformed_parquet(table: pa.Table) -> pa.Table:
    """Typed rows rejected at intake: bad_value (NaN), missing_unit_id, bad_unit_type."""
    rows = table.slice(0, 3).to_pylist()
    rows[0]["value"], rows[1]["unit_id"], rows[2]["unit_type"] = float("nan"), None, "user id"
    return pa.Table.from_pylist(rows, schema=table.schema)


def _malformed_json(exp_id: str) -> list[str]:
    """NDJSON lines rejected at intake: invalid_json, bad_count, missing_exp_variant_id."""
    base = (
        f'"date": "2026-11-03", "exp_id": "{exp_id}", "unit_type": "user", "unit_id": "pp-x", '
        '"goal": "view", "country": "FR"'
    )
    return [
        '{"date": "2026-11-03", "exp_id": ',
        f'{{{base}, "exp_variant_id": "old-layout", "count": 1.5}}',
        f'{{{base}, "exp_variant_id": ""}}',
    ]


def generate_events(folder: Path, seed: int = 7, scale: float = 1.0, definitions_dir: Path | None = None) -> list[Path]:
    """Write the demo events: one CSV, one Parquet and one NDJSON file (see the module docstring)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    experiments = Path(definitions_dir or settings.definitions_dir()) / "experiments"
    exp = {
        name: load_experiment(experiments / f"{name}.json")
        for name in ("checkout-button-conversion", "recommendations-three-way", "product-page-layout")
    }
    rng = np.random.default_rng(seed)
    size = {
        name: max(20, round(n * scale))
        for name, n in (
            ("checkout-button-conversion", 40_000),
            ("recommendations-three-way", 80_000),
            ("product-page-layout", 30_000),
        )
    }
    paths = [
        folder / "checkout-button-conversion.csv",
        folder / "recommendations-three-way.parquet",
        folder / "product-page-layout.ndjson",
    ]
    checkout_events = checkout(exp["checkout-button-conversion"], rng, size["checkout-button-conversion"])
    pa_csv.write_csv(checkout_events, paths[0], pa_csv.WriteOptions(quoting_style="needed"))
    _append(paths[0], _malformed_csv("checkout-button-conversion"))
    reco = recommendations(exp["recommendations-three-way"], rng, size["recommendations-three-way"])
    pq.write_table(pa.concat_tables([reco, _malformed_parquet(reco)]), paths[1])
    page = product_page(exp["product-page-layout"], rng, size["product-page-layout"])
    with duckdb.connect() as con:
        con.register("events", page)
        con.execute(demo_sql.WRITE_EVENTS, {"path": str(paths[2])})
    _append(paths[2], _malformed_json("product-page-layout"))
    return paths


def _append(path: Path, lines: Sequence[str]) -> None:
    """Append raw text lines to a file."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("".join(line + "\n" for line in lines))
