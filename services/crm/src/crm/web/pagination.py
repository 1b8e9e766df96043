"""Opaque, signed keyset cursors.

A cursor carries the sort it belongs to and the position (sort value and id) of the last
row of a page. It is signed with a key derived from ``APP_KEY``, so a client can pass it
back but not forge or edit it: anything that does not verify is a 400, never a query
with attacker-chosen values.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any


class InvalidCursor(ValueError):
    """The cursor was not made by this service for this listing."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    """Encodes and verifies cursors with one secret key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _sign(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:16]

    def encode(self, kind: str, position: list[Any]) -> str:
        """A cursor for ``kind`` (e.g. ``deals:-created_at``) positioned after ``position``."""
        body = json.dumps([kind, *position], separators=(",", ":"), ensure_ascii=True).encode()
        return f"{_b64(body)}.{_b64(self._sign(body))}"

    def decode(self, cursor: str, kind: str) -> list[Any]:
        """The position a cursor of ``kind`` carries; :class:`InvalidCursor` otherwise."""
        body_text, dot, signature_text = cursor.partition(".")
        if not dot or len(cursor) > 1000:
            raise InvalidCursor("malformed cursor")
        try:
            body = _unb64(body_text)
            signature = _unb64(signature_text)
        except (binascii.Error, ValueError):
            raise InvalidCursor("malformed cursor") from None
        if not hmac.compare_digest(signature, self._sign(body)):
            raise InvalidCursor("cursor was altered or is not from this service")
        try:
            decoded = json.loads(body)
        except ValueError:
            raise InvalidCursor("malformed cursor") from None
        if not isinstance(decoded, list) or not decoded or decoded[0] != kind:
            raise InvalidCursor("cursor belongs to another listing or sort order")
        return decoded[1:]
