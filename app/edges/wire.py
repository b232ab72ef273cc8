"""The JSON shapes ferry's push edges receive, as pydantic models, and the one mapping from
a pydantic `ValidationError` to a `RequestError` (like the catalog's for the pipelines file).

Pure: no I/O. `app.edges.events` reads headers and bodies and hands the JSON to these models.
An error message quotes at most `PREVIEW_CHARS` characters of what was received.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Annotated, Any, Final

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from core.errors import RequestError
from core.problems import COMPLETE, PROBLEM, labelled_text

PREVIEW_CHARS: Final = 200
_INTEGER = re.compile(r"[0-9]+")

JSON_ERRORS: Final = (UnicodeDecodeError, json.JSONDecodeError, RecursionError)
"""What json.loads raises on bytes that are not JSON, or JSON nested deeper than Python's stack."""


def _complete(text: str) -> PydanticCustomError:
    return PydanticCustomError(COMPLETE, "{problem}", {"problem": text})


def _problem(text: str) -> PydanticCustomError:
    return PydanticCustomError(PROBLEM, "{problem}", {"problem": text})


def request_error(error: ValidationError, where: str, *, label: str | None = None) -> RequestError:
    """Every problem pydantic found, in one sentence per problem, after `where`."""
    text = labelled_text(error, label=label, describe=describe)
    return RequestError(f"{where}: {text}" if where else text)


def _optional_integer(value: object) -> int | None:
    """An integer sent as a JSON number or a decimal string (GCS sends int64 as strings)."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        return int(value)
    raise _problem(f"must be a non-negative integer, got {describe(value)}")


def _base64_data(value: object) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise _complete(f"'message.data' must be a base64 string, got {describe(value)}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise _complete(
            f"'message.data' is not valid base64 ({error}); it starts {preview(value)}"
        ) from None


def _string_attributes(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _complete(f"'message.attributes' must be an object, got {describe(value)}")
    wrong = [str(key) for key, item in value.items() if not isinstance(item, str)]
    if wrong:
        raise _complete(
            f"'message.attributes' values must be strings; not a string: {clip(', '.join(wrong))}"
        )
    return dict(value)


def _an_object(value: object) -> object:
    if not isinstance(value, dict):
        raise _complete(f"'message' must be an object, got {describe(value)}")
    return value


def _lenient_name(value: object) -> str | None:
    """A bucket or object name in a resource; anything but a non-empty string is no name."""
    return value if isinstance(value, str) and value else None


OptionalInteger = Annotated[int | None, BeforeValidator(_optional_integer)]
_INTEGER_ADAPTER: Final = TypeAdapter(OptionalInteger)


class _Wire(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class PushMessage(_Wire):
    """``message`` of a wrapped push (Pub/Sub writes both key spellings)."""

    data: Annotated[bytes, BeforeValidator(_base64_data)] = b""
    attributes: Annotated[dict[str, str], BeforeValidator(_string_attributes)] = Field(
        default_factory=dict
    )
    message_id: str | None = Field(
        default=None, validation_alias=AliasChoices("messageId", "message_id")
    )
    publish_time: str | None = Field(
        default=None, validation_alias=AliasChoices("publishTime", "publish_time")
    )


class PushEnvelope(_Wire):
    """The body of a wrapped push, or the data of a ``messagePublished`` CloudEvent."""

    message: Annotated[PushMessage, BeforeValidator(_an_object)] = Field(
        default=None, validate_default=True
    )
    subscription: str | None = None
    delivery_attempt: OptionalInteger = Field(default=None, alias="deliveryAttempt")


class ObjectResource(_Wire):
    """The Cloud Storage JSON API object resource (notification data, storage CloudEvents).

    Only what ferry reads; generation and size are kept raw here and parsed with a label
    that names the object (`parse_integer`).
    """

    bucket: Annotated[str | None, BeforeValidator(_lenient_name)] = None
    name: Annotated[str | None, BeforeValidator(_lenient_name)] = None
    generation: object = None
    size: object = None


class StructuredCloudEvent(_Wire):
    """The required context attributes of a structured-mode CloudEvent (the SDK reads the
    rest, but fills a missing id/time/specversion with defaults: a sender must send them)."""

    id: Any
    source: Any
    type: Any
    specversion: Any
    time: Any = None


def parse_integer(value: object, what: str) -> int | None:
    try:
        return _INTEGER_ADAPTER.validate_python(value)
    except ValidationError as error:
        raise request_error(error, "", label=what) from None


def load_json(raw: str | bytes) -> object:
    """json.loads; raises one of `JSON_ERRORS`."""
    return json.loads(raw)


# --- quoting untrusted input ----------------------------------------------------------


def clip(text: str) -> str:
    if len(text) > PREVIEW_CHARS:
        return f"{text[:PREVIEW_CHARS]}... ({len(text)} characters)"
    return text


def preview(value: str | bytes) -> str:
    """A short, quoted excerpt of untrusted input, safe to put in an error message."""
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
    shown = repr(text[:PREVIEW_CHARS])
    return shown if len(text) <= PREVIEW_CHARS else f"{shown}... ({len(text)} characters)"


def describe(value: object) -> str:
    if value is None:
        return "null"
    return f"{type(value).__name__} {clip(repr(value))}"
