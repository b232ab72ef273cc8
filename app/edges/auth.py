"""Optional in-app check of the OIDC token Pub/Sub push and Eventarc put on each request,
and of the token an orchestrator sends to `/runs` and the history routes.

Push checks are off unless `FERRY_PUSH_AUTH_AUDIENCE` is set, run checks unless
`FERRY_RUNS_AUTH_AUDIENCE` is; each has its own audience and allowed callers. google-auth
checks the signature and the `iat`/`exp` window; this module adds the audience, issuer and
allowed-email checks, caches Google's certificates, and maps every failure to a ferry error
whose message never contains the token.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import google.auth.exceptions

from core.errors import AuthUnavailableError, ConfigError, ForbiddenError, UnauthenticatedError
from core.settings import Settings

log = logging.getLogger("ferry.auth")

CERTS_TTL_SECONDS = 300.0
"""How long fetched certificates are used before they are fetched again."""
CERTS_MIN_REFETCH_SECONDS = 30.0
"""An unknown key id refetches at most this often, so forged `kid`s cannot flood Google."""
CERTS_FETCH_TIMEOUT_SECONDS = 5.0
SIGNING_ALGORITHM = "RS256"
"""The only algorithm Google signs its ID tokens with."""

# google-auth's token errors can echo the token itself; ours are chosen from this table.
_LIBRARY_REASONS = (
    ("Token expired", "token has expired"),
    ("Token used too early", "token is not valid yet (issued in the future)"),
    ("Could not verify token signature", "token signature does not verify"),
)


@dataclass(frozen=True)
class PushIdentity:
    """Who sent a verified push request."""

    email: str
    subject: str
    audience: str


@dataclass(frozen=True)
class _CertsEntry:
    certs: Mapping[str, str]
    fetched_at: float


class CertsCache:
    """Google's token-signing certificates by URL, kept in memory for `ttl_seconds`.

    Thread-safe: sync FastAPI dependencies run in a thread pool. One fetch at a time, so a
    burst of requests after expiry fetches once.
    """

    def __init__(
        self,
        *,
        ttl_seconds: float = CERTS_TTL_SECONDS,
        min_refetch_seconds: float = CERTS_MIN_REFETCH_SECONDS,
        timeout_seconds: float = CERTS_FETCH_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.min_refetch_seconds = min_refetch_seconds
        self.timeout_seconds = timeout_seconds
        self._clock = clock
        self._entries: dict[str, _CertsEntry] = {}
        self._lock = threading.Lock()
        self._request: Any = None  # google.auth's requests transport, made on first fetch

    def certs_for(self, url: str, key_id: str) -> Mapping[str, str]:
        """The certificates at `url`, refetched when stale or when `key_id` is unknown
        (Google rotates keys: a new key appears in the certs before tokens use it)."""
        with self._lock:
            entry = self._entries.get(url)
            now = self._clock()
            if entry is not None:
                age = now - entry.fetched_at
                if age < self.ttl_seconds and (
                    key_id in entry.certs or age < self.min_refetch_seconds
                ):
                    return entry.certs
            try:
                certs = self._fetch(url)
            except AuthUnavailableError:
                if entry is not None and key_id in entry.certs:
                    # a stale copy that holds the key still verifies: ride out a fetch blip
                    log.warning("using stale token certificates", extra={"certs_url": url})
                    return entry.certs
                raise
            self._entries[url] = _CertsEntry(certs=certs, fetched_at=now)
            return certs

    def _fetch(self, url: str) -> Mapping[str, str]:
        if self._request is None:
            # imported here: it pulls in requests and the service-account modules (~0.14 s
            # of a cold start), and only a configured push or /runs guard fetches certs
            import google.auth.transport.requests

            self._request = google.auth.transport.requests.Request()
        try:
            response = self._request(url, method="GET", timeout=self.timeout_seconds)
        except google.auth.exceptions.TransportError as error:
            raise AuthUnavailableError(
                f"could not fetch token certificates from {url}: {type(error).__name__}"
            ) from error
        if response.status != 200:
            raise AuthUnavailableError(
                f"token certificates at {url} answered HTTP {response.status}"
            )
        try:
            certs: Any = json.loads(response.data.decode("utf-8"))
        except ValueError:
            certs = None
        if not isinstance(certs, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in certs.items()
        ):
            raise AuthUnavailableError(
                f"token certificates at {url} are not a {{key id: PEM certificate}} object "
                "(use an x509 endpoint such as https://www.googleapis.com/oauth2/v1/certs)"
            )
        return certs


class PushTokenVerifier:
    """Verifies the `Authorization: Bearer <OIDC token>` of a push request."""

    def __init__(
        self,
        audience: str,
        allowed_emails: Sequence[str],
        certs_url: str,
        issuers: Sequence[str],
        clock_skew_seconds: int = 10,
        *,
        certs_cache: CertsCache | None = None,
        action: str = "push",
        callers_setting: str = "FERRY_PUSH_AUTH_SERVICE_ACCOUNTS",
    ) -> None:
        if not audience:
            raise ConfigError(f"{action} token verification needs an audience")
        emails = frozenset(email.strip().lower() for email in allowed_emails if email.strip())
        if not emails:
            raise ConfigError(
                f"{action} token verification needs at least one allowed service account "
                f"email ({callers_setting})"
            )
        if not issuers:
            raise ConfigError("push token verification needs at least one issuer")
        self.audience = audience
        self.allowed_emails = emails
        self.certs_url = certs_url
        self.issuers = frozenset(issuers)
        self.clock_skew_seconds = clock_skew_seconds
        self.certs_cache = certs_cache or CertsCache()
        self.action = action

    @classmethod
    def from_settings(cls, settings: Settings) -> PushTokenVerifier | None:
        """The verifier the settings ask for; None when verification is off."""
        if not settings.push_auth_audience:
            return None
        return cls(
            audience=settings.push_auth_audience,
            allowed_emails=settings.push_auth_service_accounts,
            certs_url=settings.push_auth_certs_url,
            issuers=settings.push_auth_issuers,
        )

    @classmethod
    def for_runs(
        cls, settings: Settings, certs_cache: CertsCache | None = None
    ) -> PushTokenVerifier | None:
        """The verifier for `/runs` and the history routes; None when it is off."""
        if not settings.runs_auth_audience:
            return None
        return cls(
            audience=settings.runs_auth_audience,
            allowed_emails=settings.runs_auth_allowed_callers,
            certs_url=settings.push_auth_certs_url,
            issuers=settings.push_auth_issuers,
            certs_cache=certs_cache,
            action="start runs",
            callers_setting="FERRY_RUNS_AUTH_ALLOWED_CALLERS",
        )

    def verify(self, authorization_header: str | None) -> PushIdentity:
        """The caller's identity, or UnauthenticatedError (401) / ForbiddenError (403) /
        AuthUnavailableError (503, when Google's certificates cannot be fetched)."""
        token = _bearer_token(authorization_header)
        key_id = _key_id(token)
        certs = self.certs_cache.certs_for(self.certs_url, key_id)
        if key_id not in certs:
            raise UnauthenticatedError("token is signed by an unknown key")
        claims = self._verified_claims(token, certs)

        issuer = claims.get("iss")
        if issuer not in self.issuers:
            raise UnauthenticatedError(f"token issuer {issuer!r} is not accepted")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.audience not in audiences:
            raise UnauthenticatedError(
                f"token audience {audience!r} is not the expected {self.audience!r}"
            )
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise UnauthenticatedError("token has no subject")

        email = claims.get("email")
        if not isinstance(email, str) or not email:
            raise ForbiddenError(f"token carries no email; only service accounts may {self.action}")
        if claims.get("email_verified") not in (True, "true"):
            raise ForbiddenError(f"token email {email!r} is not verified")
        if email.lower() not in self.allowed_emails:
            raise ForbiddenError(f"service account {email!r} is not allowed to {self.action}")
        return PushIdentity(email=email, subject=subject, audience=self.audience)

    def _verified_claims(self, token: str, certs: Mapping[str, str]) -> Mapping[str, Any]:
        try:
            # audience is checked by us, so a wrong one gets its own message
            claims: Any = _jwt().decode(
                token,
                certs=certs,
                audience=None,
                clock_skew_in_seconds=self.clock_skew_seconds,
            )
        except (google.auth.exceptions.GoogleAuthError, ValueError, TypeError) as error:
            raise UnauthenticatedError(_safe_reason(error)) from None
        if not isinstance(claims, Mapping):
            raise UnauthenticatedError("token payload is not a JSON object")
        return claims


def require_push_identity(
    verifier: PushTokenVerifier | None, authorization: str | None
) -> PushIdentity | None:
    """For a FastAPI dependency: the verified caller, or None when verification is off."""
    if verifier is None:
        return None
    return verifier.verify(authorization)


def warn_if_runs_are_open(settings: Settings) -> None:
    """Push auth on and run auth off: anyone who reaches the service can start runs."""
    if settings.push_auth_audience and not settings.runs_auth_audience:
        log.warning(
            "push requests are verified (FERRY_PUSH_AUTH_AUDIENCE) but POST /runs and the "
            "history routes are not: set FERRY_RUNS_AUTH_AUDIENCE and "
            "FERRY_RUNS_AUTH_ALLOWED_CALLERS, or rely on Cloud Run IAM alone",
            extra={"event": "runs_auth_off"},
        )


def _bearer_token(authorization_header: str | None) -> str:
    if not authorization_header or not authorization_header.strip():
        raise UnauthenticatedError("missing Authorization header")
    scheme, _, token = authorization_header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise UnauthenticatedError("Authorization header is not 'Bearer <token>'")
    if any(char.isspace() for char in token):
        raise UnauthenticatedError("token is malformed")
    return token


def _key_id(token: str) -> str:
    try:
        header: Any = _jwt().decode_header(token)
    except (google.auth.exceptions.GoogleAuthError, ValueError, TypeError):
        raise UnauthenticatedError("token is malformed") from None
    if not isinstance(header, Mapping):
        raise UnauthenticatedError("token is malformed")
    if header.get("alg") != SIGNING_ALGORITHM:
        raise UnauthenticatedError(f"token must be signed with {SIGNING_ALGORITHM}")
    key_id = header.get("kid")
    if not isinstance(key_id, str) or not key_id:
        raise UnauthenticatedError("token has no key id")
    return key_id


def _safe_reason(error: BaseException) -> str:
    text = str(error)
    for prefix, reason in _LIBRARY_REASONS:
        if text.startswith(prefix):
            return reason
    return "token is malformed or cannot be verified"


def _jwt() -> Any:
    """google.auth's JWT module, imported on the first token: it loads the crypto backends
    (~50 ms of a cold start that serves no token yet)."""
    from google.auth import jwt

    return jwt
