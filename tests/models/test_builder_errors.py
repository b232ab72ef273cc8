"""A model's failure gets its own code: SQL and data errors are terminal, outages retriable
(the exception types dlt and the Google client really raise; pure)."""

from __future__ import annotations

import pytest
from dlt.destinations.exceptions import (
    DatabaseTerminalException,
    DatabaseTransientException,
    DatabaseUndefinedRelation,
)
from google.api_core.exceptions import BadRequest, ServiceUnavailable

from app.models.builder import model_error
from core.errors import DestinationUnavailableError, ModelCheckError, outcome_of


@pytest.mark.parametrize(
    ("raised", "code", "exit_code"),
    [
        (DatabaseTerminalException(Exception("Conversion Error")), "model_failed", 2),
        (DatabaseUndefinedRelation(Exception("no table")), "model_failed", 2),
        (BadRequest("Query error: Bad int64 value: x"), "model_failed", 2),
        (DatabaseTransientException(Exception("connection reset")), "model_unavailable", 1),
        (ServiceUnavailable("backend error"), "model_unavailable", 1),
        (DestinationUnavailableError("DuckDB file stayed locked"), "model_unavailable", 1),
        (ModelCheckError("check unique failed"), "model_check_failed", 2),
    ],
    ids=[
        "duckdb-sql",
        "missing-relation",
        "bigquery-400",
        "transient",
        "bigquery-503",
        "duckdb-lock",
        "check",
    ],
)
def test_model_errors_say_how_to_recover(raised: Exception, code: str, exit_code: int) -> None:
    error = model_error("curated", raised)

    assert error.code == code
    assert outcome_of(error).exit_code == exit_code
    assert error.code == "model_check_failed" or "model 'curated'" in error.message
