"""The event envelope every message on the bus is wrapped in."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EVENT_ID_NAMESPACE", "Envelope", "stable_event_id", "utcnow"]

EVENT_ID_NAMESPACE = uuid.UUID("6f1d4c1e-9a59-4c43-9b7e-3a3f0d1c2b5a")
"""Namespace of :func:`stable_event_id`; changing it would break deduplication."""
_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes


def stable_event_id(key: str) -> str:
    """A deterministic event id for a natural key, so a repeat gets the same id.

    The id doubles as ``Nats-Msg-Id``: the same webhook item published twice is stored once.
    It is ``uuid5(EVENT_ID_NAMESPACE, key)``, computed without building ``UUID`` objects
    (it runs for every webhook item).
    """
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + key.encode(), usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Envelope(BaseModel):
    """Fields every event and command carries around its ``data``.

    Concrete contracts subclass it, fix ``type`` and ``version`` with ``Literal`` and set
    ``subject`` (the NATS subject, or its prefix when the subject has variable parts).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: ClassVar[str]

    id: str = Field(default_factory=lambda: str(uuid.uuid4()), description="unique event id, also the Nats-Msg-Id")
    type: str
    version: int
    occurred_at: datetime = Field(default_factory=utcnow)
    producer: str = Field(description="the service that published the event")
    correlation_id: str | None = Field(default=None, description="follows one piece of work across services")
    data: Any
