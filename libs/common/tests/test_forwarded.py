"""The client address behind trusted proxies, and FORWARDED_ALLOW_IPS."""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

import pytest

from jggl_common.forwarded import PEER_KEY, ForwardedMiddleware, TrustedProxies, client_address, client_scheme
from jggl_common.settings import ConfigurationError, ServiceSettings, load_settings

PROXIES = TrustedProxies.parse("10.0.0.0/8, 192.168.1.1, fd00::/8")


def scope(peer: str | None, *headers: tuple[str, str], scheme: str = "http") -> dict[str, Any]:
    return {
        "type": "http",
        "scheme": scheme,
        "client": (peer, 51000) if peer is not None else None,
        "headers": [(name.lower().encode(), value.encode("latin-1")) for name, value in headers],
    }


def xff(value: str) -> tuple[str, str]:
    return ("X-Forwarded-For", value)


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        # No trusted proxy in front: the peer, whatever the client claims.
        ("203.0.113.7", [xff("198.51.100.1")], "203.0.113.7"),
        # One trusted hop: the address it appended.
        ("10.1.2.3", [xff("198.51.100.1")], "198.51.100.1"),
        # A client's forged entry stays left of what the proxy appended and is never reached.
        ("10.1.2.3", [xff("1.1.1.1, 198.51.100.1")], "198.51.100.1"),
        # Two trusted hops: skip both, take the first one we do not trust.
        ("10.1.2.3", [xff("1.1.1.1, 198.51.100.1, 192.168.1.1")], "198.51.100.1"),
        # Several header lines are one list, in order.
        ("10.1.2.3", [xff("1.1.1.1"), xff("198.51.100.2")], "198.51.100.2"),
        # Ports and brackets dropped; IPv4-mapped IPv6 read as IPv4.
        ("10.1.2.3", [xff("198.51.100.3:4711")], "198.51.100.3"),
        ("10.1.2.3", [xff("[2001:db8::5]:443")], "2001:db8::5"),
        ("::ffff:10.0.0.9", [xff("198.51.100.4")], "198.51.100.4"),
        ("fd00::1", [xff("2001:db8::6")], "2001:db8::6"),
        # A trusted proxy without X-Forwarded-For (or an empty one) is the client itself.
        ("10.1.2.3", [], "10.1.2.3"),
        ("10.1.2.3", [xff("")], "10.1.2.3"),
        # Malformed entries end the walk at the last address a trusted hop vouched for.
        ("10.1.2.3", [xff("evil-client-name")], "10.1.2.3"),
        ("10.1.2.3", [xff("198.51.100.9, <script>, 192.168.1.1")], "192.168.1.1"),
        ("10.1.2.3", [xff("198.51.100.9, 999.1.1.1")], "10.1.2.3"),
        # Every entry trusted: the leftmost one.
        ("10.1.2.3", [xff("10.9.9.9, 192.168.1.1")], "10.9.9.9"),
    ],
)
def test_client_address(peer: str, headers: list[tuple[str, str]], expected: str) -> None:
    assert client_address(scope(peer, *headers), PROXIES) == expected


def test_no_trusted_proxy_ignores_forwarded_for() -> None:
    assert client_address(scope("10.1.2.3", xff("198.51.100.1")), TrustedProxies.parse("")) == "10.1.2.3"


def test_no_peer_and_odd_peers() -> None:
    assert client_address(scope(None), PROXIES) is None
    assert client_address(scope("testclient", xff("198.51.100.1")), PROXIES) == "testclient"


def test_scheme_only_from_a_trusted_proxy() -> None:
    proto = ("X-Forwarded-Proto", "https")
    assert client_scheme(scope("10.1.2.3", proto), PROXIES) == "https"
    assert client_scheme(scope("203.0.113.7", proto), PROXIES) == "http"
    assert client_scheme(scope("203.0.113.7", scheme="https"), PROXIES) == "https"
    assert client_scheme(scope("10.1.2.3", ("X-Forwarded-Proto", "gopher")), PROXIES) == "http"


def test_setting_parsed_and_refused_when_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    base = {
        "app_key": base64.b64encode(bytes(32)).decode(),
        "nats_url": "nats://127.0.0.1:4222",
        "app_url": "http://localhost",
        "_env_file": None,
    }
    assert not load_settings(ServiceSettings, **base).trusted_proxies
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.0/8,::1")
    trusted = load_settings(ServiceSettings, **base).trusted_proxies
    assert trusted.trusts(ipaddress.ip_address("10.4.4.4"))
    assert not trusted.trusts(ipaddress.ip_address("198.51.100.1"))
    for bad in ("10.0.0.0/33", "proxy.local", "*"):
        monkeypatch.setenv("FORWARDED_ALLOW_IPS", bad)
        with pytest.raises(ConfigurationError, match="FORWARDED_ALLOW_IPS is invalid"):
            load_settings(ServiceSettings, **base)


async def test_middleware_resolves_once_and_keeps_the_peer() -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(dict(scope))

    middleware = ForwardedMiddleware(app, PROXIES)
    request = scope("10.1.2.3", xff("1.1.1.1, 198.51.100.1"), ("X-Forwarded-Proto", "https"))
    await middleware(request, None, None)  # type: ignore[arg-type]
    inner = seen[0]
    assert inner["client"] == ("198.51.100.1", 0)
    assert inner["scheme"] == "https"
    assert inner[PEER_KEY] == ("10.1.2.3", 51000)
    # Asking again inside gives the same answer, not a second walk from the client's address.
    assert client_address(inner, PROXIES) == "198.51.100.1"
    assert client_scheme(inner, PROXIES) == "https"

    untrusted = scope("203.0.113.7", xff("198.51.100.1"), ("X-Forwarded-Proto", "https"))
    await middleware(untrusted, None, None)  # type: ignore[arg-type]
    assert seen[1]["client"] == ("203.0.113.7", 51000)
    assert seen[1]["scheme"] == "http"
