"""The client's address (and scheme) of a request that may have come through reverse proxies.

Behind an ingress every connection comes from the ingress, so the peer address says
nothing about the client. Proxies append the address they saw to ``X-Forwarded-For``;
only entries written by proxies we trust can be believed, because a client can send any
``X-Forwarded-For`` it likes. The trusted proxies are the setting ``FORWARDED_ALLOW_IPS``
(comma-separated addresses or CIDR networks, e.g. ``10.0.0.0/8,fd00::/8``; empty trusts
no proxy, and then ``X-Forwarded-For`` is ignored).

:func:`client_address` answers: the peer address unless the peer is a trusted proxy; then
the rightmost ``X-Forwarded-For`` entry that is not a trusted proxy (walking right to
left, each hop we trust vouches for the one before it). An entry that is not an IP
address ends the walk at the last address a trusted proxy vouched for, so a malformed
or forged value never becomes "the client". Ports (``1.2.3.4:5678``, ``[::1]:80``) are
dropped and IPv4-mapped IPv6 addresses are read as IPv4.

:class:`ForwardedMiddleware` does this once per request at the edge of an ASGI app: it puts
the client's address into ``scope["client"]`` (so ``request.client.host`` is the client
everywhere inside) and the client's scheme into ``scope["scheme"]``, keeping the peer the
connection really came from in ``scope["jggl.peer"]``. :func:`client_address` on a scope
the middleware already resolved answers that address again rather than walking twice.

uvicorn has its own proxy-header handling, which rewrites the peer before the application
sees it (and reads the same ``FORWARDED_ALLOW_IPS`` variable, trusting loopback when it is
unset). The services run uvicorn with ``proxy_headers=False`` and resolve the address here,
with one definition of trust.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from functools import lru_cache
from typing import Any

__all__ = ["PEER_KEY", "ForwardedMiddleware", "TrustedProxies", "client_address", "client_scheme", "parse_ip"]

PEER_KEY = "jggl.peer"
"""Scope key where :class:`ForwardedMiddleware` keeps the connection's own peer ``(host, port)``."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_HOPS = 64
"""X-Forwarded-For entries looked at, from the right; a longer chain is cut there."""


def parse_ip(value: str) -> IPAddress | None:
    """The IP address in one forwarded entry (``ip``, ``ip:port``, ``[ipv6]:port``), or None."""
    return _parse_ip(value.strip())


@lru_cache(maxsize=4096)
def _parse_ip(text: str) -> IPAddress | None:
    if not text or len(text) > 64:
        return None
    if text.startswith("["):
        end = text.find("]")
        if end == -1:
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """The proxies whose ``X-Forwarded-For`` entries are believed."""

    def __init__(self, networks: Iterable[IPNetwork] = ()) -> None:
        self._networks = tuple(networks)
        self._known: dict[IPAddress, bool] = {}

    @classmethod
    def parse(cls, spec: str) -> TrustedProxies:
        """From ``FORWARDED_ALLOW_IPS``: comma-separated IPs or CIDRs; ValueError names a bad entry."""
        networks: list[IPNetwork] = []
        for raw in spec.split(","):
            item = raw.strip()
            if not item:
                continue
            if item == "*":
                raise ValueError("'*' would trust every client's X-Forwarded-For; list the proxies' addresses or CIDRs")
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
        return cls(networks)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, address: IPAddress | None) -> bool:
        """Whether ``address`` is one of the trusted proxies."""
        if address is None or not self._networks:
            return False
        trusted = self._known.get(address)
        if trusted is None:
            trusted = any(address in network for network in self._networks)
            if len(self._known) >= 4096:
                self._known.clear()
            self._known[address] = trusted
        return trusted


def _header_values(scope: Mapping[str, Any], name: bytes) -> list[str]:
    values: list[str] = []
    for key, value in scope.get("headers") or ():
        if key == name:
            values.extend(part.strip() for part in value.decode("latin-1").split(","))
    return values


def _peer(scope: Mapping[str, Any]) -> str | None:
    client = scope.get("client")
    if not client:
        return None
    host = client[0]
    return host if isinstance(host, str) and host else None


def client_address(scope: Mapping[str, Any], trusted: TrustedProxies) -> str | None:
    """The client's IP address for this ASGI scope (``request.scope``); None without a peer.

    The peer, unless it is a trusted proxy; then the rightmost ``X-Forwarded-For`` entry
    that is not a trusted proxy (see the module's description).
    """
    peer = _peer(scope)
    if peer is None or PEER_KEY in scope:
        return peer
    peer_ip = parse_ip(peer)
    if not trusted.trusts(peer_ip):
        return str(peer_ip) if peer_ip is not None else peer
    assert peer_ip is not None
    vouched = peer_ip
    for entry in reversed(_header_values(scope, b"x-forwarded-for")[-MAX_HOPS:]):
        address = parse_ip(entry)
        if address is None:
            break
        if not trusted.trusts(address):
            return str(address)
        vouched = address
    return str(vouched)


def client_scheme(scope: Mapping[str, Any], trusted: TrustedProxies) -> str:
    """``https`` or ``http`` as the client used it: the outermost trusted proxy's ``X-Forwarded-Proto``."""
    scheme = str(scope.get("scheme") or "http")
    if PEER_KEY not in scope and trusted.trusts(parse_ip(_peer(scope) or "")):
        forwarded = [value.lower() for value in _header_values(scope, b"x-forwarded-proto") if value]
        if forwarded and forwarded[0] in ("http", "https"):
            return forwarded[0]
    return "https" if scheme in ("https", "wss") else "http"


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ForwardedMiddleware:
    """Resolves the client's address and scheme once, at the edge (see the module's description)."""

    def __init__(self, app: ASGIApp, trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and PEER_KEY not in scope:
            peer = scope.get("client")
            address = client_address(scope, self.trusted)
            scheme = client_scheme(scope, self.trusted)
            scope[PEER_KEY] = peer
            if address is not None and peer is not None:
                scope["client"] = (address, peer[1] if address == peer[0] else 0)
            if scope["type"] == "http":
                scope["scheme"] = scheme
            else:
                scope["scheme"] = "wss" if scheme == "https" else "ws"
        await self.app(scope, receive, send)
