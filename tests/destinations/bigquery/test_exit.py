"""A process that gave up a BigQuery pipeline exits cleanly, even with its endpoint gone."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = """
import os
from pathlib import Path

from app.destinations.pipeline import kept_pipeline_for
from app.run.request import new_run_id
from app.run.runner import RunRequest, run
from core.settings import Settings
from tests.helpers import duckdb_settings, write_catalog

folder = Path({folder!r})
(folder / "data").mkdir()
(folder / "data" / "a.csv").write_text("id,amount\\n1,2.5\\n", encoding="utf-8")
catalog = write_catalog(folder, {pipelines!r})
os.chdir(folder)
# a DuckDB run first: its bindings are what report objects still referenced at exit
report = run(RunRequest("orders", source_uri="data/a.csv"), duckdb_settings(folder), catalog)
print(report.rows_loaded)

os.environ["BIGQUERY_EMULATOR_HOST"] = "http://127.0.0.1:{port}"
settings = Settings(
    destination="bigquery",
    bigquery_project="ferry-test",
    data_dir=folder / "bigquery",
    pipelines_file=folder / "pipelines.yaml",
    storage_emulator_host=None,
)
try:
    with kept_pipeline_for("orders", settings, new_run_id()):
        raise RuntimeError("the run failed")
except RuntimeError:
    print("gave up", flush=True)
"""

PIPELINES = """
pipelines:
  - name: orders
    source:
      uri: data/*.csv
      columns: {id: int64, amount: float64}
    destination:
      table: orders
"""


def a_closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_failed_run_against_a_gone_endpoint_leaves_nothing_running_at_exit(
    tmp_path: Path,
) -> None:
    # the failed run's kept staging dataset is dropped on a thread of its own; against an
    # unreachable endpoint the drop used to retry for ten minutes, so the thread was still
    # inside the client at exit and DuckDB's bindings printed `nanobind: leaked …`
    script = SCRIPT.format(port=a_closed_port(), folder=str(tmp_path), pipelines=PIPELINES)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[3],
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "gave", "up"]
    assert "leaked" not in done.stderr, done.stderr[-2000:]
