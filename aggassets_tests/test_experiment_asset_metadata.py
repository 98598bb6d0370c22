"""Experiment asset metadata during a sequential experiment: level, window, exposures, the Markdown table."""

import html
import io
import json
import re
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import materialize
from markdown_it import MarkdownIt
from scipy import stats

from aggassets.assets.experiments import build_experiment_assets
from aggassets.cli import main
from aggassets.resources import CatalogResource, WarehouseResource
from aggassets.warehouse import open_warehouse
from aggassets.warehouse.experiments import evaluation_history
from aggassets_tests.events import insert_events
from aggassets_tests.test_experiment_assets import CONVERSION, _run, conversion_events

AS_OF = date(2026, 3, 5)  # day 4 of the 14 days 2026-03-02 .. 2026-03-15


def _table(markdown: str) -> pd.DataFrame:
    """The metadata's Markdown table as text cells."""
    lines = [line.strip().strip("|") for line in markdown.strip().splitlines()]
    header = [c.strip() for c in lines[0].split("|")]
    return pd.DataFrame([[c.strip() for c in line.split("|")] for line in lines[2:]], columns=header)


def _conversion_experiment(tmp_path: Path, events: pd.DataFrame) -> tuple[Path, str]:
    """(catalog folder, warehouse URL): the conversion experiment alone in a catalog, its events stored."""
    catalog_dir = tmp_path / "definitions"
    (catalog_dir / "experiments").mkdir(parents=True)
    (catalog_dir / "experiments" / "conv.json").write_text(json.dumps(CONVERSION))
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    with open_warehouse(url) as wh:
        insert_events(wh, events)
    return catalog_dir, url


def test_metadata_of_a_sequential_evaluation(tmp_path: Path) -> None:
    """docs: O'Brien-Fleming's level on day 4 of 14 (scipy), events up to as_of, percentages of diff, a
    treatment significant when p < 1 - level, the control never marked."""
    events = conversion_events({"a": 3000, "b": 3000}, {"a": 0.10, "b": 0.13}, seed=6)
    catalog_dir, url = _conversion_experiment(tmp_path, events)
    result = _run(url, catalog_dir, AS_OF)
    assert result.success
    level = min(round(1 - 2 * stats.norm.sf(stats.norm.ppf(0.975) / np.sqrt(4 / 14)), 4), 0.9999)
    goals_meta = result.asset_materializations_for_node("experiment_goals")[0].metadata
    assert goals_meta["data_window"].value == "2026-03-02 .. 2026-03-05"
    exposed = events[(events.goal == "exposure") & (events.date <= AS_OF)].groupby("exp_variant_id").size()
    assert goals_meta["exposures"].value == {v: int(n) for v, n in exposed.items()}
    meta = result.asset_materializations_for_node("experiment_evaluations")[0].metadata
    assert meta["confidence_level"].value == level
    with open_warehouse(url) as wh:
        stored = evaluation_history(wh, "experiment_metrics", "conv", AS_OF).set_index(
            ["metric_name", "exp_variant_id"]
        )
    assert set(stored.confidence_level) == {level}
    table = _table(meta["metrics"].value)
    p_values = []
    for r in table.to_dict("records"):
        variant = r["variant"].removesuffix(" (control)")
        row = stored.loc[(r["metric"], variant)]
        assert r["diff %"] == f"{100 * row['diff']:.3g}"
        if variant == "a":
            assert r["variant"] == "a (control)" and r["significant"] == ""
        else:
            p_values.append(row["p_value"])
            assert r["significant"] == ("yes" if row["p_value"] < 1 - level else "no")
    assert any(1 - level <= p < 0.05 for p in p_values)  # a row where the sequential level decides
    after = _run(url, catalog_dir, date(2026, 3, 20)).asset_materializations_for_node("experiment_goals")[0]
    assert after.metadata["data_window"].value == "2026-03-02 .. 2026-03-15"  # min(date_to, as_of)


def test_cli_run_prints_only_the_evaluation_of_its_as_of(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """README: `experiments run EXP_ID --as-of D` prints that evaluation's metrics; the history keeps earlier
    dates, which are not printed again (2 metrics x 2 variants, level of day 4 then the final 0.95)."""
    catalog_dir, url = _conversion_experiment(tmp_path, conversion_events({"a": 400, "b": 400}, {"a": 0.1, "b": 0.2}))
    level = min(round(1 - 2 * stats.norm.sf(stats.norm.ppf(0.975) / np.sqrt(4 / 14)), 4), 0.9999)
    for day, expected in (("2026-03-05", level), ("2026-03-20", 0.95)):
        argv = ["--warehouse", url, "--definitions", str(catalog_dir), "experiments", "run", "conv", "--as-of", day]
        assert main(argv) == 0
        frame = pd.read_csv(io.StringIO(capsys.readouterr().out))
        assert len(frame) == 4 and set(frame.confidence_level) == {expected}


def test_an_empty_as_of_evaluates_today_in_utc(tmp_path: Path) -> None:
    """README: the evaluation date is experiment_goals' config (default: today, UTC)."""
    catalog_dir, url = _conversion_experiment(tmp_path, conversion_events({"a": 50, "b": 50}, {"a": 0.1, "b": 0.2}))
    before = datetime.now(UTC).date()
    resources = {"warehouse": WarehouseResource(url=url), "catalog": CatalogResource(definitions_dir=str(catalog_dir))}
    config = {"ops": {"experiment_goals": {"config": {"as_of": ""}}}}
    result = materialize(
        build_experiment_assets(["conv"]), partition_key="conv", run_config=config, resources=resources
    )
    after = datetime.now(UTC).date()
    day = result.asset_materializations_for_node("experiment_goals")[0].metadata["evaluation_date"].value
    assert day in {before.isoformat(), after.isoformat()}


def test_metadata_tables_show_names_and_variants_as_written(tmp_path: Path) -> None:
    """A metric name or variant id holding '|' or Markdown punctuation neither splits a cell nor turns into
    markup: rendered by a CommonMark renderer with GFM tables (markdown-it-py), cells read as written."""
    names, variants = ["Conversion | *all* <b>", "Clicks_per_view [x](y)"], ["a|1", "*b*"]
    metrics = [{**m, "name": n} for m, n in zip(CONVERSION["metrics"], names, strict=True)]  # type: ignore[call-overload]
    experiment = {**CONVERSION, "control_variant": variants[0], "variants": variants, "metrics": metrics}
    events = conversion_events(dict.fromkeys(variants, 300), dict.fromkeys(variants, 0.2), seed=2)
    catalog_dir, url = _conversion_experiment(tmp_path, events)
    (catalog_dir / "experiments" / "conv.json").write_text(json.dumps(experiment))
    result = _run(url, catalog_dir, date(2026, 3, 20))
    assert result.success
    renderer = MarkdownIt("commonmark").enable(["table", "strikethrough"])

    def cells(table: str, column: str) -> list[str]:
        """The column's cells as rendered HTML."""
        rendered = renderer.render(table)
        header = [html.unescape(h) for h in re.findall(r"<th[^>]*>(.*?)</th>", rendered)]
        rows = re.findall(r"<tr>\n(.*?)</tr>", rendered.split("</thead>")[1], flags=re.S)
        return [re.findall(r"<td[^>]*>(.*?)</td>", r)[header.index(column)] for r in rows]

    table = result.asset_materializations_for_node("experiment_evaluations")[0].metadata["metrics"].value
    shown = cells(table, "metric") + cells(table, "variant")
    preview = result.asset_materializations_for_node("experiment_goals")[0].metadata["preview"].value
    shown_variants = cells(preview, "exp_variant_id")
    assert {html.unescape(c) for c in shown} == {*names, f"{variants[0]} (control)", variants[1]}
    assert {html.unescape(c) for c in shown_variants} == set(variants)
    assert not any("<" in c for c in shown + shown_variants)  # no tag: a '<' of a text is the entity &lt;
