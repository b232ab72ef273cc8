"""Push-token verification against a local certs server and keys made here: no network."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from app.edges.auth import CertsCache, PushIdentity, PushTokenVerifier, require_push_identity
from core.errors import (
    AuthUnavailableError,
    ConfigError,
    FerryError,
    ForbiddenError,
    UnauthenticatedError,
    outcome_of,
)
from core.settings import Settings, load_settings
from tests.emulators import free_port
from tests.oidc import AUDIENCE, GOOGLE, PUSHER, CertsServer, SigningKey, claims, make_key


def make_verifier(url: str, cache: CertsCache | None = None) -> PushTokenVerifier:
    return PushTokenVerifier(
        audience=AUDIENCE,
        allowed_emails=[PUSHER],
        certs_url=url,
        issuers=[GOOGLE, "accounts.google.com"],
        certs_cache=cache,
    )


def assert_rejected(
    verifier: PushTokenVerifier, header: str | None, kind: type[FerryError]
) -> FerryError:
    with pytest.raises(kind) as caught:
        verifier.verify(header)
    error = caught.value
    assert type(error) is kind
    shown = " ".join([str(error), repr(error), json.dumps(error.to_dict()), repr(error.__cause__)])
    token = (header or "").partition(" ")[2].strip()
    for piece in [token, *token.split(".")]:
        if len(piece) >= 8:
            assert piece not in shown, "an error message leaks the token"
    return error


# --- the valid path --------------------------------------------------------------------


def test_valid_token_gives_the_identity(certs_server: CertsServer, google_key: SigningKey) -> None:
    token = google_key.sign(claims())
    identity = make_verifier(certs_server.url).verify(f"Bearer {token}")
    assert identity == PushIdentity(email=PUSHER, subject="112233445566778899", audience=AUDIENCE)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"iss": "accounts.google.com"}, id="issuer-without-scheme"),
        pytest.param({"email": PUSHER.upper()}, id="email-case-differs"),
        pytest.param({"email_verified": "true"}, id="email-verified-as-string"),
        pytest.param({"aud": ["other", AUDIENCE]}, id="audience-in-a-list"),
        pytest.param({"iat": int(time.time()) + 5}, id="iat-within-clock-skew"),
    ],
)
def test_valid_token_variants_pass(
    certs_server: CertsServer, google_key: SigningKey, overrides: dict[str, Any]
) -> None:
    token = google_key.sign(claims(**overrides))
    identity = make_verifier(certs_server.url).verify(f"bearer  {token} ")
    assert identity.subject == "112233445566778899"


def test_certs_are_fetched_once_and_cached(
    certs_server: CertsServer, google_key: SigningKey
) -> None:
    verifier = make_verifier(certs_server.url)
    for _ in range(3):
        verifier.verify(f"Bearer {google_key.sign(claims())}")
    assert certs_server.fetches == 1


# --- 401: not a valid token for us -----------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(None, id="missing-header"),
        pytest.param("", id="empty-header"),
        pytest.param("Basic dXNlcjpwYXNz", id="basic-not-bearer"),
        pytest.param("Bearer", id="bearer-without-token"),
        pytest.param("eyJhbGciOiJSUzI1NiJ9.e30.c2ln", id="token-without-scheme"),
        pytest.param("Bearer not-a-jwt-garbage-token", id="garbage-token"),
        pytest.param("Bearer a.b.c", id="three-garbage-segments"),
        pytest.param("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", id="alg-none"),
        pytest.param("Bearer abc def.ghi.jkl", id="whitespace-inside-token"),
    ],
)
def test_malformed_headers_are_unauthenticated(
    certs_server: CertsServer, header: str | None
) -> None:
    error = assert_rejected(make_verifier(certs_server.url), header, UnauthenticatedError)
    assert outcome_of(error).http_status == 401


def test_token_signed_by_another_key_with_a_known_kid_is_unauthenticated(
    certs_server: CertsServer, google_key: SigningKey, other_key: SigningKey
) -> None:
    forged = other_key.sign(claims(), kid=google_key.kid)
    error = assert_rejected(
        make_verifier(certs_server.url), f"Bearer {forged}", UnauthenticatedError
    )
    assert "signature" in error.message


def test_token_signed_by_an_unknown_kid_is_unauthenticated(
    certs_server: CertsServer, other_key: SigningKey
) -> None:
    forged = other_key.sign(claims())
    error = assert_rejected(
        make_verifier(certs_server.url), f"Bearer {forged}", UnauthenticatedError
    )
    assert "unknown key" in error.message


def test_tampered_payload_is_unauthenticated(
    certs_server: CertsServer, google_key: SigningKey
) -> None:
    header, _, signature = google_key.sign(claims()).split(".")
    other_payload = google_key.sign(claims(email="evil@project.iam.gserviceaccount.com"))
    tampered = ".".join([header, other_payload.split(".")[1], signature])
    assert_rejected(make_verifier(certs_server.url), f"Bearer {tampered}", UnauthenticatedError)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        pytest.param(
            {"iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600},
            "expired",
            id="expired",
        ),
        pytest.param(
            {"iat": int(time.time()) + 3600, "exp": int(time.time()) + 7200},
            "not valid yet",
            id="iat-in-the-future",
        ),
        pytest.param({"aud": "https://someone-else.run.app/"}, "audience", id="wrong-audience"),
        pytest.param({"aud": None}, "audience", id="no-audience"),
        pytest.param({"iss": "https://evil.example.com"}, "issuer", id="wrong-issuer"),
        pytest.param({"sub": None}, "subject", id="no-subject"),
        pytest.param({"exp": None}, "cannot be verified", id="no-exp"),
    ],
)
def test_bad_claims_are_unauthenticated(
    certs_server: CertsServer, google_key: SigningKey, overrides: dict[str, Any], reason: str
) -> None:
    token = google_key.sign(claims(**overrides))
    error = assert_rejected(
        make_verifier(certs_server.url), f"Bearer {token}", UnauthenticatedError
    )
    assert reason in error.message


# --- 403: a valid token for someone we do not let in -----------------------------------


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        pytest.param(
            {"email": "stranger@other.iam.gserviceaccount.com"},
            "not allowed",
            id="email-not-allowed",
        ),
        pytest.param({"email_verified": False}, "not verified", id="email-verified-false"),
        pytest.param({"email_verified": None}, "not verified", id="email-verified-missing"),
        pytest.param({"email": None}, "no email", id="no-email"),
    ],
)
def test_valid_token_for_a_stranger_is_forbidden(
    certs_server: CertsServer, google_key: SigningKey, overrides: dict[str, Any], reason: str
) -> None:
    token = google_key.sign(claims(**overrides))
    error = assert_rejected(make_verifier(certs_server.url), f"Bearer {token}", ForbiddenError)
    assert reason in error.message
    assert outcome_of(error).http_status == 403


# --- 503: cannot fetch the certificates, so Pub/Sub should retry -------------------------


def test_certs_server_down_is_retriable(google_key: SigningKey) -> None:
    url = f"http://127.0.0.1:{free_port()}/oauth2/v1/certs"
    token = google_key.sign(claims())
    error = assert_rejected(make_verifier(url), f"Bearer {token}", AuthUnavailableError)
    assert error.retriable
    outcome = outcome_of(error)
    assert (outcome.http_status, outcome.push_ack) == (503, False)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        pytest.param(500, b"{}", id="server-error"),
        pytest.param(200, b"<html>not json</html>", id="not-json"),
        pytest.param(200, b'{"keys": [{"kid": "k", "n": "x", "e": "AQAB"}]}', id="jwk-format"),
    ],
)
def test_unusable_certs_response_is_retriable(
    certs_server: CertsServer, google_key: SigningKey, status: int, body: bytes
) -> None:
    certs_server.status, certs_server.body = status, body
    token = google_key.sign(claims())
    assert_rejected(make_verifier(certs_server.url), f"Bearer {token}", AuthUnavailableError)


def test_stale_certs_are_used_while_the_server_is_down(
    certs_server: CertsServer, google_key: SigningKey
) -> None:
    now = [1000.0]
    verifier = make_verifier(certs_server.url, CertsCache(clock=lambda: now[0]))
    verifier.verify(f"Bearer {google_key.sign(claims())}")
    certs_server.status = 503
    now[0] += 10_000
    verifier.verify(f"Bearer {google_key.sign(claims())}")
    assert certs_server.fetches == 2


# --- key rotation ----------------------------------------------------------------------


def test_unknown_kid_refetches_the_certs(certs_server: CertsServer, google_key: SigningKey) -> None:
    now = [1000.0]
    verifier = make_verifier(certs_server.url, CertsCache(clock=lambda: now[0]))
    verifier.verify(f"Bearer {google_key.sign(claims())}")
    rotated = make_key("google-key-2")
    certs_server.certs[rotated.kid] = rotated.certificate_pem
    now[0] += CertsCache().min_refetch_seconds + 1
    verifier.verify(f"Bearer {rotated.sign(claims())}")
    assert certs_server.fetches == 2


def test_unknown_kids_refetch_at_most_once_per_interval(
    certs_server: CertsServer, google_key: SigningKey, other_key: SigningKey
) -> None:
    verifier = make_verifier(certs_server.url, CertsCache(clock=lambda: 1000.0))
    verifier.verify(f"Bearer {google_key.sign(claims())}")
    for _ in range(5):
        assert_rejected(verifier, f"Bearer {other_key.sign(claims())}", UnauthenticatedError)
    assert certs_server.fetches == 1


# --- settings and the dependency helper ------------------------------------------------


def test_verification_is_off_without_an_audience() -> None:
    settings = Settings(push_auth_audience=None, push_auth_service_accounts=[])
    verifier = PushTokenVerifier.from_settings(settings)
    assert verifier is None
    assert require_push_identity(verifier, None) is None


def test_settings_build_a_verifier() -> None:
    settings = Settings(
        push_auth_audience=AUDIENCE,
        push_auth_service_accounts=[PUSHER, "other@p.iam.gserviceaccount.com"],
        push_auth_certs_url="http://127.0.0.1:1/certs",
        push_auth_issuers=[GOOGLE, "accounts.google.com"],
    )
    verifier = PushTokenVerifier.from_settings(settings)
    assert verifier is not None
    assert verifier.audience == AUDIENCE
    assert verifier.allowed_emails == {PUSHER, "other@p.iam.gserviceaccount.com"}
    assert verifier.certs_url == "http://127.0.0.1:1/certs"
    assert verifier.issuers == {GOOGLE, "accounts.google.com"}


def test_settings_defaults_point_at_google() -> None:
    settings = Settings(
        push_auth_audience=None,
        push_auth_service_accounts=[],
        push_auth_certs_url="https://www.googleapis.com/oauth2/v1/certs",
    )
    assert settings.push_auth_certs_url == "https://www.googleapis.com/oauth2/v1/certs"
    assert "https://accounts.google.com" in Settings.model_fields["push_auth_issuers"].get_default(
        call_default_factory=True
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("a@p.iam.gserviceaccount.com", ["a@p.iam.gserviceaccount.com"], id="one"),
        pytest.param("a@x, b@y ,", ["a@x", "b@y"], id="comma-separated"),
        pytest.param('["a@x", "b@y"]', ["a@x", "b@y"], id="json-list"),
    ],
)
def test_service_accounts_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]
) -> None:
    monkeypatch.setenv("FERRY_PUSH_AUTH_AUDIENCE", AUDIENCE)
    monkeypatch.setenv("FERRY_PUSH_AUTH_SERVICE_ACCOUNTS", raw)
    monkeypatch.setenv("FERRY_PUSH_AUTH_ISSUERS", "https://accounts.google.com")
    settings = load_settings()
    assert settings.push_auth_service_accounts == expected
    assert settings.push_auth_issuers == ["https://accounts.google.com"]


def test_audience_without_service_accounts_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FERRY_PUSH_AUTH_AUDIENCE", AUDIENCE)
    monkeypatch.delenv("FERRY_PUSH_AUTH_SERVICE_ACCOUNTS", raising=False)
    with pytest.raises(ConfigError, match="FERRY_PUSH_AUTH_SERVICE_ACCOUNTS"):
        load_settings()


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"allowed_emails": []}, id="no-emails"),
        pytest.param({"allowed_emails": [" "]}, id="blank-email"),
        pytest.param({"audience": ""}, id="no-audience"),
        pytest.param({"issuers": []}, id="no-issuers"),
    ],
)
def test_verifier_refuses_an_open_configuration(kwargs: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {
        "audience": AUDIENCE,
        "allowed_emails": [PUSHER],
        "certs_url": "http://127.0.0.1:1/certs",
        "issuers": [GOOGLE],
    }
    with pytest.raises(ConfigError):
        PushTokenVerifier(**{**arguments, **kwargs})


def test_require_push_identity_verifies_when_on(
    certs_server: CertsServer, google_key: SigningKey
) -> None:
    verifier = make_verifier(certs_server.url)
    identity = require_push_identity(verifier, f"Bearer {google_key.sign(claims())}")
    assert identity is not None
    assert identity.email == PUSHER
    with pytest.raises(UnauthenticatedError):
        require_push_identity(verifier, None)
