"""Builds dlt's RESTClient for one ApiSource: auth from env vars, paginator, retrying and
host-guarded session."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterable
from typing import Any

from dlt.sources.helpers.requests import Client
from dlt.sources.helpers.rest_client.auth import AuthConfigBase
from dlt.sources.helpers.rest_client.client import RESTClient
from dlt.sources.helpers.rest_client.paginators import BasePaginator
from dlt.sources.rest_api.config_setup import create_auth, create_paginator
from requests import HTTPError, Request, Response, Session

from core.errors import ConfigError, RequestError
from core.spec import ApiAuth, ApiSource
from sources.api.guard import GuardedAdapter, normalize_host, origin
from sources.api.helpers import retry_after_seconds, safe_url
from sources.api.settings import RETRY_STATUS

log = logging.getLogger(__name__)


def read_secret(env_name: str, *, role: str) -> str:
    """The value of a secret env var; ConfigError naming the variable (never the value)."""
    value = os.environ.get(env_name)
    if not value:
        raise ConfigError(f"API auth {role} env var '{env_name}' is not set")
    return value


def build_auth(auth: ApiAuth | None) -> AuthConfigBase | None:
    """dlt's authenticator for the spec's auth, with secrets read from the environment."""
    if auth is None:
        return None
    config: dict[str, Any]
    if auth.type == "bearer":
        config = {"type": "bearer", "token": read_secret(auth.token_env or "", role="token")}
    elif auth.type == "api_key":
        config = {
            "type": "api_key",
            "name": auth.name,
            "location": auth.location,
            "api_key": read_secret(auth.token_env or "", role="key"),
        }
    else:
        config = {
            "type": "http_basic",
            "username": read_secret(auth.username_env or "", role="username"),
            "password": read_secret(auth.password_env or "", role="password"),
        }
    built: AuthConfigBase | None = create_auth(config)  # type: ignore[arg-type]
    return built


def build_paginator(config: dict[str, Any] | str) -> BasePaginator | None:
    """dlt's paginator for the spec's paginator config; None lets dlt detect it ("auto")."""
    try:
        paginator: BasePaginator | None = create_paginator(config)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"API paginator {config!r} is invalid: {exc}") from None
    return paginator


def raise_for_status(response: Response, *args: Any, **kwargs: Any) -> None:
    """Response hook: raise HTTPError on 4xx/5xx with a message free of query strings.

    dlt's own hook puts the whole URL (and optionally the body) in the message; an API key
    sent as a query parameter would end up in logs through it.
    """
    if response.status_code >= 400:
        raise HTTPError(
            f"HTTP {response.status_code} from {safe_url(response.url)}", response=response
        )


def credential_headers(auth: ApiAuth | None) -> tuple[str, ...]:
    """The request headers that carry the spec's credentials."""
    if auth is None:
        return ()
    if auth.type == "api_key":
        return (auth.name or "",) if auth.location == "header" else ()
    return ("Authorization",)


def build_session(spec: ApiSource, *, backoff_factor: float, max_retry_delay: float) -> Session:
    """dlt's retrying requests session, with every request checked by the host guard and
    credentials kept to base_url's origin."""

    def should_retry(response: Response | None, exception: BaseException | None) -> bool:
        # status retries live here (not in `status_codes`) so a Retry-After longer than
        # `max_retry_delay` fails at once instead of being waited out
        if response is None or response.status_code not in RETRY_STATUS:
            return False
        delay = retry_after_seconds(response.headers.get("Retry-After"))
        return delay is None or delay <= max_retry_delay

    client = Client(
        request_timeout=spec.timeout_seconds,
        raise_for_status=False,
        status_codes=(),
        retry_condition=should_retry,
        request_max_attempts=spec.max_attempts,
        request_backoff_factor=backoff_factor,
        request_max_retry_delay=max_retry_delay,
        respect_retry_after_header=True,
    )
    session: Session = client.session
    adapter = GuardedAdapter(
        spec.allowed_hosts,
        credential_origin=origin(spec.base_url),
        credential_headers=credential_headers(spec.auth),
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class GuardedRESTClient(RESTClient):
    """dlt's RESTClient, keeping credentials to base_url's origin and logging only
    `scheme://host/path` of each request.

    A next-page link (or a path given as a full URL) to another origin is refused unless
    its host is in `allowed_hosts`, and is then sent without the auth. dlt logs the full
    URL, redacting only well-known parameter names; an API key sent under another name
    would be logged.
    """

    def __init__(self, *args: Any, allowed_hosts: Iterable[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.credential_origin = origin(self.base_url)
        self.listed_hosts = frozenset(normalize_host(host) for host in allowed_hosts)

    def _send_request(self, request: Request, **kwargs: Any) -> Response:
        target = origin(request.url)
        if target != self.credential_origin:
            host = target[1] if target else ""
            if host not in self.listed_hosts:
                raise RequestError(
                    f"a page link leads to another host '{host or safe_url(request.url)}' "
                    f"than base_url's; list it in allowed_hosts if this source must follow it"
                )
            # the request object is reused for the next page: strip auth on a copy
            request = copy.copy(request)
            request.auth = None
        return super()._send_request(request, **kwargs)

    def _log_request(self, request: Request, prepared_url: str) -> None:
        log.debug("%s %s", request.method, safe_url(prepared_url))


def build_client(
    spec: ApiSource, *, backoff_factor: float, max_retry_delay: float
) -> GuardedRESTClient:
    return GuardedRESTClient(
        base_url=spec.base_url,
        headers=dict(spec.headers) or None,
        auth=build_auth(spec.auth),
        paginator=None,
        data_selector=spec.data_selector,
        session=build_session(spec, backoff_factor=backoff_factor, max_retry_delay=max_retry_delay),
        allowed_hosts=spec.allowed_hosts,
    )
