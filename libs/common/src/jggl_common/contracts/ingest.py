"""Contracts published by ingest: one event per Meta webhook item, and Telegram updates."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from .base import Envelope

__all__ = [
    "META_KINDS",
    "MetaItemData",
    "MetaItemReceived",
    "MetaKind",
    "MetaObject",
    "TelegramUpdateData",
    "TelegramUpdateReceived",
    "message_dedupe_key",
    "meta_subject",
]

MetaObject = Literal["page", "instagram"]
MetaKind = Literal["message", "echo", "postback", "reaction", "read", "delivery", "edit", "referral", "other"]
META_KINDS: tuple[str, ...] = (
    "message",
    "echo",
    "postback",
    "reaction",
    "read",
    "delivery",
    "edit",
    "referral",
    "other",
)


def meta_subject(object_: str, kind: str) -> str:
    """``ingest.meta.<object>.<kind>``."""
    return f"ingest.meta.{object_}.{kind}"


def message_dedupe_key(object_: str, kind: str, mid: str) -> str:
    """The dedupe key of a message or an echo: its ``mid``. A webhook and a backfill of
    the same message share it, so they share the event id and JetStream keeps one."""
    return f"{object_}:{kind}:{mid}"


class MetaItemData(BaseModel):
    """One ``entry[].messaging[]`` (or ``standby[]``) item, verbatim, with what routing needs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    object: MetaObject = Field(description="'page' (Messenger) or 'instagram'")
    kind: MetaKind
    entry_id: str = Field(description="the Facebook Page id or Instagram account id the entry belongs to")
    entry_time: int | None = Field(default=None, description="entry.time in ms")
    standby: bool = Field(default=False, description="came under entry[].standby[] (handover protocol)")
    sender_id: str | None = None
    recipient_id: str | None = None
    timestamp: int | None = Field(default=None, description="item timestamp in ms, as Meta sent it")
    mid: str | None = Field(default=None, description="Meta message id the item is about, if any")
    dedupe_key: str = Field(description="stable key of this item; equal items have equal keys")
    item: dict[str, Any] = Field(description="the messaging item exactly as Meta sent it")


class MetaItemReceived(Envelope):
    """A Meta webhook item, durably accepted. Subject ``ingest.meta.<object>.<kind>``."""

    subject: ClassVar[str] = "ingest.meta"

    type: Literal["ingest.meta.item"] = "ingest.meta.item"
    version: Literal[1] = 1
    data: MetaItemData


class TelegramUpdateData(BaseModel):
    """A Telegram Bot API ``Update`` received on the webhook, verbatim."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    update_id: int
    update: dict[str, Any]


class TelegramUpdateReceived(Envelope):
    """A Telegram update, durably accepted. Subject ``ingest.telegram.update``."""

    subject: ClassVar[str] = "ingest.telegram.update"

    type: Literal["ingest.telegram.update"] = "ingest.telegram.update"
    version: Literal[1] = 1
    data: TelegramUpdateData
