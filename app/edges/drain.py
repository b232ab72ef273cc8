"""Drain mode: pull waiting GCS notifications, load each pipeline's objects in ONE run.

BigQuery allows 1,500 load jobs per table per day; push mode spends one per object. Drain
(a scheduled Cloud Run Job) groups a batch of notifications per pipeline, so a batch costs
one load job per table. Each run goes through the ops run wrapper (`RunService.run`: stop
flag, locks, run log, run event), so messages are acknowledged only after their load
committed and the run was recorded and told: a crash before the ack means redelivery, and
the destination ledger turns that into a no-op; a crash after it loses nothing. Ack, nack
and dead letter are read from the outcome table, as push does.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from app.edges.events import GcsObjectEvent, PubSubMessage, gcs_event_from_message
from app.ops.deadletter import dead_letter
from app.ops.service import Catalog, ObjectRef, RunReport, RunRequest, RunService
from core import failpoints
from core.errors import (
    ConfigError,
    FerryError,
    Party,
    RequestError,
    SourceNotFoundError,
    classify,
    outcome_of,
    recognise,
)
from core.settings import Settings

log = logging.getLogger("ferry.drain")

PULL_BATCH = 1000
DEFAULT_LEASE_SECONDS = 120


@dataclass(frozen=True)
class DrainLimits:
    max_objects: int = 5000
    max_bytes: int = 50 << 30
    pull_timeout_seconds: float = 10.0
    lease_seconds: int = DEFAULT_LEASE_SECONDS
    """Ack deadline held on pulled messages, renewed every third of it while loading."""


@dataclass
class Held:
    """One pulled message and what it names."""

    ack_id: str
    message: PubSubMessage
    event: GcsObjectEvent | None


@dataclass
class DrainReport:
    messages: int = 0
    objects: int = 0
    acked: int = 0
    nacked: int = 0
    dead_lettered: int = 0
    ignored: int = 0
    runs: list[RunReport] = field(default_factory=list)
    failures: list[FerryError] = field(default_factory=list)
    """Each failed run's error (its report on `error.report`), or a message's own error."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "objects": self.objects,
            "acked": self.acked,
            "nacked": self.nacked,
            "dead_lettered": self.dead_lettered,
            "ignored": self.ignored,
            "load_jobs_runs": len(self.runs),
            "runs": [run.to_dict() for run in self.runs],
            "errors": [_error_entry(error) for error in self.failures],
        }


def _error_entry(error: FerryError) -> dict[str, Any]:
    entry = error.to_dict()
    if error.report is not None:  # the drain's JSON kept each failed run's report here
        entry["details"] = {**entry.get("details", {}), "report": error.report.to_dict()}
    return entry


def drain(
    subscription: str,
    service: RunService,
    limits: DrainLimits | None = None,
    subscriber: Any = None,
) -> DrainReport:
    """Pull until the subscription is empty or a limit is reached, then load and ack.

    Once the service is stopping (job mode's SIGTERM) the run in flight is abandoned before
    its load commits and its messages are nacked, as the outcome table says."""
    limits = limits or DrainLimits()
    settings, catalog = service.settings, service.catalog
    if not SUBSCRIPTION.fullmatch(subscription):
        raise RequestError(
            f"--subscription '{subscription}' is not a subscription name: it must look like "
            "projects/PROJECT/subscriptions/SUBSCRIPTION"
        )
    with _pubsub_errors(subscription):
        client = subscriber or _subscriber()
        report = DrainReport()
        held = _pull(client, subscription, limits, report)
    with _lease(client, subscription, [h.ack_id for h in held], limits.lease_seconds):
        groups = _group(held, catalog, settings, client, subscription, report)
        for pipeline, members in groups.items():
            _load_group(pipeline, members, service, client, subscription, report)
    return report


SUBSCRIPTION = re.compile(r"projects/[^/\s]+/subscriptions/[^/\s]+")


def _subscriber() -> Any:
    from google.cloud.pubsub_v1 import SubscriberClient

    return SubscriberClient()


@contextmanager
def _pubsub_errors(subscription: str) -> Iterator[None]:
    """Pub/Sub failures before anything was pulled, as one sentence with the right recovery:
    no credentials or an unknown subscription are configuration (terminal, exit 2); an
    unreachable or failing Pub/Sub is retriable."""
    from google.auth.exceptions import DefaultCredentialsError

    try:
        yield
    except FerryError:
        raise
    except DefaultCredentialsError:
        raise ConfigError(
            "drain found no Google credentials to pull with: set up Application Default "
            "Credentials (on Cloud Run, the job's service account) or PUBSUB_EMULATOR_HOST"
        ) from None
    except Exception as error:
        found = recognise(error, party=Party.SOURCE)
        if found is None:
            raise
        raise type(found)(f"Pub/Sub subscription '{subscription}': {found.message}") from error


def _pull(client: Any, subscription: str, limits: DrainLimits, report: DrainReport) -> list[Held]:
    held: list[Held] = []
    pulled_bytes = 0
    while report.objects < limits.max_objects and pulled_bytes < limits.max_bytes:
        want = min(PULL_BATCH, limits.max_objects - report.objects)
        response = client.pull(
            subscription=subscription,
            max_messages=want,
            timeout=limits.pull_timeout_seconds,
        )
        if not response.received_messages:
            break
        for received in response.received_messages:
            message = _message(received)
            report.messages += 1
            try:
                event = gcs_event_from_message(message)
            except FerryError:  # malformed: dead-lettered with the others below
                held.append(Held(received.ack_id, message, None))
                continue
            held.append(Held(received.ack_id, message, event))
            if event is not None and event.is_finalize:
                report.objects += 1
                pulled_bytes += event.size or 0
    log.info("pulled %s messages naming %s objects", report.messages, report.objects)
    return held


def _message(received: Any) -> PubSubMessage:
    message = received.message
    return PubSubMessage(
        data=bytes(message.data),
        attributes=dict(message.attributes),
        message_id=message.message_id,
        publish_time=str(message.publish_time),
        subscription=None,
        delivery_attempt=received.delivery_attempt or None,
    )


def _group(
    held: list[Held],
    catalog: Catalog,
    settings: Settings,
    client: Any,
    subscription: str,
    report: DrainReport,
) -> dict[str, list[Held]]:
    groups: dict[str, list[Held]] = {}
    for item in held:
        event = item.event
        if event is None and not _is_gcs(item.message):
            _ack(client, subscription, [item], report, ignored=True)
            continue
        if event is None or event.is_suspicious_name:
            error = RequestError("malformed or unsafe Cloud Storage notification")
            _terminal(item, error, settings, client, subscription, report)
            continue
        if not (event.is_finalize or event.is_delete):
            _ack(client, subscription, [item], report, ignored=True)
            continue
        pipelines = catalog.match_uri(event.uri)
        if event.is_delete:
            pipelines = [spec for spec in pipelines if spec.removes_deleted_rows]
        if not pipelines:
            log.warning("ignored %s: no pipeline is configured for it", event.uri)
            _ack(client, subscription, [item], report, ignored=True)
            continue
        for spec in pipelines[:1]:
            groups.setdefault(spec.name, []).append(item)
    return groups


def _is_gcs(message: PubSubMessage) -> bool:
    return "bucketId" in message.attributes or "objectId" in message.attributes


def _load_group(
    pipeline: str,
    members: list[Held],
    service: RunService,
    client: Any,
    subscription: str,
    report: DrainReport,
) -> None:
    """One run for the whole group; if it fails terminally, isolate the bad objects. Every
    run, failed or not, was recorded and told by the run wrapper before any ack here."""
    settings = service.settings
    try:
        results = _run(pipeline, members, service, report)
    except BaseException as raw:
        error = classify(raw, pipeline=pipeline)
        outcome = outcome_of(error)
        if not outcome.push_ack:
            report.failures.append(error)
            _nack(client, subscription, members, report)
            return
        if not outcome.dead_letter:
            # the objects loaded and committed; only what followed the load (a model) failed
            report.failures.append(error)
            _ack(client, subscription, members, report)
            return
        if len(members) == 1:
            _terminal(members[0], error, settings, client, subscription, report)
            return
        log.warning("group of %s failed (%s): loading its objects one by one", len(members), error)
        for member in members:
            _load_group(pipeline, [member], service, client, subscription, report)
        return
    failpoints.hit("before_ack")
    gone = _not_found(results, members)
    for member, error in gone:
        _terminal(member, error, settings, client, subscription, report)
    _ack(client, subscription, [m for m in members if all(m is not g for g, _ in gone)], report)


def _not_found(results: list[RunReport], members: list[Held]) -> list[tuple[Held, FerryError]]:
    """Members whose object was gone (and unknown to the ledger): the rest of the group
    loaded without them, and each is dead-lettered on its own, as push mode would."""
    missing = {
        (entry.uri, entry.generation): entry.reason or "the object does not exist"
        for result in results
        for entry in result.files
        if entry.status == "not_found"
    }
    gone: list[tuple[Held, FerryError]] = []
    for member in members:
        event = member.event
        if event is None or event.is_delete:
            continue
        reason = missing.get((event.uri, event.generation or 0))
        if reason is not None:
            gone.append((member, SourceNotFoundError(reason, pipeline=results[0].pipeline)))
    return gone


def _run(
    pipeline: str, members: list[Held], service: RunService, report: DrainReport
) -> list[RunReport]:
    newest: dict[str, int | None] = {}
    deleted = []
    for member in members:
        assert member.event is not None
        uri, generation = member.event.uri, member.event.generation
        if member.event.is_delete:
            deleted.append((uri, generation))
            continue
        known = newest.get(uri)
        if uri not in newest or (generation or 0) > (known or 0):
            newest[uri] = generation
    results: list[RunReport] = []
    if newest:
        request = RunRequest(
            pipeline=pipeline,
            objects=tuple(ObjectRef(uri, generation) for uri, generation in sorted(newest.items())),
            trigger="drain",
        )
        results.append(service.run(request))
    # deletes after loads: a generation loaded and deleted in one batch ends deleted
    for uri, generation in sorted(set(deleted)):
        removal = RunRequest(
            pipeline=pipeline,
            source_uri=uri,
            generation=generation,
            trigger="drain",
            object_deleted=True,
        )
        results.append(service.run(removal))
    report.runs.extend(results)
    return results


def _terminal(
    item: Held,
    error: FerryError,
    settings: Settings,
    client: Any,
    subscription: str,
    report: DrainReport,
) -> None:
    """Dead-letter (if configured) and ack one message (nack it when it cannot be parked). A
    failed run was already recorded and told by the run wrapper."""
    report.failures.append(error)
    try:
        parked = dead_letter(
            settings.dead_letter_topic, item.message.data, item.message.attributes, error
        )
    except FerryError:
        _nack(client, subscription, [item], report)
        return
    report.dead_lettered += int(parked)
    _ack(client, subscription, [item], report)


def _chunks(ack_ids: list[str], size: int = 1000) -> Iterator[list[str]]:
    for start in range(0, len(ack_ids), size):
        yield ack_ids[start : start + size]


def _ack(
    client: Any, subscription: str, items: list[Held], report: DrainReport, ignored: bool = False
) -> None:
    for chunk in _chunks([i.ack_id for i in items]):
        client.acknowledge(subscription=subscription, ack_ids=chunk)
    report.acked += len(items)
    report.ignored += len(items) if ignored else 0


def _nack(client: Any, subscription: str, items: list[Held], report: DrainReport) -> None:
    _extend(client, subscription, [i.ack_id for i in items], 0)
    report.nacked += len(items)


def _extend(client: Any, subscription: str, ack_ids: list[str], seconds: int) -> None:
    for chunk in _chunks(ack_ids):
        client.modify_ack_deadline(
            subscription=subscription, ack_ids=chunk, ack_deadline_seconds=seconds
        )


@contextmanager
def _lease(client: Any, subscription: str, ack_ids: list[str], seconds: int) -> Iterator[None]:
    """Keep extending the ack deadline of held messages while their load runs."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(seconds / 3):
            try:
                _extend(client, subscription, ack_ids, seconds)
            except Exception as error:  # acked ones can no longer be extended
                log.debug("lease renewal: %s", error)

    thread = threading.Thread(target=renew, daemon=True)
    if ack_ids:
        _extend(client, subscription, ack_ids, seconds)
        thread.start()
    try:
        yield
    finally:
        stop.set()
