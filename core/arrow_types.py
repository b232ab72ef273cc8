"""The one table from a declared type name (`source.columns`, `cast` steps) to its Arrow type."""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

from core.spec import ArrowTypeName

UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")

ARROW_TYPES: dict[ArrowTypeName, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "int32": pa.int32(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": UTC_TIMESTAMP,
    "date": pa.date32(),
    "decimal": pa.decimal128(38, 9),  # BigQuery NUMERIC
}


def arrow_schema(columns: Mapping[str, ArrowTypeName]) -> pa.Schema:
    return pa.schema([(name, ARROW_TYPES[type_name]) for name, type_name in columns.items()])
