"""Drain mode end to end: notifications waiting on a Pub/Sub pull subscription -> one run
per pipeline -> one load job per table in the BigQuery emulator -> acked after commit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.edges.drain import DrainLimits, drain
from app.ops.service import RunService
from app.run.catalog import Catalog
from core.settings import Settings
from tests.emulators import BigQueryEmulator, GcsEmulator, PubSubEmulator
from tests.helpers import REPO, write_catalog
from tests.pubsub_messages import gcs_notification

pytestmark = pytest.mark.emulators


@dataclass
class DrainStack:
    gcs: GcsEmulator
    bigquery: BigQueryEmulator
    pubsub: PubSubEmulator
    bucket: str
    dataset: str
    topic: str
    subscription: str
    settings: Settings
    catalog: Catalog

    def upload_and_notify(self, count: int, rows_each: int, start: int = 0) -> None:
        bucket = self.gcs.client().bucket(self.bucket)

        def one(n: int) -> tuple[bytes, dict[str, str]]:
            name = f"incoming/part-{n:05d}.csv"
            body = "id,part\n" + "".join(f"{n * rows_each + i},{n}\n" for i in range(rows_each))
            blob = bucket.blob(name)
            blob.upload_from_string(body)
            stored = bucket.get_blob(name)
            assert stored is not None
            return gcs_notification(self.bucket, name, int(stored.generation), size=len(body))

        with ThreadPoolExecutor(8) as pool:
            notifications = list(pool.map(one, range(start, start + count)))
        publisher = self.pubsub.publisher()
        futures = [publisher.publish(self.topic, data, **attrs) for data, attrs in notifications]
        for future in futures:
            future.result(timeout=60)

    def rows(self) -> tuple[int, int]:
        (row,) = (
            self.bigquery.client()
            .query(
                f"select count(*) as n, count(distinct id) as ids "
                f"from `{self.bigquery.project}.{self.dataset}.people`"
            )
            .result()
        )
        return int(row.n), int(row.ids)

    def drain(self, lease_seconds: int = 60) -> dict[str, object]:
        report = drain(
            self.subscription,
            RunService(settings=self.settings, catalog=self.catalog),
            DrainLimits(pull_timeout_seconds=5, lease_seconds=lease_seconds),
            subscriber=self.pubsub.subscriber(),
        )
        return report.to_dict()


@pytest.fixture
def stack(
    tmp_path: Path,
    gcs_env: GcsEmulator,
    bigquery_env: BigQueryEmulator,
    pubsub_env: PubSubEmulator,
    unique_name: str,
) -> Iterator[DrainStack]:
    project = pubsub_env.project
    gcs_env.client().create_bucket(unique_name)
    topic = pubsub_env.publisher().create_topic(name=f"projects/{project}/topics/{unique_name}")
    subscription = pubsub_env.subscriber().create_subscription(
        name=f"projects/{project}/subscriptions/{unique_name}",
        topic=topic.name,
        ack_deadline_seconds=10,
    )
    catalog = write_catalog(
        tmp_path,
        f"""
        pipelines:
          - name: people
            source: {{uri: "gs://{unique_name}/incoming/*.csv", columns: {{id: int64}}}}
            destination: {{table: people}}
        """,
    )
    settings = Settings(
        destination="bigquery",
        bigquery_project=bigquery_env.project,
        bigquery_dataset=unique_name,
        bigquery_emulator_host=bigquery_env.endpoint,
        storage_emulator_host=gcs_env.endpoint,
        gcs_project=project,
        data_dir=tmp_path / "data",
        pipelines_file=tmp_path / "pipelines.yaml",
    )
    yield DrainStack(
        gcs_env,
        bigquery_env,
        pubsub_env,
        unique_name,
        unique_name,
        topic.name,
        subscription.name,
        settings,
        catalog,
    )


def test_500_notifications_make_one_load_per_table_and_every_row_once(
    stack: DrainStack,
) -> None:
    stack.upload_and_notify(500, rows_each=10)

    report = stack.drain()

    assert report["messages"] == 500
    assert report["objects"] == 500
    runs = report["runs"]
    assert isinstance(runs, list) and len(runs) == 1, "one run for the whole batch"
    assert runs[0]["load_jobs"] == {"people": 1}, "one load job per table"
    assert runs[0]["files_loaded"] == 500
    assert report["acked"] == 500
    assert stack.rows() == (5000, 5000)
    again = stack.drain()
    assert again["messages"] == 0, "everything was acknowledged"
    assert stack.rows() == (5000, 5000)


def test_a_crash_before_the_ack_redelivers_without_duplicates(stack: DrainStack) -> None:
    stack.upload_and_notify(20, rows_each=5)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FERRY_")},
        "FERRY_DESTINATION": "bigquery",
        "FERRY_BIGQUERY_PROJECT": stack.bigquery.project,
        "FERRY_BIGQUERY_DATASET": stack.dataset,
        "FERRY_GCS_PROJECT": stack.pubsub.project,
        "FERRY_DATA_DIR": str(stack.settings.data_dir),
        "FERRY_PIPELINES_FILE": str(stack.settings.pipelines_file),
        "FERRY_LOG_FORMAT": "json",
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
        timeout=180,
        check=False,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    assert stack.rows() == (100, 100), "the load committed before the crash"

    deadline = time.monotonic() + 60
    redelivered: dict[str, object] = {"messages": 0}
    while redelivered["messages"] == 0 and time.monotonic() < deadline:
        time.sleep(2)  # the lease (10 s) runs out, then Pub/Sub redelivers
        redelivered = stack.drain(lease_seconds=10)

    assert redelivered["messages"] == 20
    runs = redelivered["runs"]
    assert isinstance(runs, list)
    assert runs[0]["files_skipped"] == 20 and runs[0]["files_loaded"] == 0
    assert redelivered["acked"] == 20
    assert stack.rows() == (100, 100)
    assert json.dumps(stack.drain()["messages"]) == "0"


def test_a_failing_model_after_a_drained_load_is_reported_and_the_group_acked(
    stack: DrainStack, tmp_path: Path
) -> None:
    catalog = write_catalog(
        tmp_path,
        f"""
        pipelines:
          - name: people
            source: {{uri: "gs://{stack.bucket}/incoming/*.csv", columns: {{id: int64}}}}
            destination: {{table: people}}
        models:
          - {{name: broken, sql: "SELECT id, id / (id - id) AS boom FROM people"}}
        """,
    )
    stack.catalog = catalog
    stack.upload_and_notify(3, rows_each=2)

    report = stack.drain()

    # the load committed; a redelivery would find it loaded and build nothing, so: ack
    assert report["acked"] == 3 and report["nacked"] == 0 and report["dead_lettered"] == 0
    errors = report["errors"]
    assert isinstance(errors, list) and [e["code"] for e in errors] == ["model_failed"]
    assert errors[0]["details"]["report"]["models"][0]["status"] == "failed"
    assert stack.rows() == (6, 6)
    assert stack.drain()["messages"] == 0
