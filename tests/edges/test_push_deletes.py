"""OBJECT_DELETE notifications and `deleted` CloudEvents: a pipeline with
`on_object_delete: delete_rows` removes the deleted generation's rows, once; an overwrite's
delete and pipelines that did not ask are left alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.edges.server import create_app
from app.run.catalog import load_catalog
from app.run.runner import RunRequest, run
from core.settings import Settings
from tests.emulators import GcsEmulator
from tests.helpers import duckdb_settings, query, write_catalog
from tests.pubsub_messages import gcs_notification, storage_cloudevent_binary, wrapped_push

DELETED = "google.cloud.storage.object.v1.deleted"


class Bucket:
    def __init__(self, tmp_path: Path, gcs: GcsEmulator, name: str) -> None:
        self.name = name
        self.gcs = gcs
        gcs.client().create_bucket(name)
        write_catalog(
            tmp_path,
            f"""
            pipelines:
              - name: kept
                source: {{uri: "gs://{name}/in/*.csv", columns: {{id: int64}}}}
                destination: {{table: kept}}
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

    def upload(self, name: str, ids: range) -> int:
        text = "id\n" + "".join(f"{i}\n" for i in ids)
        bucket = self.gcs.client().bucket(self.name)
        bucket.blob(name).upload_from_string(text)
        blob = bucket.get_blob(name)
        assert blob is not None
        return int(blob.generation)

    def delete(self, name: str) -> None:
        self.gcs.client().bucket(self.name).blob(name).delete()

    def ids(self, table: str) -> set[int]:
        return {int(i) for (i,) in query(self.settings, f"select id from ferry.{table}")}


@pytest.fixture
def bucket(tmp_path: Path, gcs_env: GcsEmulator, unique_name: str) -> Bucket:
    return Bucket(tmp_path, gcs_env, unique_name)


@pytest.fixture
def client(bucket: Bucket) -> Iterator[TestClient]:
    with TestClient(create_app(bucket.settings)) as test_client:
        yield test_client


def push_delete(
    client: TestClient, bucket: Bucket, name: str, generation: int, **attributes: str
) -> dict[str, object]:
    data, base = gcs_notification(bucket.name, name, generation, event_type="OBJECT_DELETE")
    headers, body = wrapped_push(data, {**base, **attributes}, message_id=f"d-{generation}")
    response = client.post("/pubsub", headers=headers, content=body)
    assert response.status_code == 200, response.text
    payload: dict[str, object] = response.json()
    return payload


def load_both(bucket: Bucket) -> tuple[int, int]:
    """Both objects loaded by both pipelines; their generations."""
    a = bucket.upload("in/a.csv", range(1, 4))
    b = bucket.upload("in/b.csv", range(10, 12))
    catalog = load_catalog(bucket.settings.pipelines_file)
    for pipeline in ("kept", "mirrored"):
        run(RunRequest(pipeline), bucket.settings, catalog)
    return a, b


def test_object_delete_removes_the_rows_once_for_pipelines_that_ask(
    bucket: Bucket, client: TestClient
) -> None:
    generation, _ = load_both(bucket)
    bucket.delete("in/a.csv")

    first = push_delete(client, bucket, "in/a.csv", generation)
    again = push_delete(client, bucket, "in/a.csv", generation)

    assert first["status"] == "loaded"
    assert again["status"] == "skipped"
    assert bucket.ids("mirrored") == {10, 11}
    assert bucket.ids("kept") == {1, 2, 3, 10, 11}, "the default ignores deletes"


def test_the_delete_an_overwrite_sends_is_ignored(bucket: Bucket, client: TestClient) -> None:
    generation, _ = load_both(bucket)
    newer = bucket.upload("in/a.csv", range(1, 3))

    outcome = push_delete(
        client, bucket, "in/a.csv", generation, overwrittenByGeneration=str(newer)
    )

    assert outcome["status"] == "ignored"
    assert bucket.ids("mirrored") == {1, 2, 3, 10, 11}


def test_a_deleted_cloudevent_removes_the_rows(bucket: Bucket, client: TestClient) -> None:
    _, generation = load_both(bucket)
    bucket.delete("in/b.csv")
    headers, body = storage_cloudevent_binary(
        bucket.name, "in/b.csv", generation, event_type=DELETED
    )

    response = client.post("/", headers=headers, content=body)

    assert response.status_code == 200, response.text
    assert bucket.ids("mirrored") == {1, 2, 3}
