"""Small builders shared by tests: settings in a temp dir, pipelines files, row counts."""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
from dlt.pipeline.exceptions import PipelineStepFailed

from app.run.catalog import Catalog, load_catalog
from core.errors import FerryError
from core.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def duckdb_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for the embedded default, isolated under tmp_path (env vars are ignored)."""
    values: dict[str, Any] = {
        "destination": "duckdb",
        "data_dir": tmp_path / "data",
        "pipelines_file": tmp_path / "pipelines.yaml",
        "bigquery_project": None,
        "storage_emulator_host": None,
        "bigquery_emulator_host": None,
    }
    values.update(overrides)
    return Settings(**values)


def write_catalog(folder: Path, text: str) -> Catalog:
    path = folder / "pipelines.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_catalog(path)


def query(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    """Read the embedded DuckDB database (read-only, so it never blocks a run)."""
    with duckdb.connect(str(settings.resolved_duckdb_path), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def count(settings: Settings, table: str) -> int:
    """Rows in a table; 0 when the database, dataset or table was never created."""
    if not settings.resolved_duckdb_path.exists():
        return 0
    try:
        rows = query(settings, f"select count(*) from {settings.dataset_name}.{table}")
    except duckdb.CatalogException:
        return 0
    return int(rows[0][0])


# --- library exceptions as a library hands them over (for classify() tests) ---


def step_failed(step: str, exception: BaseException) -> PipelineStepFailed:
    # PipelineStepFailed reads only these two attributes of the pipeline it names
    pipeline = SimpleNamespace(pipeline_name="ferry_orders", has_pending_data=False)
    return PipelineStepFailed(pipeline, step, "123.4", exception)  # type: ignore[arg-type]


def raised(error: BaseException) -> BaseException:
    """`error` with a real traceback, as a library would hand it over."""
    try:
        raise error
    except BaseException as caught:
        return caught


def assert_clean(error: FerryError) -> None:
    for text in (error.message, str(error), repr(error.to_dict())):
        assert "Traceback" not in text and 'File "' not in text and "\n" not in text
