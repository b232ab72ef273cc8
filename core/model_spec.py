"""Post-load SQL models: what a `models:` entry of the pipelines file may declare.

A model is a `SELECT` in BigQuery's dialect that builds one table or view in the configured
dataset from loaded tables (or other models). Imports nothing of ferry's, so `core.spec`
can embed it in the pipelines file without an import cycle.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MODEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
Materialization = Literal["table", "view", "incremental"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def _identifier(value: str) -> str:
    if not MODEL_NAME.match(value):
        raise ValueError(
            f"'{value}' is not a valid identifier (letters, digits, underscore; "
            "must not start with a digit)"
        )
    return value


class ValueRange(_Strict):
    min: float | None = None
    """The smallest value allowed (inclusive)."""
    max: float | None = None
    """The largest value allowed (inclusive)."""


class ModelChecks(_Strict):
    """The pipelines' quality-gate vocabulary, run as SQL on a model's new rows before they
    replace the old ones (incremental models: on the rows about to be merged)."""

    not_null: list[str] = Field(default_factory=list)
    """Columns that must have a value in every row."""
    unique: list[str] = Field(default_factory=list)
    """Columns that together are unique over the model's rows."""
    accepted_values: dict[str, list[Any]] = Field(default_factory=dict)
    """Column -> the only values it may hold."""
    range: dict[str, ValueRange] = Field(default_factory=dict)
    """Column -> inclusive `min` and/or `max` its values must lie within."""
    min_rows: int = Field(default=0, ge=0)
    """The model must have at least this many rows."""

    @property
    def any(self) -> bool:
        return bool(
            self.not_null or self.unique or self.accepted_values or self.range or self.min_rows
        )


class ModelSpec(_Strict):
    name: str
    """The table or view the model builds in the configured dataset."""
    description: str = ""
    """Free text for people."""
    sql: str | None = None
    """A `SELECT` in BigQuery's dialect; table names unqualified (`FROM orders`)."""
    sql_file: str | None = None
    """A `.sql` file holding the `SELECT`, relative to the pipelines file."""
    materialization: Materialization = "table"
    """`table` (rebuilt and swapped in whole), `view`, or `incremental` (after its first
    build, reads only the upstream rows of loads newer than its last build and adds their
    rows to the table: merged on `unique_key`, or appended without one; docs/models.md)."""
    unique_key: list[str] = Field(default_factory=list)
    """incremental only: the columns a row is matched on (a new row replaces the row with
    its key); none: new rows are appended."""
    checks: ModelChecks = Field(default_factory=ModelChecks)
    """Quality gates run on the new rows before they replace the old ones."""
    build_after_load: bool = True
    """False: only `build` (CLI or `POST /runs {"models": [...]}`) builds it, e.g. on a
    schedule, when rebuilding after every pushed object would cost too many query jobs."""

    @field_validator("name")
    @classmethod
    def name_shape(cls, value: str) -> str:
        return _identifier(value)

    @field_validator("unique_key")
    @classmethod
    def key_columns(cls, value: list[str]) -> list[str]:
        return [_identifier(column) for column in value]

    @field_validator("sql_file")
    @classmethod
    def sql_file_shape(cls, value: str | None) -> str | None:
        if value is not None and not value.endswith(".sql"):
            raise ValueError("must name a .sql file")
        return value

    @model_validator(mode="after")
    def one_sql_and_keys_fit(self) -> ModelSpec:
        if (self.sql is None) == (self.sql_file is None):
            raise ValueError("give exactly one of sql or sql_file")
        if self.materialization != "incremental" and self.unique_key:
            raise ValueError("unique_key applies to materialization 'incremental' only")
        return self
