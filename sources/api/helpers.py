"""Pure functions of the API source: parameters, Retry-After, safe URLs, status mapping."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import date, datetime
from email.utils import mktime_tz, parsedate_tz
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from core.errors import FerryError, Party, RequestError
from core.errors import error_for_status as status_error


def merge_params(
    declared: Mapping[str, Any],
    overrides: Mapping[str, str] | None,
    *,
    cursor_param: str | None = None,
) -> dict[str, Any]:
    """Declared query parameters with the request's overrides on top.

    Overrides may replace declared parameters and add new ones; the parameter that carries
    the incremental cursor is owned by dlt state, so overriding it is refused.
    """
    merged = dict(declared)
    for name, value in (overrides or {}).items():
        if not isinstance(name, str) or not name:
            raise RequestError(f"query parameter name {name!r} must be a non-empty string")
        if not isinstance(value, str):
            raise RequestError(f"query parameter '{name}' must be a string")
        if name == cursor_param:
            raise RequestError(
                f"query parameter '{name}' carries the incremental cursor and cannot be overridden"
            )
        merged[name] = value
    return merged


def retry_after_seconds(header: str | None, *, now: float | None = None) -> float | None:
    """Seconds a `Retry-After` header asks us to wait (delta-seconds or HTTP date)."""
    if header is None:
        return None
    value = header.strip()
    if value.isdigit():
        return float(value)
    parsed = parsedate_tz(value)
    if parsed is None:
        return None
    return max(0.0, mktime_tz(parsed) - (time.time() if now is None else now))


def safe_url(url: str) -> str:
    """`scheme://host[:port]/path` of a URL: no credentials, query string or fragment."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<malformed URL>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if port is not None:
        host = f"{host}:{port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def error_for_status(status: int) -> type[FerryError]:
    """The error class, named for how to recover, of an API's HTTP error status."""
    return status_error(status, party=Party.SOURCE)


def cursor_param_value(value: Any) -> str:
    """How a cursor's last value is written into a query parameter."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)
