"""One schema per run (RunSchema.conform) and lineage columns, on Arrow tables only."""

from __future__ import annotations

import pyarrow as pa
import pytest

from app.run.batches import RunSchema, add_lineage
from core.errors import BadDataError, SchemaContractError
from core.lineage import SOURCE_GENERATION_COLUMN, SOURCE_URI_COLUMN


def test_later_batches_are_cast_to_the_first_batch_types() -> None:
    schema = RunSchema()
    schema.conform(pa.table({"qty": pa.array([1.5], pa.float64())}), "a.csv")
    later = schema.conform(pa.table({"qty": pa.array([2], pa.int64())}), "b.csv")
    assert later.schema.field("qty").type == pa.float64()
    assert later.column("qty").to_pylist() == [2.0]


def test_a_type_that_cannot_be_cast_names_the_file_and_column() -> None:
    schema = RunSchema()
    schema.conform(pa.table({"qty": pa.array([1], pa.int64())}), "a.csv")
    with pytest.raises(BadDataError, match=r"b\.csv: column 'qty'") as raised:
        schema.conform(pa.table({"qty": pa.array(["x"], pa.string())}), "b.csv")
    assert raised.value.details == {"column": "qty", "uri": "b.csv"}


def test_an_all_null_column_waits_for_a_typed_batch() -> None:
    schema = RunSchema()
    schema.conform(pa.table({"note": pa.nulls(2)}), "a.csv")
    assert "note" not in schema.types
    schema.conform(pa.table({"note": pa.array(["x"])}), "b.csv")
    assert schema.types["note"] == pa.string()


def test_keys_and_lineage_are_required_and_not_nullable() -> None:
    schema = RunSchema(key_columns=("id",))
    table = add_lineage(pa.table({"id": [1, 2]}), "gs://b/a.csv", 7)
    conformed = schema.conform(table, "gs://b/a.csv")
    assert not conformed.schema.field("id").nullable
    assert not conformed.schema.field(SOURCE_URI_COLUMN).nullable
    assert conformed.column(SOURCE_GENERATION_COLUMN).to_pylist() == [7, 7]
    with pytest.raises(BadDataError, match="key column 'id' is empty in 1 row"):
        schema.conform(add_lineage(pa.table({"id": [1, None]}), "gs://b/b.csv", 1), "b.csv")


def test_lineage_replaces_columns_of_the_same_name() -> None:
    table = pa.table({SOURCE_URI_COLUMN: ["forged"], "id": [1]})
    assert add_lineage(table, "gs://b/a.csv", 1).column(SOURCE_URI_COLUMN).to_pylist() == [
        "gs://b/a.csv"
    ]


@pytest.mark.parametrize(
    ("existing", "arrow", "accepted"),
    [
        ("bigint", pa.float64(), False),
        ("bigint", pa.int32(), True),
        ("double", pa.int64(), True),
        ("text", pa.int64(), False),
        ("timestamp", pa.timestamp("us", tz="UTC"), True),
        ("unknown-type", pa.int64(), True),
    ],
    ids=str,
)
def test_a_value_of_another_kind_than_the_destination_column_is_refused(
    existing: str, arrow: pa.DataType, accepted: bool
) -> None:
    schema = RunSchema(destination_types={"qty": existing})
    table = pa.table({"qty": pa.array([1], arrow)})
    if accepted:
        schema.conform(table, "a.csv")
    else:
        with pytest.raises(SchemaContractError, match=f"'qty' is {existing} in the destination"):
            schema.conform(table, "a.csv")
