"""Terminal failures under FERRY_TERMINAL_EXIT_CODE=0 (issue 14): the execution succeeds (exit
0, so Cloud Run does not retry a bad file), so the documented log-based alert is all that
makes the failure loud. This checks the task's log line against the filter in
docs/deploy.md, condition by condition, as Cloud Logging would see the entry."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers import REPO

SEVERITIES = ["DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT"]


def documented_filter() -> list[str]:
    """The conditions of the alert filter in docs/deploy.md (one per line)."""
    text = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    section = text.split("### An alert for terminal failures", 1)[1]
    block = re.search(r"```text\n(.*?)```", section, re.DOTALL)
    assert block, "the alert section shows its filter in a ```text block"
    return [line.strip() for line in block[1].splitlines() if line.strip()]


def matches(condition: str, entry: dict[str, Any], resource_type: str) -> bool:
    """One Cloud Logging filter condition against an entry built from a JSON log line."""
    parsed = re.fullmatch(r'([\w.]+)\s*(>=|=)\s*"?([^"]*)"?', condition)
    assert parsed, f"unsupported filter condition: {condition}"
    field, operator, value = parsed.groups()
    if field == "resource.type":
        return resource_type == value
    if field == "severity":
        actual = SEVERITIES.index(entry.get("severity", "DEFAULT"))
        wanted = SEVERITIES.index(value)
        return actual >= wanted if operator == ">=" else actual == wanted
    assert field.startswith("jsonPayload."), condition
    found: Any = entry
    for key in field.removeprefix("jsonPayload.").split("."):
        if not isinstance(found, dict) or key not in found:
            return False
        found = found[key]
    return operator == "=" and str(found) == value


def run_job(tmp_path: Path, pipeline: str) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FERRY_", "CLOUD_RUN_", "BIGQUERY_", "STORAGE_"))
    }
    env |= {
        "FERRY_PIPELINES_FILE": str(tmp_path / "pipelines.yaml"),
        "FERRY_DATA_DIR": str(tmp_path / "data"),
        "FERRY_LOG_FORMAT": "json",
        "FERRY_TERMINAL_EXIT_CODE": "0",
        "CLOUD_RUN_JOB": "ferry-orders",
    }
    return subprocess.run(
        [sys.executable, str(REPO / "main.py"), "run", pipeline],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def alerting_lines(stderr: str) -> list[dict[str, Any]]:
    conditions = documented_filter()
    entries = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [e for e in entries if all(matches(c, e, "cloud_run_job") for c in conditions)]


def test_a_terminal_failure_exits_0_and_matches_the_documented_alert(tmp_path: Path) -> None:
    (tmp_path / "good.csv").write_text("id,name\n1,ada\n2,grace\n", encoding="utf-8")
    (tmp_path / "bad.csv").write_text("id,name\n1,ada,extra\n", encoding="utf-8")
    (tmp_path / "pipelines.yaml").write_text(
        """
pipelines:
  - {name: orders, source: {uri: "bad.csv"}, destination: {table: orders}}
  - {name: people, source: {uri: "good.csv"}, destination: {table: people}}
""",
        encoding="utf-8",
    )
    failed = run_job(tmp_path, "orders")
    assert failed.returncode == 0, failed.stderr[-2000:]
    [alert] = alerting_lines(failed.stderr)
    assert alert["error"]["code"] == "bad_data"
    assert alert["error"]["pipeline"] == "orders"
    assert "Traceback" not in alert["message"]

    # a successful run never matches
    loaded = run_job(tmp_path, "people")
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert alerting_lines(loaded.stderr) == []
    assert json.loads(loaded.stdout)["rows_loaded"] == 2
