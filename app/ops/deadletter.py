"""Park a message that can never succeed on the dead-letter topic, with the reason."""

from __future__ import annotations

import json
import logging
from functools import cache
from typing import Any

from core.errors import DeadLetterUnavailableError, FerryError

log = logging.getLogger("ferry.deadletter")

PUBLISH_TIMEOUT_SECONDS = 30.0


@cache
def _publisher() -> Any:
    # PUBSUB_EMULATOR_HOST, when set, points the client at the local emulator
    from google.cloud.pubsub_v1 import PublisherClient

    return PublisherClient()


def dead_letter(
    topic: str | None, data: bytes, attributes: dict[str, str], error: FerryError
) -> bool:
    """Publish the original message plus the reason; False when no topic is configured.

    Raises DeadLetterUnavailableError when publishing fails, so the caller nacks and the
    message is not lost.
    """
    # attribute values are capped at 1024 bytes by Pub/Sub
    reason = {k: str(v)[:1000] for k, v in error.to_dict().items() if k != "details"}
    if topic is None:
        log.error(
            "terminal failure, acknowledged without a dead-letter topic: %s",
            error,
            extra={"error": reason, "message_attributes": attributes},
        )
        return False
    headers = {**attributes, **{f"ferry_error_{k}": v for k, v in reason.items()}}
    try:
        future = _publisher().publish(topic, data, **headers)
        message_id = future.result(timeout=PUBLISH_TIMEOUT_SECONDS)
    except Exception as publish_error:
        raise DeadLetterUnavailableError(
            f"could not publish to dead-letter topic {topic}: {publish_error}",
            pipeline=error.pipeline,
        ) from publish_error
    log.error(
        "terminal failure, dead-lettered as %s: %s",
        message_id,
        error,
        extra={"error": reason, "dead_letter_topic": topic, "reason_json": json.dumps(reason)},
    )
    return True
