"""Fields every log line of one request or one run carries (trace, run id), kept in a context
variable so code anywhere on the path logs them without passing them around."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

TRACE_KEY = "logging.googleapis.com/trace"
SPAN_KEY = "logging.googleapis.com/spanId"
SAMPLED_KEY = "logging.googleapis.com/trace_sampled"
LABELS_KEY = "logging.googleapis.com/labels"

_fields: ContextVar[Mapping[str, Any]] = ContextVar(
    "ferry_log_fields", default=MappingProxyType({})
)

_CLOUD_TRACE = re.compile(r"^([0-9a-fA-F]{32})(?:/(\d{1,20}))?(?:;o=([01]))?$")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def current() -> Mapping[str, Any]:
    return _fields.get()


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add `fields` to every log line inside the block (labels merge with outer ones)."""
    outer = _fields.get()
    merged = {**outer, **{k: v for k, v in fields.items() if k != LABELS_KEY}}
    labels = {**outer.get(LABELS_KEY, {}), **fields.get(LABELS_KEY, {})}
    if labels:
        merged[LABELS_KEY] = labels
    token = _fields.set(merged)
    try:
        yield
    finally:
        _fields.reset(token)


def run_fields(run_id: str, pipeline: str) -> dict[str, Any]:
    """A run's lines: labelled with its run id and pipeline (labels are strings)."""
    return {LABELS_KEY: {"run_id": run_id, "pipeline": pipeline}}


def trace_fields(
    project: str | None, cloud_trace: str | None, traceparent: str | None
) -> dict[str, Any]:
    """Cloud Logging's trace fields from `X-Cloud-Trace-Context` (TRACE/SPAN;o=1) or W3C
    `traceparent` (00-TRACE-SPAN-FLAGS); {} without a project or a valid header."""
    if not project:
        return {}
    trace = span = None
    sampled = False
    match = _CLOUD_TRACE.match((cloud_trace or "").strip())
    if match:
        trace, span, sampled = match[1].lower(), match[2], match[3] == "1"
        # Cloud Logging wants the span id as 16 hex digits; the header carries it in decimal
        span = f"{int(span):016x}" if span else None
    else:
        match = _TRACEPARENT.match((traceparent or "").strip().lower())
        if match and set(match[1]) != {"0"}:
            trace, span, sampled = match[1], match[2], int(match[3], 16) & 1 == 1
    if trace is None:
        return {}
    fields: dict[str, Any] = {TRACE_KEY: f"projects/{project}/traces/{trace}", SAMPLED_KEY: sampled}
    if span:
        fields[SPAN_KEY] = span
    return fields
