"""Builders for what Google POSTs when an object lands: the exact shapes, typed, no network.

Cloud Storage notifications (``JSON_API_V1`` and ``NONE``), Pub/Sub push requests (wrapped
envelope and unwrapped with write-metadata), and Eventarc CloudEvents (storage events in
binary and structured mode, ``messagePublished`` wrapping a notification). Every builder
returns plain bytes/dicts, so a test can feed them to `app.edges.events` or post them with an
HTTP client unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from typing import Any, Final
from urllib.parse import quote

PROJECT: Final = "ferry-test"
BUCKET: Final = "ferry-landing"
SUBSCRIPTION: Final = f"projects/{PROJECT}/subscriptions/ferry-gcs-push"
TOPIC: Final = f"projects/{PROJECT}/topics/ferry-gcs"
PUBLISH_TIME: Final = "2024-05-14T09:21:07.412Z"
GOOGLE_USER_AGENT: Final = (
    "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"
)

STORAGE_FINALIZED: Final = "google.cloud.storage.object.v1.finalized"
PUBSUB_PUBLISHED: Final = "google.cloud.pubsub.topic.v1.messagePublished"

# CloudEvents HTTP binding: header values are percent-encoded except printable ASCII
# other than space, double quote and percent.
_CE_SAFE: Final = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in ' "%')


def object_resource(
    bucket: str,
    name: str,
    generation: int,
    *,
    size: int = 1024,
    content_type: str = "text/csv",
    time_created: str = "2024-05-14T09:21:07.311Z",
) -> dict[str, Any]:
    """A Cloud Storage JSON API object resource, as notifications and Eventarc send it.

    int64 fields (generation, metageneration, size) are strings, as the JSON API writes them.
    """
    escaped = quote(name, safe="")
    digest = hashlib.md5(f"{bucket}/{name}#{generation}".encode(), usedforsecurity=False)
    crc = zlib.crc32(name.encode()).to_bytes(4, "big")
    return {
        "kind": "storage#object",
        "id": f"{bucket}/{name}/{generation}",
        "selfLink": f"https://www.googleapis.com/storage/v1/b/{bucket}/o/{escaped}",
        "mediaLink": (
            f"https://storage.googleapis.com/download/storage/v1/b/{bucket}/o/{escaped}"
            f"?generation={generation}&alt=media"
        ),
        "name": name,
        "bucket": bucket,
        "generation": str(generation),
        "metageneration": "1",
        "contentType": content_type,
        "timeCreated": time_created,
        "updated": time_created,
        "storageClass": "STANDARD",
        "timeStorageClassUpdated": time_created,
        "size": str(size),
        "md5Hash": base64.b64encode(digest.digest()).decode(),
        "crc32c": base64.b64encode(crc).decode(),
        "etag": base64.b64encode(generation.to_bytes(8, "big") + b"\x10\x01").decode(),
    }


def gcs_notification(
    bucket: str,
    name: str,
    generation: int,
    *,
    size: int = 1024,
    event_type: str = "OBJECT_FINALIZE",
    payload_format: str = "JSON_API_V1",
    notification_config: str = "1",
) -> tuple[bytes, dict[str, str]]:
    """(data, attributes) of the Pub/Sub message Cloud Storage publishes for one event.

    With ``payload_format="NONE"`` the data is empty and only the attributes describe it.
    """
    config = f"projects/_/buckets/{bucket}/notificationConfigs/{notification_config}"
    attributes = {
        "notificationConfig": config,
        "eventType": event_type,
        "payloadFormat": payload_format,
        "bucketId": bucket,
        "objectId": name,
        "objectGeneration": str(generation),
        "eventTime": "2024-05-14T09:21:07.311Z",
    }
    if payload_format == "NONE":
        return b"", attributes
    resource = object_resource(bucket, name, generation, size=size)
    return json.dumps(resource).encode(), attributes


def pubsub_message_json(
    data: bytes,
    attributes: dict[str, str],
    *,
    message_id: str = "11286587347385011",
    publish_time: str = PUBLISH_TIME,
) -> dict[str, Any]:
    """The ``message`` object of a push envelope (Pub/Sub writes both key spellings)."""
    message: dict[str, Any] = {
        "attributes": dict(attributes),
        "messageId": message_id,
        "message_id": message_id,
        "publishTime": publish_time,
        "publish_time": publish_time,
    }
    if data:
        message["data"] = base64.b64encode(data).decode()
    return message


def push_envelope(
    data: bytes,
    attributes: dict[str, str],
    *,
    message_id: str = "11286587347385011",
    publish_time: str = PUBLISH_TIME,
    subscription: str = SUBSCRIPTION,
    delivery_attempt: int | None = None,
) -> dict[str, Any]:
    """The JSON body of a wrapped Pub/Sub push (``deliveryAttempt`` only with a DLQ policy)."""
    envelope: dict[str, Any] = {
        "message": pubsub_message_json(
            data, attributes, message_id=message_id, publish_time=publish_time
        ),
        "subscription": subscription,
    }
    if delivery_attempt is not None:
        envelope["deliveryAttempt"] = delivery_attempt
    return envelope


def wrapped_push(
    data: bytes,
    attributes: dict[str, str],
    *,
    message_id: str = "11286587347385011",
    subscription: str = SUBSCRIPTION,
    delivery_attempt: int | None = None,
    authorization: str | None = None,
) -> tuple[dict[str, str], bytes]:
    """(headers, body) of a wrapped push request."""
    envelope = push_envelope(
        data,
        attributes,
        message_id=message_id,
        subscription=subscription,
        delivery_attempt=delivery_attempt,
    )
    headers = {"content-type": "application/json", "user-agent": GOOGLE_USER_AGENT}
    if authorization is not None:
        headers["authorization"] = authorization
    return headers, json.dumps(envelope).encode()


def unwrapped_push(
    data: bytes,
    attributes: dict[str, str],
    *,
    message_id: str = "11286587347385011",
    publish_time: str = PUBLISH_TIME,
    subscription: str = SUBSCRIPTION,
    ordering_key: str | None = None,
    delivery_attempt: int | None = None,
    authorization: str | None = None,
) -> tuple[dict[str, str], bytes]:
    """(headers, body) of a push with payload unwrapping and write-metadata on.

    Metadata goes to ``x-goog-pubsub-*`` headers, each attribute to a header of its own name.
    ``x-goog-pubsub-delivery-attempt`` is not documented by Google for this form; pass
    ``delivery_attempt`` only to exercise the parser's tolerance of it.
    """
    headers = {name: value for name, value in attributes.items()}
    headers.update(
        {
            "content-type": "application/octet-stream",
            "user-agent": GOOGLE_USER_AGENT,
            "from": "noreply@google.com",
            "x-goog-pubsub-subscription-name": subscription,
            "x-goog-pubsub-message-id": message_id,
            "x-goog-pubsub-publish-time": publish_time,
        }
    )
    if ordering_key is not None:
        headers["x-goog-pubsub-ordering-key"] = ordering_key
    if delivery_attempt is not None:
        headers["x-goog-pubsub-delivery-attempt"] = str(delivery_attempt)
    if authorization is not None:
        headers["authorization"] = authorization
    return headers, data


def _storage_attributes(
    bucket: str, name: str, event_type: str, event_id: str, time: str
) -> dict[str, str]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
        "type": event_type,
        "subject": f"objects/{name}",
        "time": time,
        "bucket": bucket,
    }


def storage_cloudevent_binary(
    bucket: str,
    name: str,
    generation: int,
    *,
    size: int = 1024,
    event_type: str = STORAGE_FINALIZED,
    event_id: str = "11286587347385012",
    time: str = "2024-05-14T09:21:07.311Z",
) -> tuple[dict[str, str], bytes]:
    """(headers, body) of an Eventarc Cloud Storage event in binary content mode."""
    attributes = _storage_attributes(bucket, name, event_type, event_id, time)
    headers = {f"ce-{key}": quote(value, safe=_CE_SAFE) for key, value in attributes.items()}
    headers["content-type"] = "application/json; charset=utf-8"
    headers["user-agent"] = GOOGLE_USER_AGENT
    body = json.dumps(object_resource(bucket, name, generation, size=size)).encode()
    return headers, body


def storage_cloudevent_structured(
    bucket: str,
    name: str,
    generation: int,
    *,
    size: int = 1024,
    event_type: str = STORAGE_FINALIZED,
    event_id: str = "11286587347385012",
    time: str = "2024-05-14T09:21:07.311Z",
) -> tuple[dict[str, str], bytes]:
    """(headers, body) of the same event in structured content mode."""
    event: dict[str, Any] = _storage_attributes(bucket, name, event_type, event_id, time)
    event["datacontenttype"] = "application/json"
    event["data"] = object_resource(bucket, name, generation, size=size)
    headers = {"content-type": "application/cloudevents+json; charset=utf-8"}
    return headers, json.dumps(event).encode()


def pubsub_cloudevent(
    data: bytes,
    attributes: dict[str, str],
    *,
    message_id: str = "11286587347385013",
    topic: str = TOPIC,
    subscription: str = f"projects/{PROJECT}/subscriptions/eventarc-us-central1-ferry-sub-123",
    structured: bool = False,
) -> tuple[dict[str, str], bytes]:
    """(headers, body) of an Eventarc ``messagePublished`` event carrying one Pub/Sub message.

    Pass the output of `gcs_notification` as (data, attributes) for a GCS notification that
    reaches the service through an Eventarc Pub/Sub trigger.
    """
    payload = {
        "message": pubsub_message_json(data, attributes, message_id=message_id),
        "subscription": subscription,
    }
    event = {
        "specversion": "1.0",
        "id": message_id,
        "source": f"//pubsub.googleapis.com/{topic}",
        "type": PUBSUB_PUBLISHED,
        "time": PUBLISH_TIME,
    }
    if structured:
        body = {**event, "datacontenttype": "application/json", "data": payload}
        return {"content-type": "application/cloudevents+json"}, json.dumps(body).encode()
    headers = {f"ce-{key}": quote(value, safe=_CE_SAFE) for key, value in event.items()}
    headers["content-type"] = "application/json"
    return headers, json.dumps(payload).encode()
