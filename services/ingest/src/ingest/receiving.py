"""What both webhooks (Meta's and Telegram's) do alike with a request, written once:
admit it by the client's address (the rate limit), read its body within the size limit,
and turn a refusal into its answer.

The client's address is :func:`jggl_common.forwarded.client_address`: the peer, unless
the peer is one of the reverse proxies ``FORWARDED_ALLOW_IPS`` lists; then the rightmost
``X-Forwarded-For`` entry that is not one of them. A client cannot escape its limit by
sending an ``X-Forwarded-For`` of its own.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from jggl_common.bus import BusUnavailable
from jggl_common.forwarded import TrustedProxies, client_address
from jggl_common.logs import get_logger

from .runtime import REJECTED, Ingest

__all__ = ["UNAVAILABLE", "Receive", "Refused", "admit", "read_body", "refusal"]

log = get_logger(__name__)

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
"""The ASGI ``receive`` callable of a request."""


class Refused(Exception):
    """A webhook request refused: its status, the metric's reason, the ``detail`` it is told."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail
        self.body = json.dumps({"detail": detail}).encode()


UNAVAILABLE = Refused(503, "unavailable", "temporarily unable to store the webhook, retry later")
"""The answer while JetStream cannot acknowledge (the sender retries); never raised itself."""
# Refusals are raised as new exceptions each time (one raised again would grow its traceback).
_RATE_LIMITED = (429, "rate_limited", "too many requests from this address")
_MALFORMED_LENGTH = (400, "malformed", "invalid Content-Length")
_NO_PROXIES = TrustedProxies()


def admit(ingest: Ingest, scope: Mapping[str, Any]) -> None:
    """Take one request of the client's allowance; :class:`Refused` (429) when it is spent."""
    if ingest.trusted_proxies:
        address = client_address(scope, ingest.trusted_proxies)
    else:
        # No proxy trusted: the peer is the client, whatever the headers say.
        peer = scope.get("client")
        address = _peer_address(peer[0]) if peer else None
    if not ingest.limiter.allow(address or "unknown"):
        raise Refused(*_RATE_LIMITED)


@functools.lru_cache(maxsize=4096)
def _peer_address(host: str) -> str | None:
    # client_address's answer for a peer when no proxy is trusted, remembered per peer:
    # parsing the address again on every request costs more than the rest of the limit.
    return client_address({"client": (host, 0)}, _NO_PROXIES)


def _too_large(limit: int) -> Refused:
    return Refused(413, "too_large", f"body larger than {limit} bytes")


async def read_body(receive: Receive, content_length: bytes | str | None, limit: int) -> bytes | None:
    """The request's body, at most ``limit`` bytes; None when the client went away first.

    A declared ``Content-Length`` that is malformed (400) or over the limit (413) is
    refused before anything is read; a body that grows past the limit while streaming
    (413) as soon as it does.
    """
    if content_length is not None:
        length = content_length.decode("latin-1") if isinstance(content_length, bytes) else content_length
        if not (length.isascii() and length.isdigit()):
            raise Refused(*_MALFORMED_LENGTH)
        digits = length.lstrip("0") or "0"
        if len(digits) > 18 or int(digits) > limit:
            raise _too_large(limit)
    message = await receive()
    if message["type"] == "http.disconnect":
        return None
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise _too_large(limit)
        return body
    chunks = bytearray(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks += message.get("body", b"")
        if len(chunks) > limit:
            raise _too_large(limit)
        if not message.get("more_body", False):
            return bytes(chunks)


def refusal(source: str, error: Refused | BusUnavailable) -> tuple[int, bytes]:
    """The status and JSON body answering ``error``, counted by reason for ``source``."""
    if isinstance(error, BusUnavailable):
        log.warning("webhook not accepted: broker unavailable", source=source, error=str(error))
        error = UNAVAILABLE
    REJECTED.labels(source, error.reason).inc()
    return error.status, error.body
