"""Values between Python and PostgreSQL: Arrow columns staged by COPY, bound parameters, result columns
with the dtypes DuckDB's `.df()` gives (so that both engines return the same frames)."""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from aggassets.errors import AggassetsError

_INT_OIDS = {20: 64, 21: 16, 23: 32}
_FLOAT_OIDS = {700, 701, 1700}
_TIME_OIDS = {1082, 1114, 1184}
_BOOL_OID = 16
_TEXT_OIDS = {25, 1043, 1042, 19}


def pg_type(dtype: pa.DataType) -> str:
    """The column type a staged Arrow column gets in PostgreSQL."""
    if pa.types.is_integer(dtype):
        return "BIGINT"
    if pa.types.is_floating(dtype):
        return "DOUBLE PRECISION"
    if pa.types.is_boolean(dtype):
        return "BOOLEAN"
    if pa.types.is_date(dtype):
        return "DATE"
    if pa.types.is_timestamp(dtype):
        return "TIMESTAMP"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_null(dtype):
        return "TEXT"
    raise AggassetsError(f"cannot stage a column of Arrow type {dtype} in PostgreSQL")


def copyable(table: pa.Table) -> pa.Table:
    """Dictionary columns decoded, zone-aware timestamps as naive UTC, NUL characters replaced."""
    columns = []
    for column in table.columns:
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if pa.types.is_timestamp(column.type) and column.type.tz is not None:
            column = column.cast(pa.timestamp(column.type.unit, "UTC")).cast(pa.timestamp(column.type.unit))
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            column = pc.replace_substring(column, "\x00", "\ufffd")  # PostgreSQL text cannot hold NUL
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def plain_value(value: Any) -> Any:
    """A value psycopg2 can adapt (numpy and pandas scalars converted)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value


def plain_params(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The parameters as plain Python values; None when there are none."""
    return {k: plain_value(v) for k, v in params.items()} if params else None


def result_column(values: Sequence[Any], oid: int) -> pd.Series:
    """One result column with the dtype DuckDB's `.df()` gives the same SQL type."""
    has_null = any(v is None for v in values)
    if oid in _INT_OIDS:
        bits = _INT_OIDS[oid]
        return pd.Series(values, dtype=f"Int{bits}" if has_null else f"int{bits}")
    if oid in _FLOAT_OIDS:
        return pd.Series([np.nan if v is None else float(v) for v in values], dtype="float64")
    if oid in _TIME_OIDS:
        return pd.Series(pd.to_datetime(pd.Series(values, dtype=object), utc=oid == 1184)).pipe(naive_us)
    if oid == _BOOL_OID:
        return pd.Series(values, dtype="boolean" if has_null else "bool")
    if oid in _TEXT_OIDS:  # DuckDB gives object for a column without any string
        return pd.Series(values, dtype="str" if len(values) > values.count(None) else object)
    return pd.Series(values, dtype=object)


def naive_us(series: pd.Series) -> pd.Series:
    """Timestamps as naive UTC, microsecond unit."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    return series.astype("datetime64[us]")
