"""A drain killed between its load and its ack (issue 14): the loaded batch must still have its
`_ferry_runs` row and its completion event, because record and publish happen before the
ack; the redelivery then loads nothing twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from app.ops.runlog import RunLog
from tests.e2e.test_drain import DrainStack, stack
from tests.helpers import REPO

__all__ = ["stack"]  # the fixture, shared with the drain end-to-end tests

pytestmark = pytest.mark.emulators


def pull_events(stack: DrainStack, subscription: str) -> list[dict[str, Any]]:
    subscriber = stack.pubsub.subscriber()
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        response = subscriber.pull(subscription=subscription, max_messages=50, timeout=5)
        if not response.received_messages:
            if events:
                break
            continue
        for received in response.received_messages:
            events.append(json.loads(received.message.data))
        subscriber.acknowledge(
            subscription=subscription, ack_ids=[r.ack_id for r in response.received_messages]
        )
    return events


def test_a_drain_killed_before_its_ack_has_recorded_and_published_its_run(
    stack: DrainStack,
) -> None:
    project = stack.pubsub.project
    events_topic = (
        stack.pubsub.publisher()
        .create_topic(name=f"projects/{project}/topics/{stack.bucket}-runs")
        .name
    )
    events = (
        stack.pubsub.subscriber()
        .create_subscription(
            name=f"projects/{project}/subscriptions/{stack.bucket}-runs", topic=events_topic
        )
        .name
    )
    stack.upload_and_notify(10, rows_each=5)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FERRY_")},
        "FERRY_DESTINATION": "bigquery",
        "FERRY_BIGQUERY_PROJECT": stack.bigquery.project,
        "FERRY_BIGQUERY_DATASET": stack.dataset,
        "FERRY_GCS_PROJECT": project,
        "FERRY_DATA_DIR": str(stack.settings.data_dir),
        "FERRY_PIPELINES_FILE": str(stack.settings.pipelines_file),
        "FERRY_LOG_FORMAT": "json",
        "FERRY_RUN_EVENTS_TOPIC": events_topic,
        "FERRY_FAILPOINTS": "before_ack",
    }
    crashed = subprocess.run(
        [
            sys.executable,
            str(REPO / "main.py"),
            "drain",
            "--subscription",
            stack.subscription,
            "--lease-seconds",
            "10",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    assert stack.rows() == (50, 50), "the load committed before the kill"

    recorded = RunLog(stack.settings).recent()
    assert [(r["status"], r["rows_loaded"], r["trigger"]) for r in recorded] == [
        ("succeeded", 50, "drain")
    ]
    published = pull_events(stack, events)
    assert [(e["status"], e["rows_loaded"], e["run_id"]) for e in published] == [
        ("succeeded", 50, recorded[0]["run_id"])
    ]

    # the messages come back (never acked); the ledger makes their run a no-op
    deadline = time.monotonic() + 90
    redelivered: dict[str, object] = {"messages": 0}
    while redelivered["messages"] == 0 and time.monotonic() < deadline:
        time.sleep(2)
        redelivered = stack.drain(lease_seconds=10)
    assert redelivered["messages"] == 10 and redelivered["acked"] == 10
    assert stack.rows() == (50, 50)
    statuses = sorted(r["status"] for r in RunLog(stack.settings).recent())
    assert statuses == ["skipped", "succeeded"]


def test_sigterm_abandons_a_drain_run_and_nacks_its_messages(stack: DrainStack) -> None:
    """Cloud Run sends SIGTERM to a drain job on task timeout or cancel: the run in flight is
    abandoned (nothing half visible), its messages are nacked, the exit code is 1 (the task
    is retried) and the next drain loads every row once."""
    stack.upload_and_notify(10, rows_each=5)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FERRY_")},
        "FERRY_DESTINATION": "bigquery",
        "FERRY_BIGQUERY_PROJECT": stack.bigquery.project,
        "FERRY_BIGQUERY_DATASET": stack.dataset,
        "FERRY_GCS_PROJECT": stack.pubsub.project,
        "FERRY_DATA_DIR": str(stack.settings.data_dir),
        "FERRY_PIPELINES_FILE": str(stack.settings.pipelines_file),
        "FERRY_LOG_FORMAT": "json",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "main.py"),
            "drain",
            "--subscription",
            stack.subscription,
            "--lease-seconds",
            "10",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    seen: list[str] = []
    for line in process.stderr:  # SIGTERM once the messages are pulled: the run starts now
        seen.append(line)
        if '"pulled ' in line:
            break
    process.send_signal(signal.SIGTERM)
    stdout, rest = process.communicate(timeout=180)
    stderr = "".join(seen) + rest

    assert process.returncode in (0, 1), stderr[-3000:]  # before: killed by the signal
    drained = json.loads(stdout)
    if process.returncode == 1:  # abandoned before its load committed
        assert drained["nacked"] == 10 and drained["acked"] == 0, drained
        assert drained["errors"][0]["code"] == "shutting_down"
        assert RunLog(stack.settings).recent() == [], "an abandoned run is not recorded"

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        again = stack.drain(lease_seconds=10)
        if again["messages"] == 0 and (process.returncode == 0 or stack.rows()[0]):
            break
        time.sleep(2)
    assert stack.rows() == (50, 50)
