"""app/ops/deadletter.py: a terminal failure's message is parked with its reason, or kept
(DeadLetterUnavailableError: the caller nacks) when the topic cannot be reached."""

from __future__ import annotations

from typing import Any

import pytest

import app.ops.deadletter as deadletter
from core.errors import BadDataError, DeadLetterUnavailableError, outcome_of


class Publisher:
    def __init__(self, fails: bool = False) -> None:
        self.fails = fails
        self.published: list[tuple[str, bytes, dict[str, str]]] = []

    def publish(self, topic: str, data: bytes, **attributes: str) -> Any:
        if self.fails:
            raise ConnectionError("topic unreachable")
        self.published.append((topic, data, attributes))
        return self

    def result(self, timeout: float) -> str:
        return "message-1"


def test_without_a_topic_nothing_is_published(monkeypatch: pytest.MonkeyPatch) -> None:
    publisher = Publisher()
    monkeypatch.setattr(deadletter, "_publisher", lambda: publisher)
    assert deadletter.dead_letter(None, b"{}", {}, BadDataError("ragged")) is False
    assert publisher.published == []


def test_the_message_is_parked_with_its_reason_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    publisher = Publisher()
    monkeypatch.setattr(deadletter, "_publisher", lambda: publisher)
    error = BadDataError("x" * 5000, pipeline="people", details={"row": 3})
    assert deadletter.dead_letter("projects/p/topics/dead", b"body", {"objectId": "a"}, error)
    ((topic, data, attributes),) = publisher.published
    assert (topic, data, attributes["objectId"]) == ("projects/p/topics/dead", b"body", "a")
    assert attributes["ferry_error_code"] == "bad_data"
    assert attributes["ferry_error_pipeline"] == "people"
    assert len(attributes["ferry_error_message"]) == 1000, "Pub/Sub caps attribute values"
    assert "ferry_error_details" not in attributes


def test_an_unreachable_topic_keeps_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deadletter, "_publisher", lambda: Publisher(fails=True))
    with pytest.raises(DeadLetterUnavailableError) as raised:
        deadletter.dead_letter("projects/p/topics/dead", b"", {}, BadDataError("ragged"))
    assert not outcome_of(raised.value).push_ack, "nacked: the message comes back"
