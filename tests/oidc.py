"""OIDC test kit: RSA keys made here, a local certs server, Google-shaped push tokens.

Registered as a pytest plugin in tests/conftest.py, so its fixtures are available to all tests.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

AUDIENCE = "https://ferry.example.run.app/pubsub"
PUSHER = "pusher@project.iam.gserviceaccount.com"
GOOGLE = "https://accounts.google.com"


@dataclass
class SigningKey:
    kid: str
    private_pem: bytes
    certificate_pem: str

    def sign(self, claims: dict[str, Any], *, kid: str | None = None) -> str:
        signer = crypt.RSASigner.from_string(self.private_pem, key_id=kid or self.kid)
        token: bytes = jwt.encode(signer, claims)
        return token.decode("ascii")


def make_key(kid: str) -> SigningKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ferry-test-{kid}")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return SigningKey(kid=kid, private_pem=private_pem, certificate_pem=certificate_pem)


@dataclass
class CertsServer:
    """Serves `body` (default: the certs) at `url`; counts the fetches."""

    url: str
    certs: dict[str, str] = field(default_factory=dict)
    status: int = 200
    body: bytes | None = None
    fetches: int = 0


@pytest.fixture(scope="module")
def google_key() -> SigningKey:
    return make_key("google-key-1")


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    return make_key("attacker-key")


@pytest.fixture
def certs_server(google_key: SigningKey) -> Iterator[CertsServer]:
    state = CertsServer(url="", certs={google_key.kid: google_key.certificate_pem})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.fetches += 1
            body = state.body if state.body is not None else json.dumps(state.certs).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Keep the test output quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/oauth2/v1/certs"
    # a short poll interval keeps shutdown (once per test) fast
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": GOOGLE,
        "aud": AUDIENCE,
        "sub": "112233445566778899",
        "azp": "112233445566778899",
        "email": PUSHER,
        "email_verified": True,
        "iat": now,
        "exp": now + 3600,
    }
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}
