"""BigQuery's destination module, without the emulator: what it asks of dlt's configuration."""

from __future__ import annotations

import os
from pathlib import Path

from dlt.common.configuration import resolve_configuration
from dlt.common.data_writers.buffered import BufferedDataWriter

from app.destinations.bigquery import destination as bigquery
from app.destinations.duckdb import destination as duckdb
from tests.helpers import duckdb_settings

WriterConfig = BufferedDataWriter.BufferedDataWriterConfiguration


def compressed() -> bool:
    """Whether dlt would gzip the load files it writes now (in this thread)."""
    return not resolve_configuration(WriterConfig()).disable_compression


def test_only_an_emulator_pipeline_writes_uncompressed_load_files(tmp_path: Path) -> None:
    emulator = duckdb_settings(
        tmp_path,
        destination="bigquery",
        bigquery_project="p",
        bigquery_emulator_host="http://127.0.0.1:9050",
    )
    local = duckdb_settings(tmp_path)

    bigquery.make_destination(emulator, "%s_staging_x")
    with bigquery.pipeline_config(emulator):
        assert not compressed()  # the emulator cannot read gzip files
    # a DuckDB pipeline after it, in the same process, still compresses
    with duckdb.pipeline_config(local):
        assert compressed()
    assert compressed()
    assert "DATA_WRITER__DISABLE_COMPRESSION" not in os.environ


def test_a_real_bigquery_pipeline_compresses(tmp_path: Path) -> None:
    cloud = duckdb_settings(tmp_path, destination="bigquery", bigquery_project="p")
    with bigquery.pipeline_config(cloud):
        assert compressed()
