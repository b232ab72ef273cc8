"""A job killed (SIGKILL) while it streams a big run's rows into DuckDB, then run again:
killed mid-read, DuckDB rolls the open transaction back; killed right after the rows
committed but before dlt's load, the rerun merges over them. Either way the table ends
with every source row once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, count, duckdb_settings, query, write_catalog
from tests.run.test_streamed_rows import PIPELINE, ROWS_PER_FILE, write_events


def job(tmp_path: Path, failpoint: str = "") -> subprocess.CompletedProcess[str]:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("FERRY_",))
    }
    environment |= {
        "FERRY_PIPELINES_FILE": str(tmp_path / "pipelines.yaml"),
        "FERRY_DATA_DIR": str(tmp_path / "data"),
        "FERRY_STREAMED_APPEND_BYTES": "0",
        "FERRY_BATCH_BYTES": str(64 * 1024),
        "FERRY_FAILPOINTS": failpoint,
    }
    return subprocess.run(
        [sys.executable, str(REPO / "main.py"), "run", "events"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("failpoint", ["after_first_batch", "after_streamed_commit"])
def test_killed_streamed_job_reruns_to_every_row_once(tmp_path: Path, failpoint: str) -> None:
    write_catalog(tmp_path, PIPELINE)
    (tmp_path / "data").mkdir()
    for n in range(3):
        write_events(tmp_path / "data", f"{n}.csv", n * ROWS_PER_FILE)
    settings = duckdb_settings(tmp_path)

    killed = job(tmp_path, failpoint)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    if failpoint == "after_first_batch":
        assert count(settings, "events") == 0  # the open transaction died with the process

    rerun = job(tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    ids = [row[0] for row in query(settings, "select id from ferry.events")]
    expected = sum(1 for n in range(3 * ROWS_PER_FILE) if n % 7 + 0.5 >= 1)
    assert len(ids) == len(set(ids)) == expected
