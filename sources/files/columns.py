"""Declared column types (`source.columns`) as Arrow types, and casting batches to them."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc

from core.arrow_types import ARROW_TYPES, UTC_TIMESTAMP
from core.errors import BadDataError
from core.spec import ArrowTypeName

from .rejects import RejectedRow, Rejects, row_text

_ZONE_OFFSET = r"\d:\d\d(?::\d\d(?:[.,]\d+)?)?(?:[Zz]|[+-]\d\d(?::?\d\d)?)$"
"""A zone offset after a time of day (a date alone ends in `-DD`, which is no offset)."""


def to_utc_timestamps(array: pa.Array) -> pa.Array:
    """Strings or timestamps -> timestamp[us, UTC]; strings without a zone offset are UTC."""
    if pa.types.is_timestamp(array.type):
        if array.type.tz is None:  # naive values are taken as UTC
            array = array.cast(pa.timestamp(array.type.unit, tz="UTC"))
        return array.cast(UTC_TIMESTAMP)
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        return array.cast(UTC_TIMESTAMP)
    # UTC exports ("...Z") are the common case, and a suffix test is ~8x cheaper than the
    # regex (it counts on small files).
    if pc.all(pc.ends_with(array, "Z")).as_py():
        return array.cast(UTC_TIMESTAMP)
    # Values are alike within a file: the first one's kind is the one cast tried, and only if
    # a value differs (the cast fails, at the cost of a parse) does the regex look at every
    # value (~0.5 s per million values, twice the cast's cost).
    first = pc.first(array).as_py()  # the first non-null value
    if first is not None:
        with contextlib.suppress(pa.ArrowInvalid):
            if re.search(_ZONE_OFFSET, first):
                return array.cast(UTC_TIMESTAMP)
            return array.cast(pa.timestamp("us")).cast(UTC_TIMESTAMP)
    zoned = pc.match_substring_regex(array, _ZONE_OFFSET)
    if not pc.any(zoned).as_py():  # no value carries an offset (or all are null)
        return array.cast(pa.timestamp("us")).cast(UTC_TIMESTAMP)
    if pc.all(zoned).as_py():  # every non-null value carries one
        return array.cast(UTC_TIMESTAMP)
    # Mixed: Arrow parses values with an offset only into a zoned type, the others only
    # into a naive one.
    with_offset = pc.if_else(zoned, array, None).cast(UTC_TIMESTAMP)
    naive = pc.if_else(zoned, None, array).cast(pa.timestamp("us")).cast(UTC_TIMESTAMP)
    return pc.if_else(zoned, with_offset, naive)


def cast_to(array: pa.Array, type_name: ArrowTypeName) -> pa.Array:
    if type_name == "timestamp":
        return to_utc_timestamps(array)
    return array.cast(ARROW_TYPES[type_name])


def cast_batch(
    batch: pa.RecordBatch,
    columns: Mapping[str, ArrowTypeName],
    *,
    uri: str,
    rows_before: int,
    rejects: Rejects | None = None,
) -> pa.RecordBatch:
    """Cast the declared columns present in `batch`; others pass through untouched.

    A value that does not convert raises BadDataError naming the column, value and data row,
    or, given `rejects`, moves its row there and the rest of the batch goes on.
    """
    if rejects is not None:
        batch = _without_unconvertible_rows(batch, columns, rejects, rows_before)
    arrays = list(batch.columns)
    changed = False
    for index, name in enumerate(batch.schema.names):
        type_name = columns.get(name)
        if type_name is None or arrays[index].type == ARROW_TYPES[type_name]:
            continue
        array = arrays[index]
        try:
            arrays[index] = cast_to(array, type_name)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as error:
            row = _first_failing_row(array, type_name)
            raise BadDataError(
                f"{uri}: column '{name}' (declared {type_name} under source.columns) has "
                f"value {array[row].as_py()!r} at data row {rows_before + row + 1}: {error}",
                details={"uri": uri, "column": name, "row": rows_before + row + 1},
            ) from error
        changed = True
    if not changed:
        return batch
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


REJECT_SCAN_CHUNK = 1024


def _without_unconvertible_rows(
    batch: pa.RecordBatch,
    columns: Mapping[str, ArrowTypeName],
    rejects: Rejects,
    rows_before: int,
) -> pa.RecordBatch:
    """Drop (into `rejects`) the rows holding a value that does not convert.

    Cast chunk by chunk and bisect only the chunks that fail, so clean data costs one cast.
    """
    bad: dict[int, tuple[str, str]] = {}
    for index, name in enumerate(batch.schema.names):
        type_name = columns.get(name)
        if type_name is None or batch.column(index).type == ARROW_TYPES[type_name]:
            continue
        array = batch.column(index)
        for start in range(0, len(array), REJECT_SCAN_CHUNK):
            chunk = array.slice(start, REJECT_SCAN_CHUNK)
            while True:
                try:
                    cast_to(chunk, type_name)
                    break
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                    row = _first_failing_row(chunk, type_name)
                    value = chunk[row].as_py()
                    reason = f"column '{name}': {value!r} is not {type_name}"
                    bad.setdefault(start + row, (reason, name))
                    mask = pa.array([i == row for i in range(len(chunk))])
                    chunk = pc.if_else(mask, pa.scalar(None, chunk.type), chunk)
    if not bad:
        return batch
    for row in sorted(bad):
        reason, column = bad[row]
        rejects.add(
            RejectedRow(
                row=rejects.data_row(rows_before + row + 1),
                reason=reason,
                raw=row_text(batch, row),
                column=column,
            )
        )
    keep = pa.array([i not in bad for i in range(batch.num_rows)])
    return batch.filter(keep)


def _first_failing_row(array: pa.Array, type_name: ArrowTypeName) -> int:
    """Bisect for the first value that does not convert (error path only: ~2n work)."""
    low, high = 0, len(array)
    while high - low > 1:
        middle = (low + high) // 2
        try:
            cast_to(array.slice(low, middle - low), type_name)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            high = middle
        else:
            low = middle
    return low
