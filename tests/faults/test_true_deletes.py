"""Deletes must be true (issue 19): a delete event is checked against the object before any
row goes, a generation that cannot exist never reaches the ledger, a generation above the
live one is terminal, and a late duplicate after a delete is a no-op read from the ledger."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from fastapi.testclient import TestClient

from app.edges.drain import DrainLimits, drain
from app.edges.server import create_app
from app.ops.service import RunService
from app.run.catalog import load_catalog
from app.run.runner import RunRequest, run
from core.settings import Settings
from tests.emulators import GcsEmulator, PubSubEmulator
from tests.helpers import REPO, duckdb_settings, query, write_catalog
from tests.pubsub_messages import gcs_notification, storage_cloudevent_binary, wrapped_push

FAR_FUTURE = 9_000_000_000_000_000_000


class Bucket:
    def __init__(self, tmp_path: Path, gcs: GcsEmulator, name: str) -> None:
        self.name = name
        self.gcs = gcs
        gcs.client().create_bucket(name)
        write_catalog(
            tmp_path,
            f"""
            pipelines:
              - name: mirrored
                source:
                  uri: "gs://{name}/in/*.csv"
                  columns: {{id: int64}}
                  on_object_delete: delete_rows
                destination: {{table: mirrored}}
            """,
        )
        self.settings: Settings = duckdb_settings(
            tmp_path, storage_emulator_host=gcs.endpoint, gcs_project="test-project"
        )
        self.catalog = load_catalog(self.settings.pipelines_file)

    def upload(self, name: str, ids: range) -> int:
        text = "id\n" + "".join(f"{i}\n" for i in ids)
        bucket = self.gcs.client().bucket(self.name)
        bucket.blob(name).upload_from_string(text)
        blob = bucket.get_blob(name)
        assert blob is not None
        return int(blob.generation)

    def delete(self, name: str) -> None:
        self.gcs.client().bucket(self.name).blob(name).delete()

    def ids(self) -> set[int]:
        return {int(i) for (i,) in query(self.settings, "select id from ferry.mirrored")}

    def load(self) -> None:
        run(RunRequest("mirrored"), self.settings, self.catalog)

    def uri(self, name: str) -> str:
        return f"gs://{self.name}/{name}"


@pytest.fixture
def bucket(tmp_path: Path, gcs_env: GcsEmulator, unique_name: str) -> Bucket:
    return Bucket(tmp_path, gcs_env, unique_name)


@pytest.fixture
def client(bucket: Bucket) -> Iterator[TestClient]:
    with TestClient(create_app(bucket.settings)) as test_client:
        yield test_client


def push(
    client: TestClient, bucket: Bucket, name: str, generation: int, event_type: str
) -> dict[str, Any]:
    data, attributes = gcs_notification(bucket.name, name, generation, event_type=event_type)
    headers, body = wrapped_push(data, attributes, message_id=f"m-{event_type}-{generation}")
    response = client.post("/pubsub", headers=headers, content=body)
    assert response.status_code == 200, response.text
    payload: dict[str, Any] = response.json()
    return payload


def file_statuses(outcome: dict[str, Any]) -> list[str]:
    return [f["status"] for report in outcome["reports"] for f in report["files"]]


def test_a_forged_delete_of_a_live_object_removes_no_rows(
    bucket: Bucket, client: TestClient
) -> None:
    live = bucket.upload("in/a.csv", range(1, 4))
    bucket.load()

    above = push(client, bucket, "in/a.csv", live + 1, "OBJECT_DELETE")
    same = push(client, bucket, "in/a.csv", live, "OBJECT_DELETE")
    headers, body = storage_cloudevent_binary(
        bucket.name, "in/a.csv", live, event_type="google.cloud.storage.object.v1.deleted"
    )
    event = client.post("/", headers=headers, content=body)

    assert above["status"] == "failed_terminal"
    assert above["error"]["code"] == "request_invalid"
    assert "above the object's live generation" in above["error"]["message"]
    assert same["status"] == "skipped"
    assert file_statuses(same) == ["not_deleted"]
    assert event.status_code == 200 and event.json()["status"] == "skipped"
    assert bucket.ids() == {1, 2, 3}


def test_a_generation_that_cannot_exist_is_refused_before_the_ledger(
    bucket: Bucket, client: TestClient
) -> None:
    bucket.upload("in/a.csv", range(1, 4))
    bucket.load()

    forged = push(client, bucket, "in/a.csv", FAR_FUTURE, "OBJECT_DELETE")
    finalize = push(client, bucket, "in/a.csv", FAR_FUTURE, "OBJECT_FINALIZE")
    newer = bucket.upload("in/a.csv", range(1, 6))
    real = push(client, bucket, "in/a.csv", newer, "OBJECT_FINALIZE")
    by_source = client.post(
        "/runs",
        json={"pipeline": "mirrored", "source": bucket.uri("in/a.csv"), "generation": FAR_FUTURE},
    )

    assert forged["status"] == "failed_terminal", forged
    assert "cannot exist" in forged["error"]["message"]
    assert finalize["status"] == "failed_terminal"
    assert real["status"] == "loaded", real
    assert bucket.ids() == {1, 2, 3, 4, 5}
    assert by_source.status_code == 400, by_source.text
    assert by_source.json()["error"]["code"] == "request_invalid"


def _documented_forget_sql() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Forgetting a wrong ledger entry", 1)[1]
    found = re.search(r"```sql\n(.*?)```", section, re.DOTALL)
    assert found, "the README documents the statement"
    return found.group(1)


def test_the_documented_statement_forgets_a_wrong_ledger_entry(
    bucket: Bucket, client: TestClient
) -> None:
    """A wrong `deleted` entry written before the check existed blocks the object; the
    README's statement removes it and the object loads again."""
    live = bucket.upload("in/a.csv", range(1, 4))
    bucket.load()
    uri = bucket.uri("in/a.csv")
    with duckdb.connect(str(bucket.settings.resolved_duckdb_path)) as connection:
        # what a forged delete recorded before the check: the same load, a far generation
        connection.execute(
            "insert into ferry._ferry_objects select pipeline, table_name, uri, ?, run_id, "
            "0, 'deleted', _dlt_load_id from ferry._ferry_objects "
            "where uri = ?",
            [FAR_FUTURE, uri],
        )
        connection.execute("delete from ferry.mirrored")
    blocked = client.post("/runs", json={"pipeline": "mirrored", "source": uri})
    assert [f["status"] for f in blocked.json()["files"]] == ["stale_generation"]

    statement = (
        _documented_forget_sql()
        .replace("'orders'", "'mirrored'")
        .replace("'gs://acme-exports/orders/2026-11-21.csv'", f"'{uri}'")
    )
    with duckdb.connect(str(bucket.settings.resolved_duckdb_path)) as connection:
        connection.execute(statement)
    again = client.post("/runs", json={"pipeline": "mirrored", "source": uri})

    assert again.status_code == 200, again.text
    assert [(f["generation"], f["status"]) for f in again.json()["files"]] == [(live, "loaded")]
    assert bucket.ids() == {1, 2, 3}


def test_a_finalize_above_the_live_generation_is_terminal(
    bucket: Bucket, client: TestClient
) -> None:
    live = bucket.upload("in/a.csv", range(1, 4))

    pushed = push(client, bucket, "in/a.csv", live + 1, "OBJECT_FINALIZE")
    by_source = client.post(
        "/runs",
        json={"pipeline": "mirrored", "source": bucket.uri("in/a.csv"), "generation": live + 1},
    )

    assert pushed["status"] == "failed_terminal", pushed
    assert pushed["error"]["code"] == "source_not_found"
    assert by_source.status_code == 404, by_source.text
    assert "generations only grow" in by_source.json()["error"]["message"]


def test_a_late_duplicate_finalize_after_the_delete_is_already_deleted(
    bucket: Bucket, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    generation = bucket.upload("in/a.csv", range(1, 4))
    assert push(client, bucket, "in/a.csv", generation, "OBJECT_FINALIZE")["status"] == "loaded"
    bucket.delete("in/a.csv")
    assert push(client, bucket, "in/a.csv", generation, "OBJECT_DELETE")["status"] == "loaded"

    with caplog.at_level(logging.INFO):
        late = push(client, bucket, "in/a.csv", generation, "OBJECT_FINALIZE")

    assert late["status"] == "skipped", late
    assert file_statuses(late) == ["already_deleted"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert bucket.ids() == set()


def test_in_drain_a_missing_object_does_not_fail_its_group(
    bucket: Bucket, pubsub_env: PubSubEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """One group: a live object, one deleted before anything loaded it, and a late duplicate
    of one already deleted. One run loads the live one; the missing one alone is dead-
    lettered (here: failed terminal, acked); the late duplicate is already_deleted."""
    project = pubsub_env.project
    topic = pubsub_env.publisher().create_topic(name=f"projects/{project}/topics/{bucket.name}")
    subscription = pubsub_env.subscriber().create_subscription(
        name=f"projects/{project}/subscriptions/{bucket.name}", topic=topic.name
    )
    gone_then = bucket.upload("in/c.csv", range(20, 22))
    bucket.load()
    bucket.delete("in/c.csv")
    run(
        RunRequest(
            "mirrored",
            source_uri=bucket.uri("in/c.csv"),
            generation=gone_then,
            object_deleted=True,
        ),
        bucket.settings,
        bucket.catalog,
    )
    live = bucket.upload("in/a.csv", range(1, 4))
    never = bucket.upload("in/b.csv", range(10, 12))
    bucket.delete("in/b.csv")
    publisher = pubsub_env.publisher()
    for name, generation in (("in/a.csv", live), ("in/b.csv", never), ("in/c.csv", gone_then)):
        data, attributes = gcs_notification(bucket.name, name, generation)
        publisher.publish(topic.name, data, **attributes).result(timeout=60)

    with caplog.at_level(logging.INFO):
        report = drain(
            subscription.name,
            RunService(bucket.settings, bucket.catalog),
            DrainLimits(pull_timeout_seconds=5, lease_seconds=30),
            subscriber=pubsub_env.subscriber(),
        ).to_dict()

    assert len(report["runs"]) == 1, "one run for the group, not one per object"
    files = {f["uri"].rsplit("/", 1)[1]: f["status"] for f in report["runs"][0]["files"]}
    assert files == {"a.csv": "loaded", "b.csv": "not_found", "c.csv": "already_deleted"}
    assert [e["code"] for e in report["errors"]] == ["source_not_found"]
    assert report["acked"] == 3 and report["nacked"] == 0
    assert "one by one" not in caplog.text
    assert bucket.ids() == {1, 2, 3}
