"""The push edges' wire shapes (pydantic) and their one ValidationError -> RequestError mapping."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from app.edges.wire import (
    JSON_ERRORS,
    ObjectResource,
    PushEnvelope,
    StructuredCloudEvent,
    load_json,
    parse_integer,
    request_error,
)
from core.errors import RequestError


@pytest.mark.parametrize(
    "message",
    [
        {"messageId": "7", "publishTime": "2024-05-14T09:21:07Z"},
        {"message_id": "7", "publish_time": "2024-05-14T09:21:07Z"},
    ],
    ids=["camelCase", "snake_case"],
)
def test_either_spelling_of_the_message_keys_is_read(message: dict[str, str]) -> None:
    data = base64.b64encode(b"payload").decode()
    envelope = PushEnvelope.model_validate(
        {"message": {**message, "data": data}, "deliveryAttempt": "3"}
    )
    assert envelope.message.data == b"payload"
    assert envelope.message.message_id == "7"
    assert envelope.message.publish_time == "2024-05-14T09:21:07Z"
    assert envelope.delivery_attempt == 3


def test_every_problem_is_named_in_one_request_error() -> None:
    with pytest.raises(ValidationError) as raised:
        PushEnvelope.model_validate(
            {"message": {"data": 5, "attributes": {"a": 1}, "messageId": 42}, "deliveryAttempt": -1}
        )
    error = request_error(raised.value, "push envelope")
    assert isinstance(error, RequestError) and not error.retriable and error.http_status == 400
    assert error.message.startswith("push envelope: ")
    for problem in (
        "'message.data' must be a base64 string, got int 5",
        "'message.attributes' values must be strings; not a string: a",
        "'messageId' must be a string, got int 42",
        "'deliveryAttempt' must be a non-negative integer, got int -1",
    ):
        assert problem in error.message


def test_a_missing_message_is_not_an_object() -> None:
    with pytest.raises(ValidationError) as raised:
        PushEnvelope.model_validate({"subscription": "projects/p/subscriptions/s"})
    assert request_error(raised.value, "x").message == "x: 'message' must be an object, got null"


def test_an_object_resource_reads_names_leniently_and_keeps_integers_raw() -> None:
    resource = ObjectResource.model_validate(
        {"bucket": "b", "name": 5, "generation": "12", "size": [1], "kind": "storage#object"}
    )
    assert (resource.bucket, resource.name) == ("b", None)
    assert (resource.generation, resource.size) == ("12", [1])


@pytest.mark.parametrize(
    ("value", "expected"), [(None, None), ("", None), (7, 7), ("12", 12)], ids=str
)
def test_integers_come_as_numbers_or_decimal_strings(value: object, expected: int | None) -> None:
    assert parse_integer(value, "generation") == expected


@pytest.mark.parametrize("value", ["-1", -1, "1.5", "x", True, [1], 1.0], ids=repr)
def test_anything_else_is_a_request_error_with_the_label(value: object) -> None:
    with pytest.raises(RequestError, match=r"^generation of gs://b/o must be a non-negative"):
        parse_integer(value, "generation of gs://b/o")


def test_structured_cloudevent_requires_its_context_attributes() -> None:
    with pytest.raises(ValidationError) as raised:
        StructuredCloudEvent.model_validate({"id": "1", "type": "t"})
    assert {e["loc"][0] for e in raised.value.errors()} == {"source", "specversion"}


def test_json_nested_deeper_than_the_stack_is_one_of_the_json_errors() -> None:
    with pytest.raises(JSON_ERRORS):
        load_json(b"[" * 100_000 + b"]" * 100_000)
