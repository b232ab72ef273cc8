"""app/run/extract.py alone: what the extract loop hands dlt for a planned object (data with
its lineage, the object's ledger row, rejected rows apart), what it reports, and how a failed
check sets the file aside. Local files on DuckDB; nothing is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from app.run.extract import DataBatch, FileExtractor, LedgerRow
from app.run.plan import plan_files
from app.run.request import RunRequest
from core.errors import QualityCheckError
from core.lineage import REJECTS_SUFFIX
from core.settings import Settings
from core.spec import FilesSource
from tests.helpers import duckdb_settings, write_catalog
from tests.run.context import run_context

PIPELINES = """
pipelines:
  - name: people
    source: {uri: "data/*.csv", columns: {id: int64}, on_bad_rows: reject}
    destination: {table: people}
  - name: checked
    source: {uri: "data/*.csv", columns: {id: int64}}
    destination: {table: checked}
    checks: {min_rows: 5}
"""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("id\n1\n2\nthree\n", encoding="utf-8")
    return duckdb_settings(tmp_path, run_log=False)


def extract(settings: Settings, pipeline: str) -> tuple[list[Any], list[tuple[str, int, int, int]]]:
    """Every item the loop yields, and the run report's files (status and row counts)."""
    catalog = write_catalog(settings.pipelines_file.parent, PIPELINES)
    with run_context(RunRequest(pipeline), settings, catalog) as context:
        source = context.spec.source
        assert isinstance(source, FilesSource)
        extractor = FileExtractor(context, source, plan_files(context, source, None), None)
        items = list(extractor.batches())
        files = [
            (str(f.status), f.rows_read, f.rows_loaded, f.rows_rejected)
            for f in context.report.files
        ]
    return items, files


def test_data_rejects_and_the_ledger_row_are_handed_over_apart(settings: Settings) -> None:
    items, files = extract(settings, "people")
    data = [item.table for item in items if isinstance(item, DataBatch)]
    ledger = [item.row for item in items if isinstance(item, LedgerRow)]
    rejects = [item for item in items if not isinstance(item, DataBatch | LedgerRow)]
    assert [table.column("id").to_pylist() for table in data] == [[1, 2]]
    assert {"_ferry_source_uri", "_ferry_source_generation"} <= set(data[0].column_names)
    assert len(ledger) == 1 and ledger[0].num_rows == 1
    (rejected,) = rejects
    assert rejected.meta.hints["table_name"] == "people" + REJECTS_SUFFIX
    assert isinstance(rejected.data, pa.Table)
    assert rejected.data.column("raw").to_pylist() == ['{"id": "three"}']
    assert files == [("loaded", 3, 2, 1)]


def test_a_failed_check_sets_the_file_aside(settings: Settings) -> None:
    (kept := settings.pipelines_file.parent / "data" / "a.csv").write_text(
        "id\n1\n", encoding="utf-8"
    )
    catalog = write_catalog(settings.pipelines_file.parent, PIPELINES)
    with run_context(RunRequest("checked"), settings, catalog) as context:
        source = context.spec.source
        assert isinstance(source, FilesSource)
        extractor = FileExtractor(context, source, plan_files(context, source, None), None)
        with pytest.raises(QualityCheckError):
            list(extractor.batches())
        ((status, reason),) = [(f.status, f.reason) for f in context.report.files]
    assert status == "failed" and reason
    assert kept.exists(), "without a quarantine prefix the object stays where it is"
