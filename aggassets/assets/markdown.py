"""The Markdown tables of the assets' metadata, as the Dagster UI shows them."""

import pandas as pd
from dagster import MetadataValue

# Markdown's inline punctuation (emphasis, code, links, HTML, GFM strikethrough, entities) shows as written.
_CELL_ESCAPES = str.maketrans({"\n": "\\\\n", "\r": "\\\\r"} | {c: "\\" + c for c in "\\|*_`[]<>~&!#"})


def _markdown_cell(value: object) -> object:
    """A text escaped for a Markdown table cell: a backslash, '|' and Markdown's inline punctuation escaped
    (a group value `*x*` or `<b>` shows as written), a line end shown as \\n."""
    return value.translate(_CELL_ESCAPES) if isinstance(value, str) else value


def markdown(frame: pd.DataFrame, empty: str = "_no rows_") -> MetadataValue:
    """A small Markdown table for the UI: missing values are blank cells, dates have no time of day, and
    columns blank in every row are left out (group2 and group3 of ungrouped measures, say)."""
    if frame.empty:
        return MetadataValue.md(empty)
    dates = frame.select_dtypes(include=["datetime", "datetimetz"]).columns
    frame = frame.assign(**{c: frame[c].dt.strftime("%Y-%m-%d") for c in dates})
    frame = frame.map(_markdown_cell)
    frame = frame.astype(object).where(frame.notna() & (frame != ""), None)  # '' is an absent createdBy
    return MetadataValue.md(frame.dropna(axis="columns", how="all").to_markdown(index=False, missingval=""))
