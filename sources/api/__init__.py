"""REST API source on dlt's REST client: one dlt resource yielding one page (list of
records) per request, with auth from env vars, dlt paginators, retries, an incremental
cursor kept in dlt state, and an SSRF guard on every request."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dlt
from dlt.extract import DltResource
from dlt.extract.incremental import Incremental

from core.spec import ApiSource
from sources.api.client import build_client, build_paginator
from sources.api.guard import check_url
from sources.api.helpers import merge_params
from sources.api.pages import fetch_pages
from sources.api.settings import BACKOFF_FACTOR, MAX_RETRY_DELAY_SECONDS

__all__ = ["api_pages", "check_url"]


def api_pages(
    spec: ApiSource,
    *,
    resource_name: str,
    params: Mapping[str, str] | None = None,
    backoff_factor: float = BACKOFF_FACTOR,
    max_retry_delay: float = MAX_RETRY_DELAY_SECONDS,
) -> DltResource:
    """A dlt resource named `resource_name` yielding one page of records per request.

    `params` override or add query parameters; base URL, path and host stay the spec's.
    Auth secrets are read from the env vars the spec names (ConfigError if unset). With
    `spec.incremental`, the cursor's last value lives in dlt state and is sent as
    `spec.incremental.param` on the next run; records at or below it are filtered out.
    Raises FerryError subclasses (wrapped by dlt when run inside a pipeline).
    """
    cursor_param = spec.incremental.param if spec.incremental else None
    request_params = merge_params(spec.params, params, cursor_param=cursor_param)
    client = build_client(spec, backoff_factor=backoff_factor, max_retry_delay=max_retry_delay)
    paginator = build_paginator(spec.paginator)
    cursor: Incremental[Any] | None = None
    if spec.incremental is not None:
        cursor = dlt.sources.incremental(
            spec.incremental.cursor_path, initial_value=spec.incremental.initial_value
        )
    resource: DltResource = dlt.resource(fetch_pages, name=resource_name)(
        client=client,
        path=spec.path,
        params=request_params,
        paginator=paginator,
        resource_name=resource_name,
        cursor=cursor,
        cursor_param=cursor_param,
        max_retry_delay=max_retry_delay,
    )
    return resource
