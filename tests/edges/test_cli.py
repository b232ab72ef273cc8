"""The job CLI as Cloud Run runs it: a process, its exit code, its stdout report, its logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO, count, duckdb_settings, write_catalog


def ferry(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FERRY_", "CLOUD_RUN_", "BIGQUERY_", "STORAGE_"))
    }
    environment |= {"FERRY_DATA_DIR": str(tmp_path / "data"), "FERRY_LOG_FORMAT": "json"}
    environment |= env
    return subprocess.run(
        [sys.executable, str(REPO / "main.py"), *args],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def log_lines(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_run_prints_report_and_exits_zero(tmp_path: Path) -> None:
    result = ferry(["run", "customers"], tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "succeeded"
    assert report["tables"] == {"customers": 40}
    assert report["files_loaded"] == 1
    assert all("severity" in line for line in log_lines(result.stderr))


def test_unknown_pipeline_is_terminal_exit_2(tmp_path: Path) -> None:
    result = ferry(["run", "nope"], tmp_path)
    assert result.returncode == 2
    (error,) = [line for line in log_lines(result.stderr) if line["severity"] == "ERROR"]
    assert error["error"]["code"] == "pipeline_not_found"  # type: ignore[index]
    assert "no pipeline named 'nope'" in str(error["message"])


def test_terminal_exit_code_is_configurable_for_cloud_run_jobs(tmp_path: Path) -> None:
    result = ferry(["run", "nope"], tmp_path, FERRY_TERMINAL_EXIT_CODE="0")
    assert result.returncode == 0
    assert any(line["severity"] == "ERROR" for line in log_lines(result.stderr))


def test_invalid_settings_still_honour_the_terminal_exit_code(tmp_path: Path) -> None:
    result = ferry(["validate"], tmp_path, FERRY_LOG_LEVEL="loud")
    assert result.returncode == 2
    result = ferry(["validate"], tmp_path, FERRY_LOG_LEVEL="loud", FERRY_TERMINAL_EXIT_CODE="0")
    assert result.returncode == 0, "a Cloud Run Job must not retry a broken config"
    (error,) = [line for line in log_lines(result.stderr) if line["severity"] == "ERROR"]
    assert error["error"]["code"] == "config_invalid"  # type: ignore[index]
    assert "FERRY_LOG_LEVEL" in str(error["message"])


def test_log_level_comes_from_the_settings(tmp_path: Path) -> None:
    result = ferry(["run", "nope"], tmp_path, FERRY_LOG_LEVEL="error")
    assert result.returncode == 2
    assert {line["severity"] for line in log_lines(result.stderr)} == {"ERROR"}


def test_bad_pipelines_file_is_terminal_and_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipelines:\n  - {name: p, source: {uri: a.csv}, destination: {table: 'x y'}}\n")
    result = ferry(["validate"], tmp_path, FERRY_PIPELINES_FILE=str(bad))
    assert result.returncode == 2
    assert "pipeline 'p', field destination.table" in result.stderr


def test_unreachable_api_is_retriable_exit_1(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text(
        f"""
pipelines:
  - name: api
    source: {{kind: api, base_url: "http://127.0.0.1:{port}", path: /items,
              allowed_hosts: ["127.0.0.1"], max_attempts: 1, timeout_seconds: 2}}
    destination: {{table: items}}
"""
    )
    result = ferry(["run", "api"], tmp_path, FERRY_PIPELINES_FILE=str(pipelines))
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["error"]["code"] == "source_unavailable"


def test_job_tasks_split_files_and_their_union_loads_each_row_once(tmp_path: Path) -> None:
    """N Cloud Run Job tasks in parallel == one run: every file once, no duplicates."""
    (tmp_path / "data").mkdir()
    for number in range(12):
        rows = "".join(f"{number * 100 + i},{number}\n" for i in range(50))
        (tmp_path / "data" / f"part-{number:02d}.csv").write_text("id,part\n" + rows)
    write_catalog(
        tmp_path,
        """
        pipelines:
          - {name: parts, source: {uri: "data/*.csv"}, destination: {table: parts}}
        """,
    )
    env = {"FERRY_PIPELINES_FILE": str(tmp_path / "pipelines.yaml")}
    tasks = 3
    processes = [
        subprocess.Popen(
            [sys.executable, str(REPO / "main.py"), "run", "parts"],
            cwd=REPO,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("FERRY_")},
                **env,
                "FERRY_DATA_DIR": str(tmp_path / "data-dir"),
                "FERRY_LOG_FORMAT": "json",
                "CLOUD_RUN_TASK_INDEX": str(index),
                "CLOUD_RUN_TASK_COUNT": str(tasks),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(tasks)
    ]
    reports = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=180)
        assert process.returncode == 0, stderr
        reports.append(json.loads(stdout))

    files = [f["uri"] for report in reports for f in report["files"]]
    assert len(files) == len(set(files)) == 12, "each file goes to exactly one task"
    assert all(report["shard"] for report in reports)
    settings = duckdb_settings(tmp_path, data_dir=tmp_path / "data-dir")
    assert count(settings, "parts") == 12 * 50
    rerun = ferry(["run", "parts"], tmp_path, **env, FERRY_DATA_DIR=str(tmp_path / "data-dir"))
    assert json.loads(rerun.stdout)["files_skipped"] == 12
    assert count(settings, "parts") == 12 * 50
