"""Small builders shared by tests: settings in a temp dir, pipelines files, row counts."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import duckdb

from app.run.catalog import Catalog, load_catalog
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
