"""Validation of the stateful-table options: sequence, cdc, partition columns, deletes."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from core.spec import PipelineSpec


def spec(destination: dict[str, Any], source: dict[str, Any] | None = None) -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "name": "p",
            "source": source or {"uri": "data/*.csv"},
            "destination": {"table": "t", **destination},
        }
    )


def test_a_cdc_merge_pipeline_validates() -> None:
    parsed = spec(
        {
            "write_disposition": "merge",
            "primary_key": ["id"],
            "sequence": "lsn",
            "cdc": {"operation_column": "op", "delete_values": ["D"], "deletes": "soft"},
        },
        {"uri": "gs://bucket/cdc/**.jsonl", "partition_columns": {"dt": "date"}},
    )

    assert parsed.destination.ordered
    assert parsed.destination.cdc is not None
    assert parsed.destination.cdc.deletes == "soft"


@pytest.mark.parametrize(
    ("destination", "message"),
    [
        pytest.param({"sequence": "ts"}, "needs write_disposition 'merge'", id="append"),
        pytest.param(
            {"write_disposition": "merge", "merge_key": ["day"], "sequence": "ts"},
            "primary_key",
            id="merge-key-only",
        ),
        pytest.param(
            {
                "write_disposition": "merge",
                "primary_key": ["id"],
                "cdc": {"operation_column": "op", "delete_values": []},
            },
            "at least one operation value",
            id="no-delete-values",
        ),
        pytest.param(
            {
                "write_disposition": "merge",
                "primary_key": ["op"],
                "cdc": {"operation_column": "op"},
            },
            "cannot be part of the primary_key",
            id="operation-is-key",
        ),
        pytest.param(
            {"write_disposition": "merge", "primary_key": ["id"], "sequence": "1st"},
            "not a valid identifier",
            id="bad-sequence-name",
        ),
    ],
)
def test_ordering_options_are_checked(destination: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        spec(destination)


def test_api_pipelines_cannot_order_by_objects() -> None:
    with pytest.raises(ValidationError, match="need a files source"):
        spec(
            {"write_disposition": "merge", "primary_key": ["id"], "sequence": "ts"},
            {"kind": "api", "base_url": "https://api.example.com"},
        )


def test_partition_columns_and_delete_policy_are_checked() -> None:
    with pytest.raises(ValidationError, match="not a valid identifier"):
        spec({}, {"uri": "data/*.csv", "partition_columns": {"d-t": "date"}})
    with pytest.raises(ValidationError, match="on_object_delete"):
        spec({}, {"uri": "data/*.csv", "on_object_delete": "purge"})
