"""SSRF guard: every request this source sends (first page, next pages, redirects) must go
to a public http(s) host unless the pipeline lists the host in `allowed_hosts`.

The check runs twice: on the URL before the request is sent (clear errors), and when the
socket is opened, where the connection connects to the very addresses it has just checked
(a DNS answer that changes between the two lookups cannot reach an internal address).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from requests.exceptions import ConnectionError as RequestsConnectionError
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

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


Origin = tuple[str, str, int]
"""(scheme, host, port): where credentials may be sent."""

DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> Origin | None:
    """The origin of an http(s) URL (default ports made explicit); None when malformed."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        port = parts.port or DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        return None
    return scheme, normalize_host(parts.hostname or ""), port


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
    checked_addresses(host, resolve)


def checked_addresses(host: str, resolve: Resolver = resolve_host) -> list[str]:
    """The addresses `host` (already normalized) resolves to, all of them public.

    RequestError when any is internal; OSError from `resolve` propagates.
    """
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
    return addresses


@dataclass(frozen=True)
class HostPolicy:
    allowed_hosts: frozenset[str]
    resolve: Resolver


class PinnedConnectionMixin:
    """Opens the socket to the addresses checked in the same step (DNS-rebinding defence).

    urllib3 connects to `_dns_host` and uses `host` for the Host header, TLS SNI and
    certificate checks; only `_dns_host` is pointed at each checked address while the
    socket opens, so https keeps verifying the name. Through a proxy the proxy resolves
    the name, so nothing is pinned there.
    """

    policy: ClassVar[HostPolicy]

    def _new_conn(self) -> socket.socket:
        connection: HTTPConnection = self  # type: ignore[assignment]
        if connection.proxy is not None:
            return super()._new_conn()  # type: ignore[misc,no-any-return]
        host = normalize_host(connection._dns_host)
        try:
            if host in self.policy.allowed_hosts:
                addresses = [host]  # listed: connect as urllib3 would, by name
            else:
                addresses = checked_addresses(host, self.policy.resolve)
        except socket.gaierror as exc:
            raise NameResolutionError(connection.host, connection, exc) from exc
        except OSError as exc:
            raise NewConnectionError(connection, f"cannot resolve {host}: {exc}") from exc
        original = connection._dns_host
        failure: Exception | None = None
        try:
            for address in addresses:
                connection._dns_host = address
                try:
                    return super()._new_conn()  # type: ignore[misc,no-any-return]
                except (NewConnectionError, ConnectTimeoutError) as exc:
                    failure = exc
        finally:
            connection._dns_host = original
        raise failure or NewConnectionError(connection, f"{host} has no address")


def pinned_pool_classes(
    allowed_hosts: Iterable[str], resolve: Resolver
) -> dict[str, type[HTTPConnectionPool]]:
    """urllib3 pool classes (by scheme) whose connections pin their checked addresses."""
    host_policy = HostPolicy(frozenset(normalize_host(host) for host in allowed_hosts), resolve)

    class PinnedHTTPConnection(PinnedConnectionMixin, HTTPConnection):
        policy = host_policy

    class PinnedHTTPSConnection(PinnedConnectionMixin, HTTPSConnection):
        policy = host_policy

    class PinnedHTTPConnectionPool(HTTPConnectionPool):
        ConnectionCls = PinnedHTTPConnection

    class PinnedHTTPSConnectionPool(HTTPSConnectionPool):
        ConnectionCls = PinnedHTTPSConnection

    return {"http": PinnedHTTPConnectionPool, "https": PinnedHTTPSConnectionPool}


class GuardedAdapter(HTTPAdapter):
    """A transport adapter that checks the target of every request it sends.

    requests sends each redirect hop and each pagination request through the mounted
    adapter, so checking here covers them all. Its connections connect only to addresses
    they checked themselves. A request leaving `credential_origin` (a redirect to another
    host) loses the `credential_headers` (requests strips only `Authorization`).
    """

    def __init__(
        self,
        allowed_hosts: Iterable[str],
        resolve: Resolver = resolve_host,
        *,
        credential_origin: Origin | None = None,
        credential_headers: Iterable[str] = (),
        **kwargs: Any,
    ) -> None:
        self.allowed_hosts = tuple(allowed_hosts)
        self.resolve = resolve
        self.credential_origin = credential_origin
        self.credential_headers = tuple(credential_headers)
        super().__init__(**kwargs)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = pinned_pool_classes(
            self.allowed_hosts, self.resolve
        )

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
        if self.credential_origin is not None and origin(url) != self.credential_origin:
            for name in self.credential_headers:
                request.headers.pop(name, None)
        return super().send(
            request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
        )
