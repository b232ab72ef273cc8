"""The emulator fixtures work with the official clients and with dlt's bigquery destination."""

from __future__ import annotations

import base64
import json
import queue
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dlt
import pytest
from google.cloud import bigquery
from google.cloud.pubsub_v1.types import PushConfig
from google.oauth2.credentials import Credentials

from tests.emulators import BigQueryEmulator, GcsEmulator, PubSubEmulator

pytestmark = pytest.mark.emulators


def test_gcs_upload_list_and_streamed_download(gcs_emulator: GcsEmulator, unique_name: str) -> None:
    client = gcs_emulator.client()
    bucket = client.create_bucket(unique_name)
    payload = b"".join(f"row {i:07d}\n".encode() for i in range(60_000))  # ~720 kB
    bucket.blob("in/data.csv").upload_from_string(payload, content_type="text/csv")
    bucket.blob("other/skip.csv").upload_from_string(b"x")

    listed = list(client.list_blobs(unique_name, prefix="in/"))

    assert [blob.name for blob in listed] == ["in/data.csv"]
    assert listed[0].size == len(payload)
    assert isinstance(listed[0].generation, int) and listed[0].generation > 0
    chunks: list[bytes] = []
    with bucket.blob("in/data.csv").open("rb", chunk_size=256 * 1024) as reader:
        while chunk := reader.read(100_000):
            chunks.append(chunk)
    assert len(chunks) > 1
    assert b"".join(chunks) == payload


def test_bigquery_dataset_table_insert_and_count(
    bigquery_emulator: BigQueryEmulator, unique_name: str
) -> None:
    client = bigquery_emulator.client()
    table_id = f"{bigquery_emulator.project}.{unique_name}.events"
    client.create_dataset(unique_name)
    client.create_table(
        bigquery.Table(
            table_id,
            schema=[
                bigquery.SchemaField("id", "INT64"),
                bigquery.SchemaField("name", "STRING"),
            ],
        )
    )

    client.query(f"INSERT INTO `{table_id}` (id, name) VALUES (1, 'a'), (2, 'b')").result()

    assert _count_rows(client, table_id) == 2


def test_pubsub_publish_pull_ack(pubsub_emulator: PubSubEmulator, unique_name: str) -> None:
    publisher = pubsub_emulator.publisher()
    subscriber = pubsub_emulator.subscriber()
    topic = publisher.topic_path(pubsub_emulator.project, unique_name)
    subscription = subscriber.subscription_path(pubsub_emulator.project, unique_name)
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic)

    publisher.publish(topic, b"hello", bucketId="b1").result(timeout=30)
    response = subscriber.pull(subscription=subscription, max_messages=10, timeout=30)

    assert len(response.received_messages) == 1
    message = response.received_messages[0].message
    assert message.data == b"hello"
    assert dict(message.attributes) == {"bucketId": "b1"}
    subscriber.acknowledge(
        subscription=subscription, ack_ids=[response.received_messages[0].ack_id]
    )
    again = subscriber.pull(subscription=subscription, max_messages=10, timeout=5)
    assert again.received_messages == []
    subscriber.close()


class _PushReceiver(BaseHTTPRequestHandler):
    received: queue.Queue[dict[str, Any]]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.received.put({"path": self.path, "body": json.loads(self.rfile.read(length))})
        self.send_response(204)  # any 2xx is an ack
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def push_endpoint() -> Iterator[tuple[str, queue.Queue[dict[str, Any]]]]:
    received: queue.Queue[dict[str, Any]] = queue.Queue()
    handler = type("Handler", (_PushReceiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/pubsub/push", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_pubsub_push_subscription_delivers_envelope(
    pubsub_emulator: PubSubEmulator,
    unique_name: str,
    push_endpoint: tuple[str, queue.Queue[dict[str, Any]]],
) -> None:
    url, received = push_endpoint
    publisher = pubsub_emulator.publisher()
    subscriber = pubsub_emulator.subscriber()
    topic = publisher.topic_path(pubsub_emulator.project, unique_name)
    subscription = subscriber.subscription_path(pubsub_emulator.project, unique_name)
    publisher.create_topic(name=topic)
    subscriber.create_subscription(
        name=subscription,
        topic=topic,
        push_config=PushConfig(push_endpoint=url),
    )
    body = json.dumps({"name": "in/data.csv", "bucket": "b1"}).encode()

    publisher.publish(topic, body, eventType="OBJECT_FINALIZE", objectId="in/data.csv").result(
        timeout=30
    )
    delivery = received.get(timeout=30)

    assert delivery["path"] == "/pubsub/push"
    envelope = delivery["body"]
    assert envelope["subscription"] == subscription
    assert base64.b64decode(envelope["message"]["data"]) == body
    assert envelope["message"]["attributes"] == {
        "eventType": "OBJECT_FINALIZE",
        "objectId": "in/data.csv",
    }
    assert envelope["message"]["messageId"]
    subscriber.close()


def test_dlt_bigquery_destination_loads_into_emulator(
    bigquery_env: BigQueryEmulator,
    unique_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Emulator-only: it cannot read gzip load files.
    monkeypatch.setenv("DATA_WRITER__DISABLE_COMPRESSION", "true")
    # dlt rejects AnonymousCredentials; a bare OAuth token is never refreshed.
    destination = dlt.destinations.bigquery(
        credentials=Credentials(token="emulator"),
        project_id=bigquery_env.project,  # the native token carries no project
        location="US",
    )
    pipeline = dlt.pipeline(
        pipeline_name=unique_name,
        pipelines_dir=str(tmp_path),
        destination=destination,
        dataset_name=unique_name,
    )
    rows = [{"id": i, "name": f"n{i}"} for i in range(5)]

    info = pipeline.run(rows, table_name="items")

    assert not info.has_failed_jobs
    table_id = f"{bigquery_env.project}.{unique_name}.items"
    assert _count_rows(bigquery_env.client(), table_id) == 5


def _count_rows(client: bigquery.Client, table_id: str) -> int:
    # A query, not the load job's output_rows: the emulator can report those wrong.
    rows = list(client.query(f"SELECT COUNT(*) AS n FROM `{table_id}`").result())
    return int(rows[0]["n"])
