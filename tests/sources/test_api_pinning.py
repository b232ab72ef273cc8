"""The guard's connections connect to the address they checked, yet https still verifies the
host *name* (SNI and certificate), and credentials stay on base_url's origin (pure helpers)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.spec import ApiAuth
from sources.api import guard
from sources.api.client import credential_headers
from sources.api.guard import GuardedAdapter, origin

NAME = "secure.ferry-test.example"


def certificate(folder: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path, list[str]]]:
    """An https server on 127.0.0.1 whose certificate names only NAME; records SNI names."""
    cert_path, key_path = certificate(tmp_path, NAME)
    names: list[str] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)

    def remember_sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        names.append(str(name))

    context.sni_callback = remember_sni

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1], cert_path, names
    finally:
        server.shutdown()
        server.server_close()


def test_a_pinned_https_connection_still_verifies_the_name(
    tls_server: tuple[int, Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, ca, names = tls_server
    # loopback stands in for a public address here, so the pinned path (not the allowed-host
    # path) is the one under test
    monkeypatch.setattr(
        guard, "is_blocked_address", lambda address: address != ipaddress.ip_address("127.0.0.1")
    )
    lookups: list[str] = []

    def resolve(host: str) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"] if host == NAME else []

    session = requests.Session()
    session.mount("https://", GuardedAdapter([], resolve=resolve))
    response = session.get(f"https://{NAME}:{port}/", verify=str(ca), timeout=10)

    assert response.status_code == 200 and response.json() == {"ok": True}
    assert names == [NAME], "SNI carries the name, not the pinned address"
    assert lookups == [NAME, NAME], "checked before sending, and again by the connection"
    # the certificate names NAME only: reaching the same address by IP fails verification
    with pytest.raises(requests.exceptions.SSLError):
        session.get(f"https://127.0.0.1:{port}/", verify=str(ca), timeout=10)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://API.example.com/v1", ("https", "api.example.com", 443)),
        ("https://api.example.com:443/x", ("https", "api.example.com", 443)),
        ("http://api.example.com/", ("http", "api.example.com", 80)),
        ("https://api.example.com:8443/", ("https", "api.example.com", 8443)),
        ("https://[::1]:9/", ("https", "::1", 9)),
    ],
)
def test_origin_makes_default_ports_explicit(url: str, expected: tuple[str, str, int]) -> None:
    assert origin(url) == expected


def test_the_headers_that_carry_credentials() -> None:
    assert credential_headers(None) == ()
    assert credential_headers(ApiAuth(type="bearer", token_env="T")) == ("Authorization",)
    assert credential_headers(
        ApiAuth(type="api_key", name="X-Key", location="header", token_env="T")
    ) == ("X-Key",)
    assert (
        credential_headers(ApiAuth(type="api_key", name="k", location="query", token_env="T")) == ()
    )
