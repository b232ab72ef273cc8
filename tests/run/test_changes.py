"""Pure helpers of stateful tables: partition columns from paths, CDC delete marks."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from app.run.changes import ChangeMarker, partition_values, with_partition_columns
from core.errors import BadDataError
from core.lineage import DELETED_AT_COLUMN
from core.spec import CdcSpec


def test_partition_segments_become_typed_values() -> None:
    values = partition_values(
        "gs://lake/events/dt=2026-11-20/region=eu%2Dwest/hour=07/part-0.csv",
        {"dt": "date", "region": "string", "hour": "int64"},
    )

    assert values["dt"].as_py() == dt.date(2026, 11, 20)
    assert values["region"].as_py() == "eu-west"
    assert values["hour"].as_py() == 7


def test_the_file_name_is_never_a_partition() -> None:
    with pytest.raises(BadDataError, match="no 'dt=' folder"):
        partition_values("/data/x/dt=2026-11-20.csv", {"dt": "date"})


def test_a_value_of_the_wrong_type_fails_the_file() -> None:
    with pytest.raises(BadDataError, match="not a int64"):
        partition_values("gs://b/hour=seven/a.csv", {"hour": "int64"})


def test_partition_columns_are_constant_columns_and_the_path_wins() -> None:
    batch = pa.table({"n": [1, 2], "dt": ["wrong", "wrong"]})
    values = {"dt": pa.scalar(dt.date(2026, 1, 2)), "region": pa.scalar("eu")}

    table = with_partition_columns(batch, values)

    assert table.column("dt").to_pylist() == [dt.date(2026, 1, 2)] * 2
    assert table.column("region").to_pylist() == ["eu", "eu"]


def test_deletes_are_marked_and_become_tombstones() -> None:
    marker = ChangeMarker(CdcSpec(operation_column="op", delete_values=["d", "D"]), ["id"], "seq")
    batch = pa.table(
        {
            "id": [1, 2, 3, 4],
            "seq": [10, 11, 12, 13],
            "op": ["i", "d", None, "D"],
            "_ferry_source_uri": ["u"] * 4,
            "_ferry_source_generation": [7] * 4,
        }
    )

    marked = marker.mark(batch, "u")
    tombstones = marker.tombstones(marked)

    assert [v is not None for v in marked.column(DELETED_AT_COLUMN).to_pylist()] == [
        False,
        True,
        False,
        True,
    ]
    assert tombstones.column_names == [
        "id",
        "seq",
        DELETED_AT_COLUMN,
        "_ferry_source_uri",
        "_ferry_source_generation",
    ]
    assert tombstones.column("id").to_pylist() == [2, 4]


def test_a_missing_operation_column_fails_the_file() -> None:
    marker = ChangeMarker(CdcSpec(operation_column="op"), ["id"], None)
    with pytest.raises(BadDataError, match="operation column 'op'"):
        marker.mark(pa.table({"id": [1]}), "gs://b/a.csv")


def test_two_segments_of_one_partition_column_are_refused() -> None:
    with pytest.raises(BadDataError, match="two 'dt=' folders"):
        partition_values("gs://b/dt=2026-01-01/x/dt=2026-02-02/a.csv", {"dt": "date"})
    # undeclared names may repeat: they are not columns
    partition_values("gs://b/v=1/dt=2026-01-01/v=2/a.csv", {"dt": "date"})
