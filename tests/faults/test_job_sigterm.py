"""Job mode and SIGTERM (issue 14): Cloud Run sends SIGTERM to a job task on timeout and on
cancel. The task abandons its run cleanly (nothing visible, working dir removed, exit code 1
so the task is retried), and the retried attempt records its execution and attempt in the
run log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb

from tests.faults.test_crashes import paged_api
from tests.helpers import REPO
from tests.sources.api_server import serve

RECORDS = [{"id": i, "v": i % 7} for i in range(3000)]


def job_env(tmp_path: Path, attempt: int) -> dict[str, str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FERRY_", "CLOUD_RUN_", "BIGQUERY_", "STORAGE_"))
    }
    return environment | {
        "FERRY_PIPELINES_FILE": str(tmp_path / "pipelines.yaml"),
        "FERRY_DATA_DIR": str(tmp_path / "data"),
        "FERRY_DUCKDB_PATH": str(tmp_path / "destination.duckdb"),
        "FERRY_LOG_FORMAT": "json",
        "CLOUD_RUN_JOB": "ferry-slow",
        "CLOUD_RUN_EXECUTION": "ferry-slow-x7k2p",
        "CLOUD_RUN_TASK_INDEX": "0",
        "CLOUD_RUN_TASK_COUNT": "1",
        "CLOUD_RUN_TASK_ATTEMPT": str(attempt),
    }


def job(tmp_path: Path, attempt: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(REPO / "main.py"), "run", "slow"],
        cwd=REPO,
        env=job_env(tmp_path, attempt),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def scalar(tmp_path: Path, sql: str) -> Any:
    database = tmp_path / "destination.duckdb"
    if not database.exists():
        return None
    with duckdb.connect(str(database), read_only=True) as connection:
        try:
            row = connection.execute(sql).fetchone()
        except duckdb.CatalogException:
            return None
    return row


def test_sigterm_abandons_a_job_run_cleanly_and_the_retry_records_its_attempt(
    tmp_path: Path,
) -> None:
    with serve() as api:
        speed = paged_api(api, RECORDS, per_page=100)
        (tmp_path / "pipelines.yaml").write_text(
            f"""
pipelines:
  - name: slow
    source: {{kind: api, base_url: "{api.base_url}", path: /items, data_selector: items,
              paginator: {{type: json_link, next_url_path: next}}, allowed_hosts: ["127.0.0.1"]}}
    destination: {{table: slow, write_disposition: merge, primary_key: [id]}}
""",
            encoding="utf-8",
        )
        speed["delay"] = 0.3
        first = job(tmp_path, attempt=0)
        deadline = time.monotonic() + 120
        while len(api.requests_to("/items")) < 4 and time.monotonic() < deadline:
            assert first.poll() is None, first.communicate()[1][-2000:]
            time.sleep(0.05)
        first.send_signal(signal.SIGTERM)
        _, stderr = first.communicate(timeout=60)

        assert first.returncode == 1, stderr[-2000:]  # retriable: Cloud Run retries the task
        errors = [
            json.loads(line)
            for line in stderr.splitlines()
            if line.startswith("{") and '"shutting_down"' in line
        ]
        assert errors and errors[-1]["severity"] == "ERROR", stderr[-2000:]
        assert scalar(tmp_path, "select count(*) from ferry.slow") in (None, (0,))
        runs_dir = tmp_path / "data" / "runs"
        assert not runs_dir.exists() or list(runs_dir.iterdir()) == [], "working dir removed"

        speed["delay"] = 0.0
        retry = job(tmp_path, attempt=1)
        stdout, stderr = retry.communicate(timeout=300)
    assert retry.returncode == 0, stderr[-3000:]
    report = json.loads(stdout)
    assert (report["execution"], report["task_attempt"]) == ("ferry-slow-x7k2p", 1)
    assert report["rows_loaded"] == len(RECORDS)
    assert scalar(tmp_path, "select count(*), count(distinct id) from ferry.slow") == (
        len(RECORDS),
        len(RECORDS),
    )
    # the run log: only the attempt that ran to the end, with its execution and attempt
    logged = scalar(
        tmp_path,
        "select count(*), max(execution), max(task_attempt), max(status) from ferry._ferry_runs",
    )
    assert logged == (1, "ferry-slow-x7k2p", 1, "succeeded")
