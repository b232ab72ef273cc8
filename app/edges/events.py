"""Everything a trigger can POST, parsed into one typed result. Pure: no I/O, no web framework.

Three shapes reach the service when a GCS object lands:

* **Pub/Sub push, wrapped** (the default). The body is JSON::

      {"message": {"data": "<base64>", "attributes": {...}, "messageId": "...",
                   "publishTime": "..."}, "subscription": "projects/p/subscriptions/s",
       "deliveryAttempt": 3}

  Pub/Sub writes both ``messageId`` and ``message_id`` (and both ``publishTime`` and
  ``publish_time``); either is read. ``deliveryAttempt`` is only present when the
  subscription has a dead-letter policy.

* **Pub/Sub push, unwrapped** (``--push-no-wrapper``). The body is the message data itself.
  With ``--push-no-wrapper-write-metadata`` Google writes the metadata into headers named
  ``x-goog-pubsub-<KEY>`` and *each attribute as a plain header named after the attribute*
  (``PushConfig.NoWrapper.write_metadata`` in the Pub/Sub v1 API reference: "writes the
  Pub/Sub message metadata to x-goog-pubsub-<KEY>:<VAL> headers of the HTTP request. Writes
  the Pub/Sub message attributes to <KEY>:<VAL> headers"). The metadata headers read here:

  - ``x-goog-pubsub-message-id``, ``x-goog-pubsub-publish-time``,
    ``x-goog-pubsub-subscription-name`` (written by Pub/Sub; these three mark a request as
    unwrapped);
  - ``x-goog-pubsub-ordering-key`` (written when the message has one; not kept);
  - ``x-goog-pubsub-delivery-attempt``: Google documents no such header for unwrapped
    pushes, so it is read when present and is otherwise ``None``.

  Because attributes are bare headers, they cannot be told apart from the request's own
  headers: every header except the transport, auth and tracing ones (`_NOT_ATTRIBUTES`) is
  kept as an attribute. HTTP lowercases names on the way, so the documented Cloud Storage
  notification attributes (``bucketId``, ``objectId``...) get their spelling back; any
  other attribute name arrives lowercased.

  Without write-metadata there are no headers at all, so the request is recognised only when
  its body is a JSON object with no ``message`` key (e.g. a ``JSON_API_V1`` object
  resource); any other body is rejected, because it is then indistinguishable from a broken
  wrapped envelope.

* **CloudEvents** from Eventarc, in binary (``ce-*`` headers) or structured
  (``application/cloudevents+json``) mode, parsed with the ``cloudevents`` SDK. Storage
  events (``google.cloud.storage.object.v1.*``) carry the object resource as data; a
  ``google.cloud.pubsub.topic.v1.messagePublished`` event carries a push envelope as data.

The JSON shapes are pydantic models in `app.edges.wire` (aliases for the camelCase/snake_case
twins Pub/Sub writes); a `ValidationError` becomes a `RequestError` in one place
(`wire.request_error`). Any malformed input, JSON nested too deeply included, raises
`RequestError` (terminal: redelivering the same bytes cannot help).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from cloudevents.core.exceptions import BaseCloudEventException
from pydantic import ValidationError

from app.edges.wire import (
    JSON_ERRORS,
    ObjectResource,
    PushEnvelope,
    StructuredCloudEvent,
    clip,
    describe,
    load_json,
    parse_integer,
    preview,
    request_error,
)
from core.errors import RequestError

OBJECT_FINALIZE: Final = "OBJECT_FINALIZE"
"""The Cloud Storage notification event type for a new object (or a new generation)."""
STORAGE_FINALIZED: Final = "google.cloud.storage.object.v1.finalized"
"""The Eventarc CloudEvent type for the same thing."""
OBJECT_DELETE: Final = "OBJECT_DELETE"
"""The notification type for a generation that is gone (deleted, or overwritten)."""
STORAGE_DELETED: Final = "google.cloud.storage.object.v1.deleted"
STORAGE_EVENT_PREFIX: Final = "google.cloud.storage.object.v1."
PUBSUB_PUBLISHED: Final = "google.cloud.pubsub.topic.v1.messagePublished"
UNKNOWN_EVENT_TYPE: Final = "UNKNOWN"
"""A GCS object named only by its resource, with no ``eventType`` attribute to say what happened."""


# Pub/Sub metadata headers of an unwrapped push (write-metadata on).
_H_MESSAGE_ID: Final = "x-goog-pubsub-message-id"
_H_PUBLISH_TIME: Final = "x-goog-pubsub-publish-time"
_H_SUBSCRIPTION: Final = "x-goog-pubsub-subscription-name"
_H_DELIVERY_ATTEMPT: Final = "x-goog-pubsub-delivery-attempt"
_UNWRAPPED_MARKERS: Final = (_H_MESSAGE_ID, _H_PUBLISH_TIME, _H_SUBSCRIPTION)

# Headers of the HTTP request itself, never message attributes. Credentials are among them
# so a token can never travel on as an "attribute" into logs.
_NOT_ATTRIBUTES: Final = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "authorization",
        "cache-control",
        "connection",
        "content-encoding",
        "content-length",
        "content-type",
        "cookie",
        "expect",
        "forwarded",
        "from",
        "host",
        "keep-alive",
        "pragma",
        "proxy-authorization",
        "te",
        "traceparent",
        "tracestate",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "via",
        "x-real-ip",
        "x-request-id",
    }
)
_NOT_ATTRIBUTE_PREFIXES: Final = ("x-goog-", "x-forwarded-", "x-cloud-", "x-envoy-", "ce-")

# The attributes Cloud Storage sets on a notification, in their documented spelling.
_GCS_ATTRIBUTES: Final = (
    "bucketId",
    "objectId",
    "objectGeneration",
    "eventType",
    "eventTime",
    "payloadFormat",
    "notificationConfig",
    "overwroteGeneration",
    "overwrittenByGeneration",
)
_GCS_ATTRIBUTE_CASE: Final = {name.lower(): name for name in _GCS_ATTRIBUTES}

_STORAGE_SOURCE = re.compile(r"^//storage\.googleapis\.com/projects/[^/]+/buckets/([^/]+)$")
_SUBJECT_PREFIX: Final = "objects/"


@dataclass(frozen=True)
class PubSubMessage:
    """One Pub/Sub message, whichever way it was pushed."""

    data: bytes
    """The message payload, already base64-decoded."""
    attributes: dict[str, str] = field(default_factory=dict)
    message_id: str | None = None
    publish_time: str | None = None
    """RFC 3339 timestamp exactly as Pub/Sub wrote it."""
    subscription: str | None = None
    """Full name: ``projects/PROJECT/subscriptions/NAME``."""
    delivery_attempt: int | None = None
    """Set by Pub/Sub only on subscriptions with a dead-letter policy."""


@dataclass(frozen=True)
class GcsObjectEvent:
    """Something happened to one generation of one Cloud Storage object."""

    bucket: str
    name: str
    """Exactly as sent: never decoded, never normalised (see `is_suspicious_name`)."""
    generation: int | None
    event_type: str
    """``OBJECT_FINALIZE``-style notification type or ``google.cloud.storage.object.v1.*``."""
    size: int | None = None
    message_id: str | None = None
    """Pub/Sub message id, or the CloudEvent id: the same on every redelivery."""
    publish_time: str | None = None
    delivery_attempt: int | None = None
    overwritten_by: int | None = None
    """An OBJECT_DELETE caused by an overwrite names the new generation (Pub/Sub attribute
    ``overwrittenByGeneration``); that generation's own notification replaces the rows."""

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"

    @property
    def is_finalize(self) -> bool:
        """A new object or a new generation: the only event that should start a load."""
        return self.event_type in (OBJECT_FINALIZE, STORAGE_FINALIZED)

    @property
    def is_delete(self) -> bool:
        """The generation is gone and no newer one replaced it (not an overwrite)."""
        return self.event_type in (OBJECT_DELETE, STORAGE_DELETED) and self.overwritten_by is None

    @property
    def is_suspicious_name(self) -> bool:
        """The name could escape a directory if someone joined it onto a path.

        True for NUL or other control characters, a ``.`` or ``..`` segment (``/`` or ``\\``
        separated), and percent-encoded separators or dots that decode into one of those.
        The caller refuses such objects; nothing here decodes the name for use.
        """
        return _is_suspicious(self.name)


# --- Pub/Sub push ---------------------------------------------------------------------


def parse_push(headers: Mapping[str, str], body: bytes) -> PubSubMessage:
    """Read a Pub/Sub push request, wrapped or unwrapped (see the module docstring)."""
    lowered = _lower_keys(headers)
    if any(name in lowered for name in _UNWRAPPED_MARKERS):
        return _unwrapped(lowered, body)
    try:
        document = load_json(body)
    except JSON_ERRORS as error:
        raise RequestError(
            "not a Pub/Sub push: the body is not a JSON envelope "
            f"({clip(str(error))}) and there is no {_H_MESSAGE_ID} header of an unwrapped "
            f"push; body starts {preview(body)}"
        ) from None
    if isinstance(document, dict) and "message" in document:
        return _message_from_envelope(document, where="push envelope")
    if isinstance(document, dict):
        # an unwrapped push without write-metadata: the JSON payload is all there is
        return PubSubMessage(data=body)
    raise RequestError(
        f"not a Pub/Sub push: the body is JSON {type(document).__name__}, not an envelope "
        f"object with a 'message' key; body starts {preview(body)}"
    )


def _unwrapped(lowered: dict[str, str], body: bytes) -> PubSubMessage:
    attributes = {
        _GCS_ATTRIBUTE_CASE.get(name, name): value
        for name, value in lowered.items()
        if name not in _NOT_ATTRIBUTES and not name.startswith(_NOT_ATTRIBUTE_PREFIXES)
    }
    return PubSubMessage(
        data=body,
        attributes=attributes,
        message_id=lowered.get(_H_MESSAGE_ID),
        publish_time=lowered.get(_H_PUBLISH_TIME),
        subscription=lowered.get(_H_SUBSCRIPTION),
        delivery_attempt=parse_integer(
            lowered.get(_H_DELIVERY_ATTEMPT), f"header {_H_DELIVERY_ATTEMPT}"
        ),
    )


def _message_from_envelope(envelope: dict[str, Any], *, where: str) -> PubSubMessage:
    try:
        parsed = PushEnvelope.model_validate(envelope)
    except ValidationError as error:
        raise request_error(error, where) from None
    return PubSubMessage(
        data=parsed.message.data,
        attributes=dict(parsed.message.attributes),
        message_id=parsed.message.message_id,
        publish_time=parsed.message.publish_time,
        subscription=parsed.subscription,
        delivery_attempt=parsed.delivery_attempt,
    )


# --- Cloud Storage notification -------------------------------------------------------


def gcs_event_from_message(message: PubSubMessage) -> GcsObjectEvent | None:
    """The Cloud Storage object a Pub/Sub message is about, or None when it is about none.

    Attributes (``bucketId``, ``objectId``, ``objectGeneration``, ``eventType``) win; what
    they lack is taken from the ``JSON_API_V1`` object resource in the data. A message that
    carries the notification attributes but still names no object raises `RequestError`.
    Without an ``eventType`` attribute (an unwrapped push without write-metadata) the event
    type is `UNKNOWN_EVENT_TYPE`, which is not a finalize: nothing says the object is new.
    """
    attributes = message.attributes
    resource = _object_resource(message)
    claims_gcs = any(name in attributes for name in ("bucketId", "objectId", "eventType"))
    bucket = attributes.get("bucketId") or (resource.bucket if resource else None)
    name = attributes.get("objectId") or (resource.name if resource else None)
    if not bucket or not name:
        if claims_gcs:
            missing = "bucketId" if not bucket else "objectId"
            raise RequestError(
                f"Cloud Storage notification (message {message.message_id}) has no "
                f"'{missing}' attribute and its data names no object"
            )
        return None
    generation_value: object = attributes.get("objectGeneration")
    if not generation_value and resource is not None:
        generation_value = resource.generation
    return GcsObjectEvent(
        bucket=bucket,
        name=name,
        generation=parse_integer(generation_value, f"generation of gs://{bucket}/{name}"),
        event_type=attributes.get("eventType") or UNKNOWN_EVENT_TYPE,
        size=parse_integer(resource.size if resource else None, f"size of gs://{bucket}/{name}"),
        message_id=message.message_id,
        publish_time=message.publish_time,
        delivery_attempt=message.delivery_attempt,
        overwritten_by=parse_integer(
            attributes.get("overwrittenByGeneration"), f"overwrittenByGeneration of {name}"
        ),
    )


def _object_resource(message: PubSubMessage) -> ObjectResource | None:
    """The object resource in the data, or None (payloadFormat NONE, empty, or not JSON)."""
    payload_format = message.attributes.get("payloadFormat")
    if payload_format == "NONE" or not message.data.strip():
        return None
    try:
        document = load_json(message.data)
    except JSON_ERRORS as error:
        if payload_format == "JSON_API_V1":
            raise RequestError(
                f"Cloud Storage notification (message {message.message_id}) declares "
                f"payloadFormat JSON_API_V1 but its data is not JSON ({clip(str(error))}); "
                f"data starts {preview(message.data)}"
            ) from None
        return None
    return ObjectResource.model_validate(document) if isinstance(document, dict) else None


# --- CloudEvents ----------------------------------------------------------------------


def is_cloudevent(headers: Mapping[str, str]) -> bool:
    """The request claims to be a CloudEvent: ``ce-*`` headers (binary mode) or the
    structured content type. Anything else on ``POST /`` is not an Eventarc delivery."""
    lowered = _lower_keys(headers)
    if any(name.startswith("ce-") for name in lowered):
        return True
    return lowered.get("content-type", "").lower().startswith("application/cloudevents+json")


def parse_cloudevent(
    headers: Mapping[str, str], body: bytes
) -> GcsObjectEvent | PubSubMessage | None:
    """Read an Eventarc CloudEvent (binary or structured mode).

    Returns a `GcsObjectEvent` for ``google.cloud.storage.object.v1.*`` events, the inner
    `PubSubMessage` for ``google.cloud.pubsub.topic.v1.messagePublished`` (hand it to
    `gcs_event_from_message`), and None for any other event type.
    """
    event, sent_time = _read_cloudevent(_lower_keys(headers), body)
    event_type = event.get_type()
    if event_type.startswith(STORAGE_EVENT_PREFIX):
        return _storage_event(event, sent_time)
    if event_type == PUBSUB_PUBLISHED:
        data = _eventload_json(event)
        return _message_from_envelope(data, where=f"CloudEvent {event.get_id()} data")
    return None


def _read_cloudevent(lowered: dict[str, str], body: bytes) -> tuple[BaseCloudEvent, str | None]:
    """The event, and its ``time`` exactly as sent (the SDK would invent one when absent)."""
    sent_time: object
    if any(name.startswith("ce-") for name in lowered):
        missing = [
            f"ce-{a}" for a in ("id", "source", "type", "specversion") if f"ce-{a}" not in lowered
        ]
        if missing:
            raise RequestError(f"binary-mode CloudEvent lacks header(s) {', '.join(missing)}")
        sent_time = unquote(lowered["ce-time"]) if "ce-time" in lowered else None
    else:
        if not is_cloudevent(lowered):
            content_type = lowered.get("content-type", "")
            raise RequestError(
                "not a CloudEvent: no ce-* headers (binary mode) and content-type "
                f"{preview(content_type or '(none)')} is not application/cloudevents+json"
                " (structured mode)"
            )
        sent_time = _structured_time(body)
    try:
        event = from_http_event(HTTPMessage(headers=lowered, body=body))
    except (BaseCloudEventException, ValueError, TypeError, OverflowError, RecursionError) as error:
        raise RequestError(f"malformed CloudEvent: {clip(str(error))}") from None
    return event, sent_time if isinstance(sent_time, str) else None


def _structured_time(body: bytes) -> object:
    try:
        document = load_json(body)
    except JSON_ERRORS as error:
        raise RequestError(
            f"structured CloudEvent is not valid JSON ({clip(str(error))}); "
            f"body starts {preview(body)}"
        ) from None
    if not isinstance(document, dict):
        raise RequestError(f"structured CloudEvent must be a JSON object, got {describe(document)}")
    try:
        return StructuredCloudEvent.model_validate(document).time
    except ValidationError as error:
        raise request_error(error, "structured CloudEvent") from None


def _storage_event(event: BaseCloudEvent, sent_time: str | None) -> GcsObjectEvent:
    data = ObjectResource.model_validate(_eventload_json(event))
    bucket = data.bucket or _bucket_from_event(event)
    name = data.name or _name_from_subject(event.get_subject())
    where = f"CloudEvent {event.get_id()} ({event.get_type()})"
    if not bucket or not name:
        raise RequestError(
            f"{where} names no object: data has no bucket/name and "
            f"source {preview(event.get_source())} / subject "
            f"{preview(event.get_subject() or '(none)')} do not say"
        )
    return GcsObjectEvent(
        bucket=bucket,
        name=name,
        generation=parse_integer(data.generation, f"{where}: generation"),
        event_type=event.get_type(),
        size=parse_integer(data.size, f"{where}: size"),
        message_id=event.get_id(),
        publish_time=sent_time,
        delivery_attempt=None,
    )


def _eventload_json(event: BaseCloudEvent) -> dict[str, Any]:
    """The event data as a JSON object, whatever the SDK made of it."""
    raw = event.get_data()
    where = f"CloudEvent {event.get_id()} ({event.get_type()})"
    data: object = raw
    if isinstance(raw, str | bytes):
        # binary mode with a non-JSON content type, or structured data sent as a string
        try:
            data = load_json(raw)
        except JSON_ERRORS as error:
            raise RequestError(
                f"{where}: data is not JSON ({clip(str(error))}); it starts {preview(raw)}"
            ) from None
    if not isinstance(data, dict):
        raise RequestError(f"{where}: data must be a JSON object, got {describe(data)}")
    return data


def _bucket_from_event(event: BaseCloudEvent) -> str | None:
    extension: object = event.get_extension("bucket")
    if isinstance(extension, str) and extension:
        return extension
    match = _STORAGE_SOURCE.match(event.get_source())
    return match.group(1) if match else None


def _name_from_subject(subject: str | None) -> str | None:
    if subject and subject.startswith(_SUBJECT_PREFIX) and len(subject) > len(_SUBJECT_PREFIX):
        return subject[len(_SUBJECT_PREFIX) :]
    return None


# --- small helpers --------------------------------------------------------------------


def _lower_keys(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _is_suspicious(name: str) -> bool:
    lowered = name.lower()
    if "%2f" in lowered or "%5c" in lowered:
        return True
    # decode twice so %252e%252e is caught too; the decoded text is only inspected, never used
    for candidate in (name, unquote(name), unquote(unquote(name))):
        if any(ord(char) < 0x20 or ord(char) == 0x7F for char in candidate):
            return True
        if candidate.startswith(("/", "\\")):
            return True
        if any(segment in (".", "..") for segment in re.split(r"[/\\]", candidate)):
            return True
    return False
