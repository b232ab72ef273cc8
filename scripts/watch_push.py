"""Watch a push locally: the emulators, a `ferry serve` pointed at them, one upload, its push,
its load and the run history. Run it as `bash scripts/watch-push.sh` (after scripts/test.sh,
which installs the emulators); it stops everything it started when it ends.

Cloud Storage's emulator sends no notifications, so this script publishes the one Cloud
Storage would (same attributes and JSON payload) to a Pub/Sub emulator topic whose push
subscription points at the service's `POST /pubsub`, as in production (docs/deploy.md, 4c).
"""

from __future__ import annotations

import base64
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BUCKET = "watch-landing"
OBJECT = "orders/orders-2026-11-01.csv"
SAMPLE = REPO / "examples" / "data" / "orders" / "orders-2026-11-01.csv"


def show(title: str, body: Any = None) -> None:
    print(f"\n== {title}")
    if body is not None:
        print(body if isinstance(body, str) else json.dumps(body, indent=2))


def main() -> int:
    import requests
    from google.cloud.pubsub_v1.types import PushConfig

    from tests.emulators import run_gcs_emulator, run_pubsub_emulator
    from tests.pubsub_messages import gcs_notification
    from tests.service_process import run_service

    with (
        tempfile.TemporaryDirectory(prefix="ferry-watch-") as folder,
        run_gcs_emulator() as gcs,
        run_pubsub_emulator() as pubsub,
    ):
        work = Path(folder)
        pipelines = work / "pipelines.yaml"
        pipelines.write_text(
            "pipelines:\n"
            "  - name: orders\n"
            f"    source: {{uri: 'gs://{BUCKET}/orders/*.csv'}}\n"
            "    destination: {table: orders}\n",
            encoding="utf-8",
        )
        show("pipelines file", pipelines.read_text())
        env = {
            **gcs.env,
            "FERRY_PIPELINES_FILE": str(pipelines),
            "FERRY_DATA_DIR": str(work / "data"),
            "FERRY_DESTINATION": "duckdb",
        }
        with run_service(env, work / "service.log") as service:
            show(f"ferry serve is up on {service.base_url} (Cloud Storage: {gcs.endpoint})")
            publisher, subscriber = pubsub.publisher(), pubsub.subscriber()
            topic = publisher.topic_path(pubsub.project, "ferry-objects")
            subscription = subscriber.subscription_path(pubsub.project, "ferry-push")
            publisher.create_topic(name=topic)
            subscriber.create_subscription(
                name=subscription,
                topic=topic,
                push_config=PushConfig(push_endpoint=f"{service.base_url}/pubsub"),
            )
            show(f"push subscription {subscription} -> {service.base_url}/pubsub")

            blob = gcs.client().create_bucket(BUCKET).blob(OBJECT)
            blob.upload_from_filename(str(SAMPLE), content_type="text/csv")
            blob.reload()
            show(f"uploaded gs://{BUCKET}/{OBJECT} (generation {blob.generation})")

            data, attributes = gcs_notification(
                BUCKET, OBJECT, int(blob.generation), size=int(blob.size)
            )
            envelope = {
                "message": {
                    "attributes": attributes,
                    "data": base64.b64encode(data).decode()[:48] + "... (base64, cut here)",
                    "messageId": "(set by Pub/Sub)",
                    "publishTime": "(set by Pub/Sub)",
                },
                "subscription": subscription,
            }
            show("the push: Pub/Sub POSTs this envelope to /pubsub", envelope)
            show("its data, base64-decoded: the object's JSON resource", json.loads(data))
            for attempt in (1, 2):  # the second is a redelivery: nothing is loaded twice
                publisher.publish(topic, data, **attributes).result(timeout=30)
                service.wait_for_outcomes(attempt, timeout=120)
                pushes = [line for line in service.logs() if "push_status" in line]
                show(f"push {attempt}: ferry answered", _push_line(pushes[-1]))

            runs = _wait_for_runs(requests, service.base_url, 2)
            show("the run history (GET /runs)", [_run_line(run) for run in runs])
            if "--keep" in sys.argv:
                show(f"serving until Ctrl-C: {service.base_url}/ui/runs, {service.base_url}/docs")
                try:
                    while True:
                        time.sleep(1)
                except KeyboardInterrupt:
                    pass
            else:
                show("add --keep to look at the history page (/ui/runs) before it stops")
            publisher.transport.close()
            subscriber.close()
    return 0


def _push_line(line: dict[str, Any]) -> dict[str, Any]:
    return {key: line.get(key) for key in ("message", "push_status", "http_status", "uris")}


def _run_line(run: dict[str, Any]) -> dict[str, Any]:
    keys = ("run_id", "pipeline", "trigger", "status", "rows_read", "rows_loaded", "tables")
    return {key: run.get(key) for key in keys}


def _wait_for_runs(requests: Any, base_url: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    while True:
        runs: list[dict[str, Any]] = requests.get(f"{base_url}/runs", timeout=10).json()["runs"]
        if len(runs) >= count or time.monotonic() > deadline:
            return runs
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
