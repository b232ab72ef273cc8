"""Drain mode with OBJECT_DELETE notifications: loads first, then removals, each once."""

from __future__ import annotations

from pathlib import Path

from app.edges.drain import DrainLimits, DrainReport, drain
from app.ops.service import RunService
from tests.emulators import GcsEmulator, PubSubEmulator
from tests.helpers import duckdb_settings, query, write_catalog
from tests.pubsub_messages import gcs_notification


def test_a_drain_loads_then_removes_deleted_objects(
    tmp_path: Path, gcs_env: GcsEmulator, pubsub_env: PubSubEmulator, unique_name: str
) -> None:
    gcs_env.client().create_bucket(unique_name)
    bucket = gcs_env.client().bucket(unique_name)
    project = pubsub_env.project
    topic = pubsub_env.publisher().create_topic(name=f"projects/{project}/topics/{unique_name}")
    subscription = pubsub_env.subscriber().create_subscription(
        name=f"projects/{project}/subscriptions/{unique_name}", topic=topic.name
    )
    catalog = write_catalog(
        tmp_path,
        f"""
        pipelines:
          - name: mirrored
            source:
              uri: "gs://{unique_name}/in/*.csv"
              columns: {{id: int64}}
              on_object_delete: delete_rows
            destination: {{table: mirrored}}
        """,
    )
    settings = duckdb_settings(
        tmp_path, storage_emulator_host=gcs_env.endpoint, gcs_project=project
    )

    def publish(name: str, generation: int, event_type: str) -> None:
        data, attributes = gcs_notification(unique_name, name, generation, event_type=event_type)
        pubsub_env.publisher().publish(topic.name, data, **attributes).result(timeout=30)

    def drained() -> DrainReport:
        limits = DrainLimits(pull_timeout_seconds=5, lease_seconds=60)
        service = RunService(settings=settings, catalog=catalog)
        return drain(subscription.name, service, limits, subscriber=pubsub_env.subscriber())

    generations = {}
    for name, ids in (("in/a.csv", range(1, 4)), ("in/b.csv", range(10, 12))):
        bucket.blob(name).upload_from_string("id\n" + "".join(f"{i}\n" for i in ids))
        blob = bucket.get_blob(name)
        assert blob is not None
        generations[name] = int(blob.generation)
        publish(name, generations[name], "OBJECT_FINALIZE")
    drained()
    bucket.blob("in/a.csv").delete()
    publish("in/a.csv", generations["in/a.csv"], "OBJECT_DELETE")
    publish("in/a.csv", generations["in/a.csv"], "OBJECT_DELETE")  # a duplicate

    report = drained()

    loaded = {int(i) for (i,) in query(settings, "select id from ferry.mirrored")}
    assert loaded == {10, 11}
    assert report.acked == 2, "the duplicate is acknowledged too"
    statuses = [f.status for run in report.runs for f in run.files]
    assert statuses == ["deleted"], "two notifications of one deletion make one removal"
