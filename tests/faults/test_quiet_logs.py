"""Noise that hides real warnings (issue 19): a BigQuery load logs no dlt warning about the
ledger's columns, and the table hints still reach the data table."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import pytest

from app.run.catalog import load_catalog
from app.run.runner import RunRequest, run
from core.settings import Settings
from tests.emulators import BigQueryEmulator
from tests.helpers import REPO, duckdb_settings, query, write_catalog


@pytest.mark.emulators
def test_a_bigquery_load_warns_of_nothing_and_keeps_its_table_hints(
    tmp_path: Path,
    bigquery_env: BigQueryEmulator,
    unique_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The example's `orders` partitions on ordered_at and clusters on country. dlt copied
    those column hints into every table the resource yields, the ledger too, and warned on
    every load that they "did not receive any data"."""
    settings = Settings(
        destination="bigquery",
        bigquery_project=bigquery_env.project,
        bigquery_dataset=unique_name,
        bigquery_emulator_host=bigquery_env.endpoint,
        storage_emulator_host=None,
        data_dir=tmp_path / "data",
    )
    catalog = load_catalog(REPO / "examples" / "pipelines.yaml")

    with caplog.at_level(logging.WARNING):
        report = run(RunRequest("orders"), settings, catalog)

    assert report.tables["orders"] > 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [w for w in warnings if "did not receive any data" in w], warnings
    # the hints dlt keeps (and creates the tables from), as stored in the destination
    (row,) = (
        bigquery_env.client()
        .query(
            f"select schema from `{bigquery_env.project}.{unique_name}._dlt_version` "
            "where schema_name = 'ferry_orders' order by inserted_at desc limit 1"
        )
        .result()
    )
    tables = json.loads(row.schema)["tables"]
    assert tables["orders"]["columns"]["country"].get("x-bigquery-cluster") is True
    assert tables["orders"]["columns"]["ordered_at"].get("x-bigquery-partition") is True
    assert "country" not in tables["_ferry_objects"]["columns"]
    assert "ordered_at" not in tables["_ferry_objects"]["columns"]


@pytest.mark.emulators
def test_a_bigquery_run_does_not_warn_about_the_storage_read_api(
    tmp_path: Path, bigquery_env: BigQueryEmulator, unique_name: str
) -> None:
    settings = Settings(
        destination="bigquery",
        bigquery_project=bigquery_env.project,
        bigquery_dataset=unique_name,
        bigquery_emulator_host=bigquery_env.endpoint,
        storage_emulator_host=None,
        data_dir=tmp_path / "data",
    )
    catalog = load_catalog(REPO / "examples" / "pipelines.yaml")

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        run(RunRequest("orders"), settings, catalog)
        run(RunRequest("orders"), settings, catalog)

    messages = [str(w.message) for w in seen]
    assert not [m for m in messages if "BigQuery Storage" in m], messages


def test_jsonl_timestamps_with_fractions_or_offsets_type_as_in_csv(tmp_path: Path) -> None:
    values = ["2026-11-20T10:00:13.623+00:00", "2026-11-21T08:30:00.5+02:00"]
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_text(
        "id,at\n" + "".join(f"{i},{v}\n" for i, v in enumerate(values)), encoding="utf-8"
    )
    (folder / "a.jsonl").write_text(
        "".join(f'{{"id": {i}, "at": "{v}"}}\n' for i, v in enumerate(values)), encoding="utf-8"
    )
    catalog = write_catalog(
        tmp_path,
        f"""
        pipelines:
          - {{name: from_csv, source: {{uri: "{folder}/*.csv"}}, destination: {{table: c}}}}
          - {{name: from_jsonl, source: {{uri: "{folder}/*.jsonl"}}, destination: {{table: j}}}}
        """,
    )
    settings = duckdb_settings(tmp_path)
    run(RunRequest("from_csv"), settings, catalog)
    run(RunRequest("from_jsonl"), settings, catalog)

    types = dict(
        query(
            settings,
            "select table_name, data_type from information_schema.columns "
            "where table_schema = 'ferry' and column_name = 'at'",
        )
    )
    assert types["j"] == types["c"] == "TIMESTAMP WITH TIME ZONE", types
    assert query(settings, 'select "at" from ferry.j order by id') == query(
        settings, 'select "at" from ferry.c order by id'
    )
