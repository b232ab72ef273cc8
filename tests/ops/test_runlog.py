"""app/ops/runlog.py: one `_ferry_runs` row per run (merged on run_id), read back newest first
and filtered; the row's typed columns come from the report; on BigQuery a skipped run's row
waits for the next write."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import requests

from app.ops.runlog import RunLog, run_row
from tests.bqsim import ZERO_LATENCY, run_bqsim
from tests.emulators import BigQueryEmulator, GcsEmulator
from tests.helpers import duckdb_settings
from tests.pubsub_messages import gcs_notification, wrapped_push
from tests.service_process import run_service


def report(run_id: str, status: str, started_at: str, **extra: Any) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "pipeline": "people",
        "status": status,
        "trigger": "http",
        "started_at": started_at,
        "seconds": {"total": 1.25},
        **extra,
    }


def test_a_row_carries_the_report_and_its_error_code() -> None:
    failed = report("r-1", "failed", "2026-12-01T00:00:00+00:00", error={"code": "bad_data"})
    row = run_row(failed)
    assert (row["run_id"], row["status"], row["error_code"]) == ("r-1", "failed", "bad_data")
    assert (row["seconds_total"], row["rows_loaded"]) == (1.25, 0)


def test_runs_are_read_back_newest_first_filtered_and_merged(tmp_path: Path) -> None:
    log = RunLog(duckdb_settings(tmp_path))
    assert log.record(report("r-1", "succeeded", "2026-12-01T00:00:00+00:00"))
    assert log.record(report("r-2", "failed", "2026-12-02T00:00:00+00:00"))
    assert log.record(report("r-2", "failed", "2026-12-02T00:00:00+00:00")), "a merge"
    assert [r["run_id"] for r in log.recent()] == ["r-2", "r-1"]
    assert [r["run_id"] for r in log.recent(status="succeeded")] == ["r-1"]
    assert log.get("r-2") is not None and log.get("r-3") is None


PUSHED_PIPELINE = """
pipelines:
  - name: people
    source: {{uri: "gs://{bucket}/in/*.csv", columns: {{id: int64}}}}
    destination: {{table: people}}
"""


def test_a_redelivered_push_on_bigquery_is_one_call_and_its_run_still_listed(
    tmp_path: Path,
    bigquery_emulator: BigQueryEmulator,
    gcs_emulator: GcsEmulator,
    unique_name: str,
) -> None:
    """The redelivery's only BigQuery call is its ledger read: its skipped run's row waits for
    the next write, here the read of `GET /runs`, which lists it, or the shutdown."""
    bucket = gcs_emulator.client().create_bucket(unique_name)
    bucket.blob("in/a.csv").upload_from_string("id,name\n1,a\n2,b\n")
    stored = bucket.get_blob("in/a.csv")
    assert stored is not None
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text(PUSHED_PIPELINE.format(bucket=unique_name), encoding="utf-8")
    data, attributes = gcs_notification(unique_name, "in/a.csv", int(stored.generation))
    with run_bqsim(bigquery_emulator, {"latency_ms": ZERO_LATENCY}, tmp_path) as proxy:
        env = {
            "FERRY_PIPELINES_FILE": str(pipelines),
            "FERRY_DATA_DIR": str(tmp_path / "data"),
            "FERRY_BIGQUERY_PROJECT": bigquery_emulator.project,
            "FERRY_BIGQUERY_DATASET": unique_name,
            "FERRY_GCS_PROJECT": bigquery_emulator.project,
            "BIGQUERY_EMULATOR_HOST": proxy.endpoint,
            **gcs_emulator.env,
        }
        with run_service(env, tmp_path / "service.log") as service:

            def push(message_id: str) -> dict[str, Any]:
                headers, body = wrapped_push(data, attributes, message_id=message_id)
                answer = requests.post(
                    f"{service.base_url}/pubsub", headers=headers, data=body, timeout=300
                )
                assert answer.status_code == 200, answer.text
                return dict(answer.json())

            assert push("m-1")["status"] == "loaded"
            before = Counter(proxy.stats()["counters"])
            assert push("m-2")["status"] == "skipped"
            calls = Counter(proxy.stats()["counters"]) - before
            listed = requests.get(f"{service.base_url}/runs", timeout=60).json()["runs"]
            assert push("m-3")["status"] == "skipped"  # waiting at shutdown: written then

        recorded = bigquery_emulator.client().query(
            f"select run_id, status from `{bigquery_emulator.project}.{unique_name}._ferry_runs`"
        )
        statuses = {row.run_id: row.status for row in recorded.result()}

    assert calls == Counter({"jobs.query": 1}), "the ledger read, and no run-log row"
    assert [run["status"] for run in listed] == ["skipped", "succeeded"]
    assert sorted(statuses.values()) == ["skipped", "skipped", "succeeded"]
