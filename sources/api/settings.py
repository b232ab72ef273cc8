"""Constants of the API source; no logic."""

from __future__ import annotations

RETRY_STATUS: frozenset[int] = frozenset({408, 429, *range(500, 600)})
"""Statuses retried with backoff: the same request may succeed later."""

BACKOFF_FACTOR = 1.0
"""Seconds before the first retry; each later wait doubles (capped by the max delay)."""

MAX_RETRY_DELAY_SECONDS = 30.0
"""Longest wait between attempts. A longer Retry-After is not waited for: the run fails
as retriable so the orchestrator retries it later, instead of holding the worker."""

BLOCKED_HOSTNAMES: frozenset[str] = frozenset(
    {"metadata.google.internal", "metadata.goog", "metadata", "localhost"}
)
"""Names refused before resolving (they point at the metadata server or this machine)."""
