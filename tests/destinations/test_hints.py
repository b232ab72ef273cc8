"""dlt table hints from a destination spec, and the engine's adapter on top, without any
dlt run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dlt
import pytest

from app.destinations.hints import apply_hints, key_columns, rejects_hints, write_hints
from app.destinations.pipeline import staging_token
from core.lineage import SOURCE_URI_COLUMN
from core.spec import DestinationSpec
from tests.helpers import duckdb_settings


def spec(**fields: Any) -> DestinationSpec:
    return DestinationSpec.model_validate({"table": "orders", **fields})


DELETE_INSERT = {"disposition": "merge", "strategy": "delete-insert"}


@pytest.mark.parametrize(
    ("fields", "keyed_by_object", "expected"),
    [
        pytest.param(
            {},
            True,
            {
                "write_disposition": DELETE_INSERT,
                "primary_key": None,
                "merge_key": [SOURCE_URI_COLUMN],
            },
            id="append-file-load-merges-by-object",
        ),
        pytest.param({}, False, {"write_disposition": "append"}, id="append-api"),
        pytest.param(
            {"write_disposition": "replace"},
            True,
            {"write_disposition": "replace"},
            id="replace-ignores-object-key",
        ),
        pytest.param(
            {"write_disposition": "merge", "primary_key": ["id"]},
            True,
            {
                "write_disposition": DELETE_INSERT,
                "primary_key": ["id"],
                "merge_key": [SOURCE_URI_COLUMN],
            },
            id="merge-on-key-and-object",
        ),
        pytest.param(
            {"write_disposition": "merge", "merge_key": ["day"]},
            True,
            {"write_disposition": DELETE_INSERT, "primary_key": None, "merge_key": ["day"]},
            id="own-merge-key-wins",
        ),
        pytest.param(
            {"schema_contract": "freeze"},
            False,
            {
                "write_disposition": "append",
                "schema_contract": {"tables": "evolve", "columns": "freeze", "data_type": "freeze"},
            },
            id="freeze",
        ),
    ],
)
def test_write_hints(fields: dict[str, Any], keyed_by_object: bool, expected: Any) -> None:
    assert write_hints(spec(**fields), keyed_by_object=keyed_by_object) == expected


def test_rejects_follow_their_table_without_its_key() -> None:
    merged = spec(write_disposition="merge", primary_key=["id"], schema_contract="freeze")
    assert rejects_hints(merged, keyed_by_object=True) == {
        "table_name": "orders__rejects",
        "write_disposition": DELETE_INSERT,
        "primary_key": [],
        "merge_key": [SOURCE_URI_COLUMN],
    }
    assert rejects_hints(merged, keyed_by_object=False)["write_disposition"] == "append"
    assert key_columns(merged) == ("id",)


def test_a_run_id_becomes_a_staging_token() -> None:
    assert staging_token("20261121T101500-3F9C") == "20261121t101500_3f9c"


def test_partition_and_cluster_reach_bigquery_only(tmp_path: Path) -> None:
    destination = spec(partition="ordered_at", cluster=["country"])

    def hinted(settings_kind: str) -> dict[str, Any]:
        settings = duckdb_settings(tmp_path, destination=settings_kind, bigquery_project="p")
        resource = dlt.resource([{"id": 1}], name="orders")
        apply_hints(resource, destination, settings, lineage=True, keyed_by_object=True)
        return {
            name: column.get("x-bigquery-partition") or column.get("x-bigquery-cluster")
            for name, column in resource.columns.items()  # type: ignore[union-attr]
        }

    assert hinted("bigquery") == {"ordered_at": True, "country": True}
    assert hinted("duckdb") == {}


def test_a_file_load_clusters_on_its_object_by_default(tmp_path: Path) -> None:
    settings = duckdb_settings(tmp_path, destination="bigquery", bigquery_project="p")
    resource = dlt.resource([{"id": 1}], name="orders")
    apply_hints(resource, spec(), settings, lineage=True, keyed_by_object=True)
    assert resource.columns[SOURCE_URI_COLUMN].get("x-bigquery-cluster") is True  # type: ignore[index]
