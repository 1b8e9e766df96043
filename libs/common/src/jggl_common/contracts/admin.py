"""Contracts of crm's administration side: Telegram linking, channels that lost access and
what the channel health check finds.

A link code never travels in clear: the event carries its SHA-256 (see
:func:`link_code_hash`), and the notifier hashes what the manager sends with
``/start <code>`` to find the request it answers.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from .base import Envelope

__all__ = [
    "ChannelHealthChanged",
    "ChannelHealthChangedData",
    "ChannelHealthProblem",
    "ChannelNeedsReauth",
    "ChannelNeedsReauthData",
    "TelegramLinkRequested",
    "TelegramLinkRequestedData",
    "TelegramUnlinkRequested",
    "TelegramUnlinkRequestedData",
    "link_code_hash",
]


def link_code_hash(code: str) -> str:
    """The hash a Telegram link code is known by: SHA-256 hex of the trimmed, upper-cased code.

    Codes are upper-case letters and digits; normalising lets a manager type one in any case.
    """
    return hashlib.sha256(code.strip().upper().encode()).hexdigest()


class TelegramLinkRequestedData(BaseModel):
    """Who asked to link their Telegram, and the code (by hash) they will send the bot."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: int
    name: str
    email: str
    role: Literal["admin", "manager"]
    code_hash: str = Field(description="link_code_hash(code): SHA-256 hex of the upper-cased code")
    expires_at: datetime = Field(description="the code is refused after this moment")


class TelegramLinkRequested(Envelope):
    """A user asked for a Telegram link code. Subject ``crm.telegram.link_requested``."""

    subject: ClassVar[str] = "crm.telegram.link_requested"

    type: Literal["crm.telegram.link_requested"] = "crm.telegram.link_requested"
    version: Literal[1] = 1
    data: TelegramLinkRequestedData


class TelegramUnlinkRequestedData(BaseModel):
    """Whose Telegram link is to be removed, why, and by whom."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: int
    reason: Literal["self", "admin", "deactivated"] = Field(
        description="self: the user unlinked; admin: an admin unlinked them; deactivated: the account was deactivated"
    )
    actor_user_id: int | None = Field(default=None, description="who did it (the user, or the admin); null if unknown")


class TelegramUnlinkRequested(Envelope):
    """A user's Telegram is to be unlinked. Subject ``crm.telegram.unlink_requested``."""

    subject: ClassVar[str] = "crm.telegram.unlink_requested"

    type: Literal["crm.telegram.unlink_requested"] = "crm.telegram.unlink_requested"
    version: Literal[1] = 1
    data: TelegramUnlinkRequestedData


class ChannelNeedsReauthData(BaseModel):
    """A channel whose token Meta refused: an admin must reconnect it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel_id: int
    platform: Literal["messenger", "instagram"]
    external_id: str = Field(description="Facebook Page id or Instagram account id")
    channel_name: str | None = None
    error_code: int | None = Field(default=None, description="Meta's error code, e.g. 190")
    error_subcode: int | None = Field(default=None, description="Meta's error_subcode, e.g. 463 (expired)")
    error_message: str = Field(description="Meta's error text")


class ChannelNeedsReauth(Envelope):
    """Meta refused a channel's token. Subject ``crm.channel.needs_reauth``."""

    subject: ClassVar[str] = "crm.channel.needs_reauth"

    type: Literal["crm.channel.needs_reauth"] = "crm.channel.needs_reauth"
    version: Literal[1] = 1
    data: ChannelNeedsReauthData


class ChannelHealthProblem(BaseModel):
    """One thing wrong with a channel, in words an admin can act on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(
        description="token_invalid, token_expiring, token_missing, not_subscribed or no_webhooks (more may come)"
    )
    message: str = Field(description="what was found, as a sentence")


class ChannelHealthChangedData(BaseModel):
    """A channel's problems as the health check found them, and what they were before."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel_id: int
    platform: Literal["messenger", "instagram"]
    external_id: str = Field(description="Facebook Page id or Instagram account id")
    channel_name: str | None = None
    status: Literal["ok", "problem"] = Field(description="problem while any problem remains")
    problems: list[ChannelHealthProblem] = Field(description="what is wrong now (empty once recovered)")
    previous_problems: list[ChannelHealthProblem] = Field(description="what was wrong at the previous check")
    recovered: bool = Field(description="true when every earlier problem is gone")
    checked_at: datetime


class ChannelHealthChanged(Envelope):
    """The set of a channel's problems changed (found, or recovered). Subject ``crm.channel.health_changed``."""

    subject: ClassVar[str] = "crm.channel.health_changed"

    type: Literal["crm.channel.health_changed"] = "crm.channel.health_changed"
    version: Literal[1] = 1
    data: ChannelHealthChangedData
