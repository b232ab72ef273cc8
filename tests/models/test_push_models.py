"""Models after pushed loads. A push delivery whose load commits but whose model fails:
acknowledged (200), not dead-lettered: a redelivery would find the object loaded and build
nothing. A burst of pushes shares one run per group commit, and so one build per model."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.edges.server import create_app
from app.ops.service import RunService
from app.run.report import RunReport
from app.run.request import RunRequest
from tests.emulators import GcsEmulator
from tests.helpers import count, duckdb_settings, query, write_catalog
from tests.pubsub_messages import gcs_notification, wrapped_push

pytestmark = pytest.mark.emulators


def wait_until(condition: Callable[[], bool]) -> None:
    """A bounded wait for a forced interleaving (a guard against a hang, not a timing)."""
    deadline = time.monotonic() + 120
    while not condition():
        assert time.monotonic() < deadline, "the pushes never queued"
        time.sleep(0.01)


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


def test_a_burst_of_pushes_builds_each_model_once_per_group_commit(
    tmp_path: Path, gcs_env: GcsEmulator, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = unique_name
    gcs_env.client().create_bucket(bucket)
    catalog = write_catalog(
        tmp_path,
        f"""
        pipelines:
          - {{name: people, source: {{uri: "gs://{bucket}/in/*.csv", columns: {{id: int64}}}},
              destination: {{table: people}}}}
        models:
          - {{name: names, sql: "SELECT id, UPPER(name) AS name FROM people"}}
          - {{name: latest, materialization: incremental, unique_key: [id],
              sql: "SELECT id, UPPER(name) AS name FROM people"}}
        """,
    )
    settings = duckdb_settings(
        tmp_path, storage_emulator_host=gcs_env.endpoint, gcs_project="test-project", run_log=False
    )
    objects = []
    for n in range(5):
        name = f"in/{n}.csv"
        text = "id,name\n" + "".join(f"{n * 10 + i},p{n}\n" for i in range(3))
        gcs_env.client().bucket(bucket).blob(name).upload_from_string(text)
        stored = gcs_env.client().bucket(bucket).get_blob(name)
        assert stored is not None
        objects.append(
            RunRequest(
                "people",
                source_uri=f"gs://{bucket}/{name}",
                generation=int(stored.generation),
                trigger="pubsub",
            )
        )
    service = RunService(settings, catalog)
    commit = service._groups
    assert commit is not None
    original = commit._execute
    held = threading.Event()

    def first_waits(
        group: RunRequest, members: list[RunRequest], loading: Callable[[], None]
    ) -> RunReport:
        if not held.is_set():
            held.set()  # the first push runs alone; the other four queue behind it
            wait_until(lambda: commit.waiting("people") == len(objects) - 1)
        return original(group, members, loading)

    monkeypatch.setattr(commit, "_execute", first_waits)
    with ThreadPoolExecutor(len(objects)) as pool:
        first = pool.submit(service.execute, objects[0])
        wait_until(held.is_set)
        rest = [pool.submit(service.execute, request) for request in objects[1:]]
        answers = [first.result(), *(future.result() for future in rest)]

    runs: dict[str, list[tuple[str, str, int | None]]] = {}
    for answer in answers:
        assert isinstance(answer, RunReport) and answer.status == "succeeded", answer
        runs[answer.run_id] = sorted((m.name, m.status, m.rows_read) for m in answer.models)
    # five pushes, two runs, each model built once per run; the group's incremental build
    # read the four grouped objects' rows, once
    assert sorted(runs.values(), key=lambda models: models[0][2] or 0) == [
        [("latest", "built", 3), ("names", "built", None)],
        [("latest", "built", 12), ("names", "built", None)],
    ]
    assert count(settings, "latest") == 15
