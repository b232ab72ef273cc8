"""After every run: a run-log row and a completion or failure event on a Pub/Sub topic.

Both are best effort. They happen after the run's data committed (or the run failed), so a
publish or record failure is logged and never changes the run's outcome.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import cache
from typing import Any

from app.ops.runlog import RunLog
from app.run.report import RunReport
from core.errors import FerryError
from core.settings import Settings

log = logging.getLogger("ferry.run_events")

PUBLISH_TIMEOUT_SECONDS = 10.0
ERROR_FIELDS = ("code", "message", "recovery")


@cache
def _publisher() -> Any:
    # PUBSUB_EMULATOR_HOST, when set, points the client at the local emulator
    from google.cloud.pubsub_v1 import PublisherClient

    return PublisherClient()


def run_event(report: RunReport, error: FerryError | None = None) -> dict[str, Any]:
    """The event body for one run (pure): read from the typed report, serialised here, at the
    Pub/Sub edge. Reports never hold secrets, so neither does this."""
    failure = error.to_dict() if error is not None else report.error
    return {
        "pipeline": report.pipeline,
        "run_id": report.run_id,
        "status": report.status,
        "trigger": report.trigger,
        "destination": report.destination,
        "dataset": report.dataset,
        "tables": report.tables,
        "changes": report.changes,
        "rows_read": report.rows_read,
        "rows_loaded": report.rows_loaded,
        "rows_rejected": report.rows_rejected,
        "load_ids": report.load_ids,
        "error": {k: failure.get(k) for k in ERROR_FIELDS} if failure else None,
        "started_at": report.started_at,
        "finished_at": report.finished_at,
        "seconds": report.seconds,
        "models": [
            {
                "name": model.name,
                "status": model.status,
                "rows": model.rows,
                "seconds": model.seconds,
                "error_code": (model.error or {}).get("code"),
            }
            for model in report.models
        ],
    }


def event_attributes(event: dict[str, Any]) -> dict[str, str]:
    """Attributes a subscription can filter on (`attributes.status = "failed"`)."""
    attributes = {
        "pipeline": str(event["pipeline"]),
        "status": str(event["status"]),
        "run_id": str(event["run_id"]),
    }
    if event["error"]:
        attributes["error_code"] = str(event["error"]["code"])
    return attributes


def publish_run_event(topic: str, report: RunReport, error: FerryError | None = None) -> str | None:
    """Publish one run's event; its message id, or None (logged) when publishing failed."""
    event = run_event(report, error)
    try:
        future = _publisher().publish(
            topic, json.dumps(event, default=str).encode(), **event_attributes(event)
        )
        message_id: str = future.result(timeout=PUBLISH_TIMEOUT_SECONDS)
    except Exception as publish_error:
        log.warning(
            "could not publish the %s event of run %s to %s: %s",
            event["status"],
            event["run_id"],
            topic,
            publish_error,
        )
        return None
    log.info("published run event %s for run %s", message_id, event["run_id"])
    return message_id


def after_run(settings: Settings, ended: RunReport | FerryError) -> None:
    """Record the run in the run log and publish its event, as configured.

    A failure that ended no run (unknown pipeline: the error carries no report) has no run
    to tell about.
    """
    if isinstance(ended, FerryError):
        report, error = ended.report, ended
    else:
        report, error = ended, None
    if not isinstance(report, RunReport):
        return
    if settings.run_log:
        RunLog(settings).record(report.to_dict())
    if settings.run_events_topic:
        publish_run_event(settings.run_events_topic, report, error)


def run_and_tell(
    settings: Settings,
    attempt: Callable[[], RunReport],
    *,
    silent: Callable[[], bool] = lambda: False,
) -> RunReport:
    """Run (`attempt`), then tell how it ended, success or failure: the one after-run
    sequence of every trigger. `silent()` true skips the telling (a run abandoned on
    SIGTERM: its redelivery is the run that counts)."""
    try:
        report = attempt()
    except FerryError as error:
        if not silent():
            after_run(settings, error)
        raise
    if not silent():
        after_run(settings, report)
    return report
