"""app/edges/routes/schemas.py: the OpenAPI document shows the run report's own schema (not
`dict[str, Any]`) wherever a report comes back, and that schema is what `to_dict()` sends."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from app.edges.routes.schemas import RunReportBody
from app.edges.server import create_app
from app.models.report import ModelReport
from app.run.report import FileReport, RunReport
from tests.helpers import duckdb_settings, write_catalog


def openapi(tmp_path: Path) -> dict[str, Any]:
    write_catalog(tmp_path, "pipelines: []\n")
    document: dict[str, Any] = create_app(duckdb_settings(tmp_path)).openapi()
    return document


def test_every_report_in_the_document_is_the_run_report_schema(tmp_path: Path) -> None:
    document = openapi(tmp_path)
    schemas = document["components"]["schemas"]
    for path, method in (("/runs", "post"), ("/runs/{run_id}", "get")):
        answer = document["paths"][path][method]["responses"]["200"]["content"]
        assert answer["application/json"]["schema"] == {
            "$ref": "#/components/schemas/RunReportBody"
        }
    assert schemas["PushResponse"]["properties"]["reports"]["items"] == {
        "$ref": "#/components/schemas/RunReportBody"
    }
    report = schemas["ErrorResponse"]["properties"]["report"]["anyOf"][0]
    assert report == {"$ref": "#/components/schemas/RunReportBody"}
    fields = set(schemas["RunReportBody"]["properties"])
    assert {"run_id", "status", "rows_loaded", "files", "models", "files_loaded"} <= fields


def test_the_schema_is_what_a_report_serialises_to() -> None:
    report = RunReport("r-1", "people", "http", "duckdb", "ferry")
    report.files.append(FileReport("gs://b/a.csv", 1, 10, rows_read=2, rows_loaded=2))
    report.models.append(ModelReport("m", "table", rows=2))
    body = report.finish("succeeded").to_dict()
    TypeAdapter(RunReportBody).validate_python(body)
    declared = {field.name for field in dataclasses.fields(RunReportBody)}
    assert declared == set(body) | {"replayed"}
