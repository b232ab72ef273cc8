"""Logs on a busy day (issue 14): the lines of one request must group in Cloud Logging (its
trace, from `X-Cloud-Trace-Context` or `traceparent`) and the lines of one run carry its run
id as a label; a library warning is a JSON line like any other, never raw stderr text."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.edges.logs import configure_logging
from app.edges.server import create_app
from core.log_context import LABELS_KEY, SPAN_KEY, TRACE_KEY, trace_fields
from tests.helpers import REPO, duckdb_settings, write_catalog

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PROJECT = "acme-data"


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """ferry's JSON logging into a buffer for one test; the root logger is restored after."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    buffer = io.StringIO()
    configure_logging("json", "INFO", stream=buffer)
    try:
        yield buffer
    finally:
        logging.captureWarnings(False)
        root.handlers[:], level = saved
        root.setLevel(level)


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"X-Cloud-Trace-Context": f"{TRACE}/1234;o=1"}, id="cloud-trace"),
        pytest.param({"traceparent": f"00-{TRACE}-00000000000004d2-01"}, id="traceparent"),
    ],
)
def test_every_line_of_a_request_carries_its_trace_and_its_run_id(
    tmp_path: Path, json_logs: io.StringIO, headers: dict[str, str]
) -> None:
    (tmp_path / "people.csv").write_text("id,name\n1,ada\n2,grace\n")
    (tmp_path / "broken.csv").write_text("id,name\n1,ada,extra\n")
    write_catalog(
        tmp_path,
        """
        pipelines:
          - {name: people, source: {uri: "people.csv"}, destination: {table: people}}
          - {name: broken, source: {uri: "broken.csv"}, destination: {table: broken}}
        """,
    )
    settings = duckdb_settings(tmp_path, google_cloud_project=PROJECT)
    with TestClient(create_app(settings)) as client:
        json_logs.truncate(0)
        json_logs.seek(0)
        loaded = client.post("/runs", json={"pipeline": "people"}, headers=headers)
        failed = client.post("/runs", json={"pipeline": "broken"}, headers=headers)
        untraced = client.post("/runs", json={"pipeline": "people"})
    assert loaded.status_code == 200 and failed.status_code == 422
    run_ids = {loaded.json()["run_id"], failed.json()["error"]["run_id"]}

    logged = lines(json_logs)
    traced = [line for line in logged if TRACE_KEY in line]
    assert traced, logged
    assert {line[TRACE_KEY] for line in traced} == {f"projects/{PROJECT}/traces/{TRACE}"}
    assert {line[SPAN_KEY] for line in traced} == {f"{1234:016x}"}
    # the failed run's error line is in the request's trace and labelled with its run
    errors = [line for line in traced if line["severity"] in ("WARNING", "ERROR")]
    assert errors
    labelled = {line[LABELS_KEY]["run_id"] for line in traced if LABELS_KEY in line}
    assert labelled == run_ids, traced
    # a request without a trace header carries none, but its run still has its label
    untraced_id = untraced.json()["run_id"]
    own = [line for line in logged if line.get(LABELS_KEY, {}).get("run_id") == untraced_id]
    assert own and all(TRACE_KEY not in line for line in own)


def test_trace_fields_need_a_project_and_a_valid_header() -> None:
    assert trace_fields(None, f"{TRACE}/1;o=1", None) == {}
    assert trace_fields(PROJECT, "garbage", "00-garbage") == {}
    assert trace_fields(PROJECT, None, f"00-{'0' * 32}-00000000000004d2-01") == {}
    assert trace_fields(PROJECT, TRACE, None)[TRACE_KEY] == f"projects/{PROJECT}/traces/{TRACE}"


def test_a_library_warning_is_a_json_line(json_logs: io.StringIO) -> None:
    from google.cloud.bigquery import client as bigquery_client

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        # what google-cloud-bigquery does without google-cloud-bigquery-storage installed
        warnings.warn_explicit(
            "Cannot create BigQuery Storage client, the dependency "
            "google-cloud-bigquery-storage is not installed.",
            UserWarning,
            bigquery_client.__file__,
            681,
            module="google.cloud.bigquery.client",
        )
    [line] = lines(json_logs)
    assert line["severity"] == "WARNING" and "Storage client" in line["message"]


@pytest.mark.emulators
def test_a_bigquery_job_writes_only_json_lines(tmp_path: Path, bigquery_emulator: Any) -> None:
    (tmp_path / "people.csv").write_text("id,name\n1,ada\n2,grace\n")
    (tmp_path / "pipelines.yaml").write_text(
        """
pipelines:
  - {name: people, source: {uri: "people.csv"}, destination: {table: people}}
""",
        encoding="utf-8",
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FERRY_", "CLOUD_RUN_", "BIGQUERY_", "STORAGE_"))
    }
    env |= {
        "FERRY_PIPELINES_FILE": str(tmp_path / "pipelines.yaml"),
        "FERRY_DATA_DIR": str(tmp_path / "data"),
        "FERRY_BIGQUERY_PROJECT": bigquery_emulator.project,
        "FERRY_BIGQUERY_DATASET": f"logs_{os.getpid()}",
        "FERRY_LOG_FORMAT": "json",
        **bigquery_emulator.env,
    }
    done = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "run", "people"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    stderr = [line for line in done.stderr.splitlines() if line.strip()]
    # DuckDB's exit note is not ours (see EMULATORS.md); everything else is JSON
    raw = [line for line in stderr if not line.startswith("{") and "nanobind" not in line]
    assert raw == [], raw
    report = json.loads(done.stdout)
    labelled = [json.loads(line) for line in stderr if line.startswith("{")]
    assert any(line.get(LABELS_KEY, {}).get("run_id") == report["run_id"] for line in labelled)
