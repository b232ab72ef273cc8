"""Per-batch helpers for stateful tables: hive-style partition columns from an object's path,
and CDC delete marks (`_ferry_deleted_at`) with the tombstones they leave. Pure: no I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc

from core.arrow_types import UTC_TIMESTAMP, scalar
from core.errors import BadDataError
from core.lineage import DELETED_AT_COLUMN, LINEAGE_COLUMNS, SOURCE_GENERATION_COLUMN
from core.spec import ArrowTypeName, CdcSpec

_SEGMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def partition_values(uri: str, columns: Mapping[str, ArrowTypeName]) -> dict[str, pa.Scalar]:
    """The declared `name=value` segments of `uri`'s folders, as typed scalars.

    A declared column missing from the path, or a value that is not of its type, fails the
    file (terminal): loading it without the column would silently mix partitions."""
    from sources.files.columns import cast_to

    if not columns:
        return {}
    folders = uri.split("://", 1)[-1].split("/")[:-1]
    found: dict[str, str] = {}
    for folder in folders:
        match = _SEGMENT.match(folder)
        if not match:
            continue
        name, value = match.group(1), unquote(match.group(2))
        if name in columns and name in found:
            # which one is the row's value would be a guess: refuse it
            raise BadDataError(
                f"{uri}: the path has two '{name}=' folders ({name}={found[name]!r} and "
                f"{name}={value!r}); source.partition_columns needs exactly one",
                details={"column": name, "uri": uri},
            )
        found[name] = value
    values: dict[str, pa.Scalar] = {}
    for name, type_name in columns.items():
        if name not in found:
            raise BadDataError(
                f"{uri}: the path has no '{name}=' folder (source.partition_columns)",
                details={"column": name, "uri": uri},
            )
        text = found[name]
        try:
            values[name] = cast_to(pa.array([text], pa.string()), type_name)[0]
        except (pa.ArrowInvalid, BadDataError) as error:
            raise BadDataError(
                f"{uri}: partition value {name}={text!r} is not a {type_name} ({error})",
                details={"column": name, "uri": uri},
            ) from None
    return values


def with_partition_columns(
    batch: pa.RecordBatch | pa.Table, values: Mapping[str, pa.Scalar]
) -> pa.Table:
    """`batch` with one constant column per partition value (the path wins over the file)."""
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    for name, value in values.items():
        column = pa.repeat(value, table.num_rows)
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, column)
        else:
            table = table.append_column(name, column)
    return table


class ChangeMarker:
    """Marks CDC deletes: `_ferry_deleted_at` is the load time on a delete, null otherwise."""

    def __init__(self, cdc: CdcSpec, primary_key: Sequence[str], sequence: str | None) -> None:
        self.cdc = cdc
        self.keys = list(primary_key)
        self.sequence = sequence or SOURCE_GENERATION_COLUMN
        self.delete_values = pa.array(cdc.delete_values, pa.string())
        self.now = scalar(datetime.now(UTC))

    def mark(self, table: pa.Table, where: str) -> pa.Table:
        column = self.cdc.operation_column
        if column not in table.column_names:
            raise BadDataError(
                f"{where}: the operation column '{column}' (destination.cdc) is missing",
                details={"column": column, "uri": where},
            )
        operation = table.column(column).cast(pa.string())
        deleting = pc.fill_null(pc.is_in(operation, value_set=self.delete_values), False)
        deleted_at = pc.if_else(deleting, self.now, scalar(None, UTC_TIMESTAMP))
        if DELETED_AT_COLUMN in table.column_names:
            table = table.drop_columns([DELETED_AT_COLUMN])
        return table.append_column(pa.field(DELETED_AT_COLUMN, UTC_TIMESTAMP), deleted_at)

    def tombstones(self, table: pa.Table) -> pa.Table:
        """The delete rows of a marked, lineage-carrying batch: key, sequence, when, where."""
        deletes = table.filter(pc.is_valid(table.column(DELETED_AT_COLUMN)))
        wanted = [*self.keys, self.sequence, DELETED_AT_COLUMN, *LINEAGE_COLUMNS]
        columns = list(dict.fromkeys(c for c in wanted if c in deletes.column_names))
        return deletes.select(columns)
