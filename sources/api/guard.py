"""SSRF guard: every request this source sends (first page, next pages, redirects) must go
to a public http(s) host unless the pipeline lists the host in `allowed_hosts`."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from requests.exceptions import ConnectionError as RequestsConnectionError

from core.errors import RequestError
from sources.api.helpers import safe_url
from sources.api.settings import BLOCKED_HOSTNAMES

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str], list[str]]

NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def resolve_host(host: str) -> list[str]:
    """Every address `host` resolves to (raises OSError when it does not resolve)."""
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})


def normalize_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, 6to4, Teredo client, NAT64)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_blocked_address(address: IPAddress) -> bool:
    """True for loopback, private, link-local (metadata), unspecified, reserved, multicast."""
    if isinstance(address, ipaddress.IPv6Address):
        # a scope id (fe80::1%eth0) does not change what the address is
        address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
        inner = embedded_ipv4(address)
        if inner is not None and is_blocked_address(inner):
            return True
    return (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_reserved
        or address.is_multicast
    )


def check_url(url: str, allowed_hosts: Iterable[str], resolve: Resolver = resolve_host) -> None:
    """Raise RequestError unless `url` is http(s) to a public host or an allowed one.

    `resolve` maps a host name to its addresses; OSError from it (the host does not
    resolve) propagates so the caller can treat it as a connection failure.
    """
    shown = safe_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise RequestError(f"URL '{shown}' is malformed: {exc}") from None
    scheme, host = parts.scheme.lower(), normalize_host(parts.hostname or "")
    if scheme not in ("http", "https"):
        raise RequestError(f"URL '{shown}' must use http or https, not '{scheme}'")
    if not host:
        raise RequestError(f"URL '{shown}' has no host")
    if host in {normalize_host(allowed) for allowed in allowed_hosts}:
        return
    if host in BLOCKED_HOSTNAMES or host.endswith(".localhost"):
        raise RequestError(
            f"host '{host}' is internal; list it in allowed_hosts if this source must reach it"
        )
    try:
        addresses: list[str] = [str(ipaddress.ip_address(host))]
    except ValueError:
        addresses = resolve(host)
    for text in addresses:
        if is_blocked_address(ipaddress.ip_address(text.split("%", 1)[0])):
            raise RequestError(
                f"host '{host}' resolves to non-public address {text}; list it in "
                "allowed_hosts if this source must reach it"
            )


class GuardedAdapter(HTTPAdapter):
    """A transport adapter that checks the target of every request it sends.

    requests sends each redirect hop and each pagination request through the mounted
    adapter, so checking here covers them all.
    """

    def __init__(
        self, allowed_hosts: Iterable[str], resolve: Resolver = resolve_host, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.allowed_hosts = tuple(allowed_hosts)
        self.resolve = resolve

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> Response:
        url = request.url or ""
        try:
            check_url(url, self.allowed_hosts, self.resolve)
        except OSError:
            # retried by dlt's session like any other connection failure
            raise RequestsConnectionError(
                f"cannot resolve the host of {safe_url(url)}", request=request
            ) from None
        return super().send(
            request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
        )
