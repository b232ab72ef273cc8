"""Per-batch transform, lineage columns and a stable run schema. Pure."""

from __future__ import annotations

import pyarrow as pa

from app.run.transform import Transform
from core.arrow_types import scalar
from core.errors import BadDataError, SchemaContractError
from core.lineage import LINEAGE_COLUMNS, SOURCE_GENERATION_COLUMN, SOURCE_URI_COLUMN


def apply_transform(batch: pa.RecordBatch | pa.Table, transform: Transform) -> pa.Table:
    """Run the steps on one batch: on Arrow where they compiled to Arrow, else in pandas."""
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    if transform.is_identity:
        return table
    return _microsecond_timestamps(transform.on_table(table))


def _microsecond_timestamps(table: pa.Table) -> pa.Table:
    """pandas parses to nanoseconds; BigQuery and DuckDB (with a time zone) keep microseconds."""
    for index, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type) and field.type.unit == "ns":
            target = pa.timestamp("us", tz=field.type.tz)
            table = table.set_column(
                index, field.with_type(target), table.column(index).cast(target, safe=False)
            )
    return table


def add_lineage(table: pa.Table, uri: str, generation: int) -> pa.Table:
    """Every row records the object and generation it came from (the idempotency key)."""
    rows = table.num_rows
    table = _drop_if_present(table, LINEAGE_COLUMNS)
    table = table.append_column(
        pa.field(SOURCE_URI_COLUMN, pa.string(), nullable=False),
        pa.repeat(scalar(uri), rows),
    )
    return table.append_column(
        pa.field(SOURCE_GENERATION_COLUMN, pa.int64(), nullable=False),
        pa.repeat(scalar(generation), rows),
    )


def _drop_if_present(table: pa.Table, columns: tuple[str, ...]) -> pa.Table:
    present = [c for c in columns if c in table.column_names]
    return table.drop_columns(present) if present else table


RESERVED_PREFIXES = ("_dlt_", "_ferry_")
"""Columns of these names are dlt's (`_dlt_load_id`, `_dlt_id`) or ferry's own (lineage, CDC
marks): a file's column of such a name would be taken for them (or break the load)."""


def refuse_reserved(table: pa.Table, where: str) -> None:
    """A column whose destination name would be dlt's or ferry's own is bad data (terminal),
    on a table's first load as on every later one."""
    from dlt.common.normalizers.naming.snake_case import NamingConvention

    naming = NamingConvention()
    for name in table.column_names:
        if naming.normalize_identifier(name).startswith(RESERVED_PREFIXES):
            raise BadDataError(
                f"{where}: column '{name}' has a name reserved for dlt's and ferry's own "
                "columns (_dlt_*, _ferry_*); rename it with a transform step "
                "(rename: {...}) or drop it",
                details={"column": name, "uri": where},
            )


class RunSchema:
    """The column types of the first batch a run yields; later batches are cast to it.

    dlt rejects Arrow tables whose column types disagree within one load (int in one file,
    float in the next), so every batch of a run is brought to one schema before it is yielded.
    """

    def __init__(
        self, key_columns: tuple[str, ...] = (), destination_types: dict[str, str] | None = None
    ) -> None:
        self.types: dict[str, pa.DataType] = {}
        self.required = tuple(dict.fromkeys(key_columns))
        """Declared keys (primary_key, merge_key, sequence): every batch must have them."""
        self.key_columns = frozenset(key_columns) | set(LINEAGE_COLUMNS)
        self.destination_types = destination_types or {}
        """dlt data types of the columns the destination table already has."""

    def conform(self, table: pa.Table, where: str) -> pa.Table:
        """Cast to the run's column types; key columns must be present and never null."""
        columns = []
        for name, column in zip(table.column_names, table.columns, strict=True):
            known = self.types.get(name)
            if known is None:
                if not pa.types.is_null(column.type):
                    self._check_destination_type(name, column.type, where)
                    self.types[name] = column.type
                columns.append(column)
            elif column.type == known:
                columns.append(column)
            else:
                try:
                    columns.append(column.cast(known))
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
                    raise BadDataError(
                        f"{where}: column '{name}' is {column.type} here but {known} in earlier "
                        f"data of this run; declare its type under source.columns or cast it "
                        f"in a transform step ({error})",
                        details={"column": name, "uri": where},
                    ) from None
        fields = [
            pa.field(name, column.type, nullable=name not in self.key_columns)
            for name, column in zip(table.column_names, columns, strict=True)
        ]
        for name in self.key_columns & set(table.column_names):
            nulls = table.column(name).null_count
            if nulls:
                raise BadDataError(
                    f"{where}: key column '{name}' is empty in {nulls} row(s)",
                    details={"column": name, "uri": where},
                )
        return pa.Table.from_arrays(columns, schema=pa.schema(fields))

    def require_keys(self, table: pa.Table, where: str) -> None:
        """A merge needs its key and sequence columns in every row: a file without one is
        bad data (terminal), named, not a null that fails deep inside the load."""
        if not table.num_rows or not self.required:
            return
        from dlt.common.normalizers.naming.snake_case import NamingConvention

        naming = NamingConvention()
        present = {naming.normalize_identifier(name) for name in table.column_names}
        for name in self.required:
            if name not in table.column_names and naming.normalize_identifier(name) not in present:
                raise BadDataError(
                    f"{where}: the data has no column '{name}', which the destination's "
                    "primary_key, merge_key or sequence names",
                    details={"column": name, "uri": where},
                )

    def _check_destination_type(self, name: str, arrow: pa.DataType, where: str) -> None:
        """A value of another kind than the destination column would be cast on load (2.5 into
        a bigint column becomes 2): refuse it instead of changing data silently."""
        existing = self.destination_types.get(name)
        accepts = DESTINATION_ACCEPTS.get(existing or "")
        if accepts is None or accepts(arrow):
            return
        raise SchemaContractError(
            f"{where}: column '{name}' is {existing} in the destination but {arrow} here; "
            "declare its type under source.columns or cast it in a transform step (the "
            "destination column cannot change type, and a silent cast would change values)",
            details={"column": name, "uri": where},
        )


DESTINATION_ACCEPTS = {
    "bigint": pa.types.is_integer,
    "double": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t),
    "bool": pa.types.is_boolean,
    "text": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
    "timestamp": pa.types.is_timestamp,
    "date": pa.types.is_date,
    "decimal": lambda t: pa.types.is_decimal(t) or pa.types.is_integer(t),
}
