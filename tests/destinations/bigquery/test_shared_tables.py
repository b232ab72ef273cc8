"""Tables every pipeline of a dataset shares (the object ledger, the model records) take no
DML per push on BigQuery: a merge per push there queues behind every other pipeline's (2
running, 20 queued per table), and rows in the streaming buffer cannot be changed. A CDC push
still lands its changes exactly, a redelivered object is still skipped, and an orchestrator's
retry with the same idempotency key is answered with the first run, by another instance too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

from tests.bqsim import ZERO_LATENCY, run_bqsim
from tests.emulators import BigQueryEmulator
from tests.service_process import run_service

PIPELINE = """
pipelines:
  - name: cdc
    source: {{uri: "{folder}/*.csv", columns: {{id: int64, seq: int64}}}}
    destination:
      table: accounts
      write_disposition: merge
      primary_key: [id]
      sequence: seq
      cdc: {{operation_column: op, delete_values: [d], deletes: hard}}
models:
  - {{name: balances, sql: "SELECT id, name FROM accounts"}}
  - {{name: names, materialization: incremental, unique_key: [id],
      sql: "SELECT id, UPPER(name) AS name FROM accounts"}}
"""
SHARED = ("_ferry_objects", "_ferry_models", "_ferry_model_loads", "_ferry_idempotency")
DML = ("INSERT", "UPDATE", "DELETE", "MERGE", "TRUNCATE")


def dml_on_shared_tables(log: Path, dataset: str) -> list[str]:
    """The DML statements of the proxy's call log whose target is one of SHARED."""
    found = []
    for line in log.read_text(encoding="utf-8").splitlines():
        record: dict[str, Any] = json.loads(line)
        for statement in record.get("statements", []):
            verb, _, table = statement.partition(" ")
            if verb in DML and table in {f"{dataset}.{name}" for name in SHARED}:
                found.append(statement)
    return found


def test_cdc_pushes_land_exactly_skip_a_redelivery_and_merge_nothing_into_shared_tables(
    tmp_path: Path, bigquery_emulator: BigQueryEmulator, unique_name: str
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text(PIPELINE.format(folder=folder), encoding="utf-8")
    first_log, later_log = tmp_path / "first.jsonl", tmp_path / "later.jsonl"
    env = {
        "FERRY_PIPELINES_FILE": str(pipelines),
        "FERRY_DATA_DIR": str(tmp_path / "data"),
        "FERRY_BIGQUERY_PROJECT": bigquery_emulator.project,
        "FERRY_BIGQUERY_DATASET": unique_name,
        "FERRY_RUN_LOG": "false",
    }

    def push(
        service_url: str, name: str, text: str | None = None, key: str | None = None
    ) -> dict[str, Any]:
        if text is not None:
            (folder / name).write_text(text, encoding="utf-8")
        answer = requests.post(
            f"{service_url}/runs",
            json={"pipeline": "cdc", "source": str(folder / name)},
            headers={"Idempotency-Key": key} if key else {},
            timeout=300,
        )
        assert answer.status_code == 200, answer.text
        report: dict[str, Any] = answer.json()
        assert report["status"] in ("succeeded", "skipped"), report
        return report

    # the first push of a fresh dataset creates the shared tables (the model records' first
    # rows go in with the table's one INSERT); every push after it is what a busy dataset sees
    with (
        run_bqsim(
            bigquery_emulator, {"latency_ms": ZERO_LATENCY}, tmp_path, log=first_log
        ) as proxy,
        run_service(
            {**env, "BIGQUERY_EMULATOR_HOST": proxy.endpoint}, tmp_path / "first.log"
        ) as service,
    ):
        push(
            service.base_url,
            "a.csv",
            "id,seq,op,name\n1,1,u,ann\n2,1,u,bob\n3,1,u,cy\n",
            key="first",
        )
    with (
        run_bqsim(
            bigquery_emulator, {"latency_ms": ZERO_LATENCY}, tmp_path, log=later_log
        ) as proxy,
        run_service(
            {**env, "BIGQUERY_EMULATOR_HOST": proxy.endpoint}, tmp_path / "later.log"
        ) as service,
    ):
        changed = push(
            service.base_url, "b.csv", "id,seq,op,name\n1,2,u,al\n2,2,d,\n4,1,u,di\n", key="b"
        )
        again = push(service.base_url, "b.csv")  # the same object, delivered again
    # the orchestrator retries with the same key and reaches another (new) instance
    with run_service(
        {**env, "BIGQUERY_EMULATOR_HOST": bigquery_emulator.endpoint}, tmp_path / "third.log"
    ) as service:
        replayed = push(service.base_url, "b.csv", key="b")

    client = bigquery_emulator.client()
    dataset = f"{bigquery_emulator.project}.{unique_name}"
    rows = client.query(f"select id, name from `{dataset}.accounts` order by id").result()
    assert [(row.id, row.name) for row in rows] == [(1, "al"), (3, "cy"), (4, "di")]
    names = client.query(f"select id, name from `{dataset}.names` order by id").result()
    assert [(row.id, row.name) for row in names] == [(1, "AL"), (3, "CY"), (4, "DI")]
    assert changed["changes"]["applied"] == 3, changed
    assert again["rows_loaded"] == 0, again
    assert [entry["status"] for entry in again["files"]] == ["already_loaded"], again
    assert replayed.get("replayed") is True, replayed
    assert (replayed["run_id"], replayed["rows_loaded"]) == (
        changed["run_id"],
        changed["rows_loaded"],
    )
    assert dml_on_shared_tables(later_log, unique_name) == [], "no DML per push on shared tables"
    # once per dataset: the model records' first rows go in with the table's INSERT, and the
    # first idempotency row creates its table through dlt's merge load (delete-insert)
    first = dml_on_shared_tables(first_log, unique_name)
    creating = [f"{verb} {unique_name}._ferry_idempotency" for verb in ("DELETE", "INSERT")]
    assert sorted(s for s in first if s not in creating) == sorted(
        f"INSERT {unique_name}.{name}" for name in ("_ferry_models", "_ferry_model_loads")
    ), first
