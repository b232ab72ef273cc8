"""The one table from a declared type name (`source.columns`, `cast` steps) to its Arrow type."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

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


ScalarValue = bool | int | float | str | datetime | None


def scalar(value: ScalarValue, type_: pa.DataType | None = None) -> pa.Scalar:
    """`pa.scalar(value, type_)`, built from the value's bytes.

    pyarrow's own conversion of Python values (`pa.scalar`, `pa.array`, `from_pylist`)
    imports pandas on first use to look for pandas types: ~0.3 s of a job's start and of a
    cold start, on paths that never touch pandas (compiled steps, lineage, ledger rows).
    """
    array: pa.Array
    if value is None:
        return pa.nulls(1, type_ or pa.null())[0]
    if isinstance(value, bool):
        array = pa.Array.from_buffers(pa.bool_(), 1, [None, pa.py_buffer(bytes([value]))])
    elif isinstance(value, int):
        array = pa.Array.from_buffers(pa.int64(), 1, [None, pa.py_buffer(_INT64.pack(value))])
    elif isinstance(value, float):
        array = pa.Array.from_buffers(pa.float64(), 1, [None, pa.py_buffer(_DOUBLE.pack(value))])
    elif isinstance(value, str):
        data = value.encode()
        offsets = pa.py_buffer(_OFFSETS.pack(0, len(data)))
        array = pa.Array.from_buffers(pa.string(), 1, [None, offsets, pa.py_buffer(data)])
    else:  # datetime: microseconds since the epoch, naive values taken as UTC
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        micros = (aware - _EPOCH) // timedelta(microseconds=1)
        buffer = pa.py_buffer(_INT64.pack(micros))
        array = pa.Array.from_buffers(UTC_TIMESTAMP, 1, [None, buffer])
    if type_ is not None and array.type != type_:
        array = array.cast(type_)
    return array[0]


_INT64 = struct.Struct("<q")
_DOUBLE = struct.Struct("<d")
_OFFSETS = struct.Struct("<ii")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
