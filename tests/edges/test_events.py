"""Trigger payloads -> typed events: every shape Google sends, and what a broken one says."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest

from app.edges.events import (
    UNKNOWN_EVENT_TYPE,
    GcsObjectEvent,
    PubSubMessage,
    gcs_event_from_message,
    parse_cloudevent,
    parse_push,
)
from core.errors import RequestError
from tests.pubsub_messages import (
    BUCKET,
    PUBLISH_TIME,
    SUBSCRIPTION,
    gcs_notification,
    object_resource,
    pubsub_cloudevent,
    push_envelope,
    storage_cloudevent_binary,
    storage_cloudevent_structured,
    unwrapped_push,
    wrapped_push,
)

NAME = "incoming/2024/05/orders.csv"
GENERATION = 1715678467311482


def event_of(message: PubSubMessage) -> GcsObjectEvent:
    event = gcs_event_from_message(message)
    assert event is not None
    return event


def envelope_body(**message: Any) -> bytes:
    return json.dumps({"message": message, "subscription": SUBSCRIPTION}).encode()


# --- parse_push: wrapped --------------------------------------------------------------


def test_wrapped_push_envelope_is_parsed() -> None:
    data, attributes = gcs_notification(BUCKET, NAME, GENERATION, size=2048)
    headers, body = wrapped_push(data, attributes, message_id="42", delivery_attempt=3)

    message = parse_push(headers, body)

    assert message == PubSubMessage(
        data=data,
        attributes=attributes,
        message_id="42",
        publish_time=PUBLISH_TIME,
        subscription=SUBSCRIPTION,
        delivery_attempt=3,
    )


@pytest.mark.parametrize(
    ("id_key", "time_key"),
    [("messageId", "publishTime"), ("message_id", "publish_time")],
    ids=["camel-case", "snake-case"],
)
def test_wrapped_push_reads_either_key_spelling(id_key: str, time_key: str) -> None:
    body = envelope_body(data=base64.b64encode(b"hi").decode(), **{id_key: "7", time_key: "t"})

    message = parse_push({"Content-Type": "application/json"}, body)

    assert (message.data, message.message_id, message.publish_time) == (b"hi", "7", "t")
    assert message.attributes == {}
    assert message.delivery_attempt is None


def test_wrapped_push_of_a_none_payload_notification_has_empty_data() -> None:
    data, attributes = gcs_notification(BUCKET, NAME, GENERATION, payload_format="NONE")
    headers, body = wrapped_push(data, attributes)

    message = parse_push(headers, body)

    assert "data" not in json.loads(body)["message"]
    assert message.data == b""
    assert message.attributes["payloadFormat"] == "NONE"


def test_an_envelope_is_recognised_without_any_headers() -> None:
    envelope = push_envelope(b"x", {"k": "v"}, delivery_attempt=5)

    message = parse_push({}, json.dumps(envelope).encode())

    assert (message.data, message.attributes, message.delivery_attempt) == (b"x", {"k": "v"}, 5)


# --- parse_push: unwrapped ------------------------------------------------------------


def test_unwrapped_push_reads_metadata_and_attribute_headers() -> None:
    data, attributes = gcs_notification(BUCKET, NAME, GENERATION)
    headers, body = unwrapped_push(
        data, attributes, message_id="99", ordering_key="k1", authorization="Bearer secret"
    )

    message = parse_push(headers, body)

    assert message.data == data
    assert message.message_id == "99"
    assert message.publish_time == PUBLISH_TIME
    assert message.subscription == SUBSCRIPTION
    assert message.delivery_attempt is None
    # attributes only: no transport, auth, or x-goog-pubsub-* metadata headers
    assert message.attributes == attributes


def test_unwrapped_push_restores_gcs_attribute_spelling_after_http_lowercases_it() -> None:
    data, attributes = gcs_notification(BUCKET, NAME, GENERATION)
    headers, body = unwrapped_push(data, {**attributes, "Team": "sales"})
    lowered = {name.lower(): value for name, value in headers.items()}

    message = parse_push(lowered, body)

    assert message.attributes == {**attributes, "team": "sales"}
    assert event_of(message).generation == GENERATION


@pytest.mark.parametrize(
    "spell",
    [str.lower, str.upper, str.title],
    ids=["lower", "upper", "title-case"],
)
def test_unwrapped_push_header_names_are_case_insensitive(spell: Any) -> None:
    headers, body = unwrapped_push(b"payload", {}, message_id="5", delivery_attempt=2)

    message = parse_push({spell(name): value for name, value in headers.items()}, body)

    assert (message.message_id, message.subscription, message.delivery_attempt) == (
        "5",
        SUBSCRIPTION,
        2,
    )


def test_unwrapped_body_that_looks_like_an_envelope_is_kept_raw() -> None:
    raw = json.dumps({"message": "published by a user, not a wrapper"}).encode()
    headers, body = unwrapped_push(raw, {})

    message = parse_push(headers, body)

    assert message.data == raw


def test_unwrapped_push_without_metadata_keeps_a_json_object_payload() -> None:
    resource = object_resource(BUCKET, NAME, GENERATION, size=10)

    message = parse_push({"content-type": "application/json"}, json.dumps(resource).encode())

    assert message.message_id is None
    event = event_of(message)
    assert (event.bucket, event.name, event.generation, event.size) == (
        BUCKET,
        NAME,
        GENERATION,
        10,
    )
    assert event.event_type == UNKNOWN_EVENT_TYPE
    assert not event.is_finalize


# --- parse_push: malformed ------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", "not a JSON envelope"),
        (b"{not json", "not a JSON envelope"),
        (b"\xff\xfe", "not a JSON envelope"),
        (b"[1, 2]", "JSON list"),
        (b'{"message": "hello"}', "'message' must be an object, got str"),
        (b'{"message": null}', "'message' must be an object, got null"),
        (envelope_body(data="%%%not-base64"), "'message.data' is not valid base64"),
        (envelope_body(data="YWJjZA"), "'message.data' is not valid base64"),
        (envelope_body(data=123), "'message.data' must be a base64 string"),
        (envelope_body(attributes=["a"]), "'message.attributes' must be an object"),
        (envelope_body(attributes={"a": 1, "b": "x"}), "values must be strings; not a string: a"),
        (envelope_body(messageId=42), "'messageId' must be a string"),
        (
            json.dumps({"message": {}, "deliveryAttempt": "soon"}).encode(),
            "'deliveryAttempt' must be a non-negative integer",
        ),
        (
            json.dumps({"message": {}, "deliveryAttempt": True}).encode(),
            "'deliveryAttempt' must be a non-negative integer",
        ),
    ],
    ids=[
        "empty-body",
        "invalid-json",
        "not-utf8",
        "json-array",
        "message-is-string",
        "message-is-null",
        "data-bad-characters",
        "data-bad-padding",
        "data-not-string",
        "attributes-not-object",
        "attribute-value-not-string",
        "message-id-not-string",
        "delivery-attempt-not-integer",
        "delivery-attempt-boolean",
    ],
)
def test_malformed_push_is_a_request_error(body: bytes, expected: str) -> None:
    with pytest.raises(RequestError, match=re.escape(expected)) as caught:
        parse_push({"content-type": "application/json"}, body)
    assert caught.value.http_status == 400


def test_bad_delivery_attempt_header_is_a_request_error() -> None:
    headers, body = unwrapped_push(b"x", {})
    headers["X-Goog-Pubsub-Delivery-Attempt"] = "two"

    with pytest.raises(RequestError, match="x-goog-pubsub-delivery-attempt"):
        parse_push(headers, body)


def test_error_quotes_only_the_start_of_a_huge_body() -> None:
    body = b"<html>" + b"A" * 100_000

    with pytest.raises(RequestError) as caught:
        parse_push({}, body)

    assert "<html>" in caught.value.message
    assert len(caught.value.message) < 500
    assert "100006 characters" in caught.value.message


# --- gcs_event_from_message -----------------------------------------------------------


def test_json_api_v1_notification_becomes_an_object_event() -> None:
    data, attributes = gcs_notification(BUCKET, NAME, GENERATION, size=4096)
    message = PubSubMessage(
        data=data,
        attributes=attributes,
        message_id="m1",
        publish_time=PUBLISH_TIME,
        subscription=SUBSCRIPTION,
        delivery_attempt=2,
    )

    event = event_of(message)

    assert event == GcsObjectEvent(
        bucket=BUCKET,
        name=NAME,
        generation=GENERATION,
        event_type="OBJECT_FINALIZE",
        size=4096,
        message_id="m1",
        publish_time=PUBLISH_TIME,
        delivery_attempt=2,
    )
    assert event.uri == f"gs://{BUCKET}/{NAME}"
    assert event.is_finalize
    assert not event.is_suspicious_name


def test_none_payload_notification_uses_attributes_only() -> None:
    data, attributes = gcs_notification(BUCKET, NAME, GENERATION, payload_format="NONE")

    event = event_of(PubSubMessage(data=data, attributes=attributes))

    assert (event.bucket, event.name, event.generation, event.size) == (
        BUCKET,
        NAME,
        GENERATION,
        None,
    )


def test_attributes_win_over_the_object_resource() -> None:
    data, attributes = gcs_notification(BUCKET, NAME, GENERATION)
    attributes = {**attributes, "objectId": "other.csv", "objectGeneration": "7"}

    event = event_of(PubSubMessage(data=data, attributes=attributes))

    assert (event.name, event.generation, event.size) == ("other.csv", 7, 1024)


def test_missing_attributes_are_filled_from_the_object_resource() -> None:
    data, _ = gcs_notification(BUCKET, NAME, GENERATION)
    partial = {"eventType": "OBJECT_FINALIZE", "payloadFormat": "JSON_API_V1"}

    event = event_of(PubSubMessage(data=data, attributes=partial))

    assert (event.bucket, event.name, event.generation) == (BUCKET, NAME, GENERATION)
    assert event.is_finalize


@pytest.mark.parametrize(
    "event_type",
    ["OBJECT_DELETE", "OBJECT_ARCHIVE", "OBJECT_METADATA_UPDATE"],
    ids=["delete", "archive", "metadata-update"],
)
def test_other_notification_types_are_events_but_not_finalize(event_type: str) -> None:
    data, attributes = gcs_notification(BUCKET, NAME, GENERATION, event_type=event_type)

    event = event_of(PubSubMessage(data=data, attributes=attributes))

    assert event.event_type == event_type
    assert not event.is_finalize


@pytest.mark.parametrize(
    "message",
    [
        PubSubMessage(data=b'{"order": 1}', attributes={"source": "shop"}),
        PubSubMessage(data=b""),
        PubSubMessage(data=b"plain text, not json"),
        PubSubMessage(data=b'[{"bucket": "b", "name": "n"}]'),
        PubSubMessage(data=b'{"bucket": "b"}'),
        PubSubMessage(data=b'{"bucket": "b", "name": 5}'),
    ],
    ids=[
        "business-message",
        "empty",
        "plain-text",
        "json-array",
        "resource-without-name",
        "name-not-string",
    ],
)
def test_messages_that_are_not_gcs_notifications_give_none(message: PubSubMessage) -> None:
    assert gcs_event_from_message(message) is None


@pytest.mark.parametrize(
    ("attributes", "data", "expected"),
    [
        ({"objectGeneration": "abc"}, None, "generation of gs://.* must be a non-negative"),
        ({"objectGeneration": "-1"}, None, "must be a non-negative integer, got str '-1'"),
        ({"objectGeneration": "1.5"}, None, "must be a non-negative integer"),
        ({"objectGeneration": ""}, b'{"generation": "x1"}', "generation of gs://"),
        ({}, b'{"generation": [1]}', "generation of gs://.*got list"),
        ({}, b'{"size": "big"}', "size of gs://"),
    ],
    ids=[
        "letters",
        "negative",
        "decimal",
        "resource-generation-not-integer",
        "resource-generation-list",
        "size-not-integer",
    ],
)
def test_non_integer_generation_or_size_is_a_request_error(
    attributes: dict[str, str], data: bytes | None, expected: str
) -> None:
    base = {"bucketId": BUCKET, "objectId": NAME, "eventType": "OBJECT_FINALIZE"}
    message = PubSubMessage(data=data or b"", attributes={**base, **attributes})

    with pytest.raises(RequestError, match=expected):
        gcs_event_from_message(message)


def test_notification_attributes_without_an_object_are_a_request_error() -> None:
    message = PubSubMessage(
        data=b"", attributes={"eventType": "OBJECT_FINALIZE", "bucketId": BUCKET}, message_id="9"
    )

    with pytest.raises(RequestError, match=r"message 9.*no 'objectId' attribute"):
        gcs_event_from_message(message)


def test_json_api_v1_with_non_json_data_is_a_request_error() -> None:
    _, attributes = gcs_notification(BUCKET, NAME, GENERATION)

    with pytest.raises(RequestError, match="payloadFormat JSON_API_V1 but its data is not JSON"):
        gcs_event_from_message(PubSubMessage(data=b"\x00garbage", attributes=attributes))


@pytest.mark.parametrize(
    "name",
    [
        "../etc/passwd",
        "incoming/../../secrets.csv",
        "incoming/..",
        "..\\windows\\system.ini",
        "/etc/passwd",
        "incoming/./orders.csv",
        "%2e%2e/etc/passwd",
        "incoming/%2E%2E/x.csv",
        "incoming/.%2e/x.csv",
        "a%2fb.csv",
        "a%5cb.csv",
        "incoming/%252e%252e/x.csv",
        "orders\x00.csv",
        "orders%00.csv",
        "orders\n.csv",
    ],
    ids=[
        "leading-dotdot",
        "inner-dotdot",
        "trailing-dotdot",
        "backslash-dotdot",
        "absolute",
        "dot-segment",
        "encoded-dotdot",
        "encoded-dotdot-upper",
        "half-encoded-dotdot",
        "encoded-slash",
        "encoded-backslash",
        "double-encoded-dotdot",
        "nul",
        "encoded-nul",
        "newline",
    ],
)
def test_suspicious_names_are_flagged_but_kept_verbatim(name: str) -> None:
    _, attributes = gcs_notification(BUCKET, name, GENERATION, payload_format="NONE")

    event = event_of(PubSubMessage(data=b"", attributes=attributes))

    assert event.is_suspicious_name
    assert event.name == name


@pytest.mark.parametrize(
    "name",
    [
        "incoming/orders.csv",
        "orders..2024.csv",
        "incoming/..hidden/x.csv",
        "report (final) 2024.csv",
        "données/ファイル.csv",
        "a%20b.csv",
    ],
    ids=[
        "plain",
        "dots-inside-name",
        "dotdot-prefix-segment",
        "spaces",
        "unicode",
        "encoded-space",
    ],
)
def test_ordinary_names_are_not_suspicious(name: str) -> None:
    assert not GcsObjectEvent(BUCKET, name, 1, "OBJECT_FINALIZE").is_suspicious_name


# --- parse_cloudevent: storage --------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [storage_cloudevent_binary, storage_cloudevent_structured],
    ids=["binary", "structured"],
)
def test_storage_finalized_cloudevent_becomes_an_object_event(build: Any) -> None:
    headers, body = build(BUCKET, NAME, GENERATION, size=77, event_id="ev-1")

    event = parse_cloudevent(headers, body)

    assert event == GcsObjectEvent(
        bucket=BUCKET,
        name=NAME,
        generation=GENERATION,
        event_type="google.cloud.storage.object.v1.finalized",
        size=77,
        message_id="ev-1",
        publish_time="2024-05-14T09:21:07.311Z",
        delivery_attempt=None,
    )
    assert isinstance(event, GcsObjectEvent)
    assert event.is_finalize


def test_cloudevent_without_time_has_no_publish_time() -> None:
    headers, body = storage_cloudevent_binary(BUCKET, NAME, GENERATION)
    del headers["ce-time"]

    event = parse_cloudevent(headers, body)

    assert isinstance(event, GcsObjectEvent)
    assert event.publish_time is None


def test_structured_content_type_is_case_insensitive() -> None:
    _, body = storage_cloudevent_structured(BUCKET, NAME, GENERATION)

    event = parse_cloudevent({"Content-Type": "Application/CloudEvents+JSON"}, body)

    assert isinstance(event, GcsObjectEvent)
    assert event.generation == GENERATION


def test_binary_cloudevent_headers_are_case_insensitive() -> None:
    headers, body = storage_cloudevent_binary(BUCKET, NAME, GENERATION)
    shouted = {name.title(): value for name, value in headers.items()}

    event = parse_cloudevent(shouted, body)

    assert isinstance(event, GcsObjectEvent)
    assert event.uri == f"gs://{BUCKET}/{NAME}"


@pytest.mark.parametrize(
    "event_type",
    [
        "google.cloud.storage.object.v1.archived",
        "google.cloud.storage.object.v1.deleted",
        "google.cloud.storage.object.v1.metadataUpdated",
    ],
    ids=["archived", "deleted", "metadata-updated"],
)
def test_other_storage_cloudevents_keep_their_type(event_type: str) -> None:
    headers, body = storage_cloudevent_binary(BUCKET, NAME, GENERATION, event_type=event_type)

    event = parse_cloudevent(headers, body)

    assert isinstance(event, GcsObjectEvent)
    assert event.event_type == event_type
    assert not event.is_finalize


@pytest.mark.parametrize(
    "drop_bucket_header",
    [False, True],
    ids=["bucket-from-ce-bucket", "bucket-from-ce-source"],
)
def test_storage_cloudevent_falls_back_to_subject_and_source(drop_bucket_header: bool) -> None:
    headers, _ = storage_cloudevent_binary(BUCKET, "a b/c.csv", GENERATION)
    if drop_bucket_header:
        del headers["ce-bucket"]
    body = json.dumps({"generation": "3", "size": "1"}).encode()

    event = parse_cloudevent(headers, body)

    assert isinstance(event, GcsObjectEvent)
    assert (event.bucket, event.name, event.generation) == (BUCKET, "a b/c.csv", 3)
    assert headers["ce-subject"] == "objects/a%20b/c.csv"


def test_storage_cloudevent_name_from_data_is_never_percent_decoded() -> None:
    headers, body = storage_cloudevent_binary(BUCKET, "%2e%2e/x.csv", GENERATION)

    event = parse_cloudevent(headers, body)

    assert isinstance(event, GcsObjectEvent)
    assert event.name == "%2e%2e/x.csv"
    assert event.is_suspicious_name


# --- parse_cloudevent: Pub/Sub --------------------------------------------------------


@pytest.mark.parametrize("structured", [False, True], ids=["binary", "structured"])
def test_message_published_cloudevent_carries_a_gcs_notification(structured: bool) -> None:
    data, attributes = gcs_notification(BUCKET, NAME, GENERATION)
    headers, body = pubsub_cloudevent(data, attributes, message_id="m7", structured=structured)

    message = parse_cloudevent(headers, body)

    assert isinstance(message, PubSubMessage)
    assert (message.data, message.attributes, message.message_id) == (data, attributes, "m7")
    assert message.subscription is not None
    assert message.subscription.startswith("projects/ferry-test/subscriptions/eventarc-")
    event = event_of(message)
    assert (event.uri, event.generation, event.message_id) == (
        f"gs://{BUCKET}/{NAME}",
        GENERATION,
        "m7",
    )


def test_unknown_cloudevent_type_gives_none() -> None:
    headers, body = storage_cloudevent_binary(BUCKET, NAME, GENERATION)
    headers["ce-type"] = "google.cloud.audit.log.v1.written"

    assert parse_cloudevent(headers, body) is None


# --- parse_cloudevent: malformed ------------------------------------------------------


def binary(**changes: str | None) -> tuple[dict[str, str], bytes]:
    headers, body = storage_cloudevent_binary(BUCKET, NAME, GENERATION)
    for name, value in changes.items():
        header = name.replace("_", "-")
        if value is None:
            del headers[header]
        else:
            headers[header] = value
    return headers, body


def structured(**changes: Any) -> tuple[dict[str, str], bytes]:
    headers, body = storage_cloudevent_structured(BUCKET, NAME, GENERATION)
    document = json.loads(body)
    for name, value in changes.items():
        if value is None:
            del document[name]
        else:
            document[name] = value
    return headers, json.dumps(document).encode()


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (binary(ce_id=None), "lacks header\\(s\\) ce-id"),
        (binary(ce_type=None, ce_source=None), "ce-source, ce-type"),
        (binary(ce_specversion="2.0"), "malformed CloudEvent: .*specversion"),
        (binary(ce_time="yesterday"), "malformed CloudEvent"),
        (binary(ce_unknown_ext="x"), "malformed CloudEvent: .*unknown-ext"),
        ((binary()[0], b"{broken"), "data is not JSON"),
        ((binary()[0], b"[1, 2]"), "data must be a JSON object, got list"),
        ((binary()[0], b""), "data must be a JSON object, got null"),
        ((binary(ce_subject=None)[0], b'{"bucket": "b"}'), "names no object"),
        ((binary()[0], b'{"generation": "G"}'), "generation must be a non-negative integer"),
        (structured(id=None), "structured CloudEvent: 'id' is missing"),
        (structured(data=[1]), "data must be a JSON object"),
        (structured(data="not json"), "data is not JSON"),
        (({"content-type": "application/cloudevents+json"}, b"{oops"), "not valid JSON"),
        (({"content-type": "application/cloudevents+json"}, b"[]"), "must be a JSON object"),
        (({"content-type": "application/json"}, b"{}"), "no ce-\\* headers"),
        (({}, b""), "content-type '\\(none\\)'"),
    ],
    ids=[
        "binary-missing-id",
        "binary-missing-type-and-source",
        "binary-bad-specversion",
        "binary-bad-time",
        "binary-bad-extension-name",
        "binary-data-invalid-json",
        "binary-data-array",
        "binary-data-empty",
        "binary-data-without-name",
        "binary-bad-generation",
        "structured-missing-id",
        "structured-data-array",
        "structured-data-string-not-json",
        "structured-invalid-json",
        "structured-not-object",
        "plain-json-is-not-a-cloudevent",
        "no-headers-no-body",
    ],
)
def test_malformed_cloudevent_is_a_request_error(
    request_: tuple[dict[str, str], bytes], expected: str
) -> None:
    headers, body = request_
    with pytest.raises(RequestError, match=expected):
        parse_cloudevent(headers, body)


def test_message_published_without_a_message_is_a_request_error() -> None:
    headers, _ = pubsub_cloudevent(b"x", {})

    with pytest.raises(RequestError, match="'message' must be an object"):
        parse_cloudevent(headers, json.dumps({"subscription": SUBSCRIPTION}).encode())
