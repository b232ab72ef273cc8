"""A push delivery whose load commits but whose model fails: acknowledged (200), not
dead-lettered: a redelivery would find the object loaded and build nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.edges.server import create_app
from tests.emulators import GcsEmulator
from tests.helpers import count, duckdb_settings, query, write_catalog
from tests.pubsub_messages import gcs_notification, wrapped_push

pytestmark = pytest.mark.emulators


def test_a_failing_model_after_a_pushed_load_is_acknowledged_with_its_error(
    tmp_path: Path, gcs_env: GcsEmulator, unique_name: str
) -> None:
    gcs_env.client().create_bucket(unique_name)
    blob = gcs_env.client().bucket(unique_name).blob("incoming/a.csv")
    blob.upload_from_string("id,name\n1,ann\n2,bob\n")
    stored = gcs_env.client().bucket(unique_name).get_blob("incoming/a.csv")
    assert stored is not None
    write_catalog(
        tmp_path,
        f"""
        pipelines:
          - {{name: people, source: {{uri: "gs://{unique_name}/incoming/*.csv"}},
              destination: {{table: people}}}}
        models:
          - {{name: names, sql: "SELECT id, UPPER(name) AS name FROM people"}}
          - {{name: numbers, sql: "SELECT id, CAST(name AS INT64) AS n FROM people"}}
        """,
    )
    settings = duckdb_settings(
        tmp_path, storage_emulator_host=gcs_env.endpoint, gcs_project="test-project", run_log=False
    )
    headers, body = wrapped_push(
        *gcs_notification(unique_name, "incoming/a.csv", int(stored.generation))
    )

    with TestClient(create_app(settings)) as client:
        response = client.post("/pubsub", content=body, headers=headers)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "model_failed"
    assert answer["error"]["code"] == "model_failed"
    assert "model 'numbers'" in answer["error"]["message"]
    (report,) = answer["reports"]
    assert [(m["name"], m["status"]) for m in report["models"]] == [
        ("names", "built"),
        ("numbers", "failed"),
    ]
    assert count(settings, "people") == 2
    assert query(settings, "select name from ferry.names order by id") == [("ANN",), ("BOB",)]
