"""Run events on the Pub/Sub emulator: every run (HTTP or CLI) publishes its completion or
failure, and a topic that cannot be reached never fails the run. And the run log on the
BigQuery emulator (the production SQL dialect)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.edges.server import create_app
from app.ops.runlog import RunLog
from core.settings import Settings
from tests.emulators import BigQueryEmulator, PubSubEmulator
from tests.helpers import REPO, count, duckdb_settings, write_catalog

pytestmark = pytest.mark.emulators


@dataclass
class EventStack:
    pubsub: PubSubEmulator
    topic: str
    subscription: str
    settings: Settings

    def pull(
        self, expected: int, timeout: float = 30.0
    ) -> list[tuple[dict[str, Any], dict[str, str]]]:
        """Exactly `expected` events (data, attributes), acknowledged."""
        subscriber = self.pubsub.subscriber()
        events: list[tuple[dict[str, Any], dict[str, str]]] = []
        for _ in range(10):
            response = subscriber.pull(
                subscription=self.subscription, max_messages=10, timeout=timeout
            )
            for received in response.received_messages:
                message = received.message
                events.append((json.loads(message.data), dict(message.attributes)))
            if response.received_messages:
                subscriber.acknowledge(
                    subscription=self.subscription,
                    ack_ids=[r.ack_id for r in response.received_messages],
                )
            if len(events) >= expected:
                break
        assert len(events) == expected, events
        return sorted(events, key=lambda event: str(event[0]["pipeline"]))


@pytest.fixture
def stack(tmp_path: Path, pubsub_env: PubSubEmulator, unique_name: str) -> EventStack:
    project = pubsub_env.project
    topic = pubsub_env.publisher().create_topic(name=f"projects/{project}/topics/{unique_name}")
    subscription = pubsub_env.subscriber().create_subscription(
        name=f"projects/{project}/subscriptions/{unique_name}", topic=topic.name
    )
    (tmp_path / "data" / "people").mkdir(parents=True)
    (tmp_path / "data" / "broken").mkdir()
    (tmp_path / "data" / "people" / "a.csv").write_text("id,name\n1,a\n2,b\n", encoding="utf-8")
    (tmp_path / "data" / "broken" / "b.csv").write_text("id,name\n1,a,x\n", encoding="utf-8")
    write_catalog(
        tmp_path,
        """
        pipelines:
          - {name: people, source: {uri: "data/people/*.csv"}, destination: {table: people}}
          - {name: broken, source: {uri: "data/broken/*.csv"}, destination: {table: broken}}
        """,
    )
    settings = duckdb_settings(tmp_path, run_events_topic=topic.name)
    return EventStack(pubsub_env, topic.name, subscription.name, settings)


@pytest.fixture
def client(stack: EventStack) -> Iterator[TestClient]:
    with TestClient(create_app(stack.settings)) as test_client:
        yield test_client


def test_success_and_failure_each_publish_one_event(stack: EventStack, client: TestClient) -> None:
    ok = client.post("/runs", json={"pipeline": "people"})
    bad = client.post("/runs", json={"pipeline": "broken"})
    assert (ok.status_code, bad.status_code) == (200, 422), "events never change the answer"

    (failed, failed_attrs), (succeeded, succeeded_attrs) = stack.pull(expected=2)

    assert succeeded["status"] == "succeeded"
    assert succeeded["run_id"] == ok.json()["run_id"]
    assert succeeded["trigger"] == "http"
    assert succeeded["tables"] == {"people": 2}
    assert succeeded["rows_loaded"] == 2
    assert succeeded["rows_rejected"] == 0
    assert succeeded["error"] is None
    assert succeeded["load_ids"] == ok.json()["load_ids"]
    assert succeeded["seconds"]["total"] > 0
    assert succeeded["started_at"] < succeeded["finished_at"]
    assert succeeded_attrs == {
        "pipeline": "people",
        "status": "succeeded",
        "run_id": ok.json()["run_id"],
    }

    assert failed["status"] == "failed"
    assert failed["run_id"] == bad.json()["error"]["run_id"]
    assert failed["tables"] == {}
    assert failed["rows_loaded"] == 0
    assert set(failed["error"]) == {"code", "message", "recovery"}
    assert failed["error"]["code"] == "bad_data"
    assert failed["error"]["recovery"] == "terminal"
    assert "b.csv" in failed["error"]["message"]
    assert failed_attrs["status"] == "failed"
    assert failed_attrs["error_code"] == "bad_data"


def test_a_replayed_idempotency_key_publishes_nothing_new(
    stack: EventStack, client: TestClient
) -> None:
    for _ in range(2):
        response = client.post("/runs", json={"pipeline": "people", "idempotency_key": "k"})
        assert response.status_code == 200
    [(event, _)] = stack.pull(expected=1)
    assert event["run_id"] == response.json()["run_id"]


def test_a_missing_topic_never_fails_the_run(
    stack: EventStack, caplog: pytest.LogCaptureFixture
) -> None:
    project = stack.pubsub.project
    missing = stack.settings.model_copy(
        update={"run_events_topic": f"projects/{project}/topics/does-not-exist"}
    )
    with TestClient(create_app(missing)) as client:
        response = client.post("/runs", json={"pipeline": "people"})
    assert response.status_code == 200, response.text
    assert count(missing, "people") == 2
    assert "could not publish the succeeded event" in caplog.text


def test_the_job_cli_publishes_its_run(stack: EventStack) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FERRY_", "BIGQUERY_", "STORAGE_"))
    }
    settings = stack.settings
    env |= {
        "FERRY_DESTINATION": "duckdb",
        "FERRY_DATA_DIR": str(settings.data_dir),
        "FERRY_PIPELINES_FILE": str(settings.pipelines_file),
        "FERRY_RUN_EVENTS_TOPIC": stack.topic,
        "FERRY_LOG_FORMAT": "json",
    }
    argv = [sys.executable, str(REPO / "main.py"), "run"]
    done = subprocess.run(
        [*argv, "people"], cwd=REPO, env=env, capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    failed = subprocess.run(
        [*argv, "broken"], cwd=REPO, env=env, capture_output=True, timeout=120, check=False
    )
    assert failed.returncode == 2, failed.stderr.decode()

    (bad, _), (ok, _) = stack.pull(expected=2)
    assert (ok["status"], ok["trigger"], ok["tables"]) == ("succeeded", "cli", {"people": 2})
    assert (bad["status"], bad["error"]["code"]) == ("failed", "bad_data")
    # the CLI's runs are in the run log too
    with TestClient(create_app(settings)) as client:
        runs = client.get("/runs").json()["runs"]
    assert sorted((r["pipeline"], r["status"]) for r in runs) == [
        ("broken", "failed"),
        ("people", "succeeded"),
    ]


def recorded_report(i: int, pipeline: str, status: str) -> dict[str, Any]:
    failed = status == "failed"
    return {
        "run_id": f"20261121T10000{i}-0000000{i}",
        "pipeline": pipeline,
        "status": status,
        "trigger": "http",
        "started_at": f"2026-11-21T10:00:0{i}+00:00",
        "finished_at": f"2026-11-21T10:00:0{i}.5+00:00",
        "tables": {} if failed else {pipeline: i},
        "rows_loaded": 0 if failed else i,
        "seconds": {"total": 0.5},
        "error": {"code": "bad_data", "message": "x", "recovery": "terminal"} if failed else None,
    }


def test_the_run_log_on_bigquery(
    tmp_path: Path, bigquery_env: BigQueryEmulator, unique_name: str
) -> None:
    settings = Settings(
        destination="bigquery",
        bigquery_project=bigquery_env.project,
        bigquery_dataset=unique_name,
        bigquery_emulator_host=bigquery_env.endpoint,
        data_dir=tmp_path / "data",
        pipelines_file=tmp_path / "pipelines.yaml",
    )
    log = RunLog(settings)
    assert log.recent() == [], "no dataset yet: an empty history, not an error"
    first = recorded_report(1, "people", "succeeded")
    second = recorded_report(2, "broken", "failed")
    assert log.record(first)
    assert log.record(second)
    assert log.record(second), "recording again is a merge, not a second row"
    assert [r["run_id"] for r in log.recent()] == [second["run_id"], first["run_id"]]
    assert [r["run_id"] for r in log.recent(pipeline="people")] == [first["run_id"]]
    assert [r["run_id"] for r in log.recent(status="failed")] == [second["run_id"]]
    assert log.get(second["run_id"]) == second
    assert log.get("nope") is None
