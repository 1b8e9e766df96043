"""Database access of replies: queueing, delivery attempts and outcomes.

Functions take the caller's session and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from crm.conversation.repository import table
from crm.models import Channel, Contact, Conversation, Message
from jggl_common.contracts import utcnow

__all__ = [
    "SendTarget",
    "by_idempotency_key",
    "clear_needs_reauth",
    "finish_failed",
    "finish_sent",
    "flag_needs_reauth",
    "insert_queued",
    "last_inbound_at",
    "send_target",
    "start_attempt",
]

_messages = table(Message)
_conversations = table(Conversation)
_channels = table(Channel)


async def last_inbound_at(session: AsyncSession, conversation_id: int) -> datetime | None:
    """When the customer last wrote: the conversation's mark, or its newest customer message."""
    newest_in = (
        select(func.max(_messages.c.sent_at))
        .where(_messages.c.conversation_id == conversation_id, _messages.c.direction == "in")
        .scalar_subquery()
    )
    value: datetime | None = (
        await session.execute(
            select(func.greatest(_conversations.c.last_inbound_at, newest_in)).where(
                _conversations.c.id == conversation_id
            )
        )
    ).scalar_one_or_none()
    return value


async def by_idempotency_key(session: AsyncSession, deal_id: int, key: str) -> Message | None:
    """The reply stored on ``deal_id`` under ``key``, fresh from the database."""
    return (
        await session.execute(
            select(Message)
            .where(col(Message.deal_id) == deal_id, col(Message.idempotency_key) == key)
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


async def insert_queued(session: AsyncSession, **values: Any) -> int | None:
    """Store a queued reply; ``None`` when the deal already has one under its idempotency key.

    The partial unique index on ``(deal_id, idempotency_key)`` decides between racers.
    """
    now = utcnow()
    row = {
        "direction": "out",
        "status": "queued",
        "reactions": {},
        "reaction_clock": {},
        "is_edited": False,
        "edit_count": 0,
        "is_deleted": False,
        "send_attempts": 0,
        "sent_at": now,
        "created_at": now,
        **values,
    }
    stmt = (
        insert(_messages)
        .values(**row)
        .on_conflict_do_nothing(
            index_elements=["deal_id", "idempotency_key"], index_where=text("idempotency_key IS NOT NULL")
        )
        .returning(_messages.c.id)
    )
    message_id = (await session.execute(stmt)).scalar()
    return int(message_id) if message_id is not None else None


@dataclass(frozen=True, slots=True)
class SendTarget:
    """Everything one delivery attempt needs, read in one go."""

    message: Message
    channel: Channel
    contact: Contact
    last_inbound_at: datetime | None


async def send_target(session: AsyncSession, message_id: int, *, for_update: bool = False) -> SendTarget | None:
    """The reply with its channel and customer (the reply's row locked when ``for_update``)."""
    query = (
        select(Message, Channel, Contact)
        .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
        .join(Channel, col(Channel.id) == col(Conversation.channel_id))
        .join(Contact, col(Contact.id) == col(Conversation.contact_id))
        .where(col(Message.id) == message_id, col(Message.direction) == "out")
        .execution_options(populate_existing=True)
    )
    if for_update:
        query = query.with_for_update(of=Message)
    row = (await session.execute(query)).first()
    if row is None:
        return None
    message, channel, contact = row[0], row[1], row[2]
    return SendTarget(message, channel, contact, await last_inbound_at(session, message.conversation_id))


async def start_attempt(
    session: AsyncSession, message_id: int, *, messaging_type: str, tag: str | None, at: datetime
) -> int:
    """Record that a Send API call begins now; returns the attempt's number."""
    attempts = (
        await session.execute(
            update(_messages)
            .where(_messages.c.id == message_id)
            .values(
                send_attempts=_messages.c.send_attempts + 1,
                send_started_at=at,
                messaging_type=messaging_type,
                tag=tag,
            )
            .returning(_messages.c.send_attempts)
        )
    ).scalar_one()
    return int(attempts)


async def finish_sent(session: AsyncSession, message_id: int, mid: str, sent_at: datetime) -> bool:
    """Mark a queued reply sent with Meta's id; False when it was no longer queued.

    An echo may have beaten the Send API's answer and marked it already: then its
    time and id stay. A row stored under this ``mid`` before we knew it was ours (an echo
    no matcher recognised) is the same message: it goes, keeping its receipts.
    """
    status = (
        await session.execute(select(_messages.c.status).where(_messages.c.id == message_id).with_for_update())
    ).scalar_one_or_none()
    if status != "queued":
        return False
    twin = (
        await session.execute(
            select(_messages.c.id, _messages.c.read_at, _messages.c.delivered_at).where(
                _messages.c.mid == mid, _messages.c.id != message_id, _messages.c.author_user_id.is_(None)
            )
        )
    ).one_or_none()
    values: dict[str, Any] = {"status": "sent", "mid": mid, "sent_at": sent_at, "error_code": None}
    if twin is not None:
        await session.execute(sa.delete(_messages).where(_messages.c.id == twin.id))
        values.update(read_at=twin.read_at, delivered_at=twin.delivered_at)
    await session.execute(update(_messages).where(_messages.c.id == message_id).values(**values))
    return True


async def finish_failed(
    session: AsyncSession, message_id: int, *, code: int | None, subcode: int | None, error: str
) -> bool:
    """Mark a queued reply failed with Meta's code and text; False when it was no longer queued."""
    result = await session.execute(
        update(_messages)
        .where(_messages.c.id == message_id, _messages.c.status == "queued")
        .values(status="failed", error_code=code, error_subcode=subcode, error_message=error[:2000])
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def flag_needs_reauth(session: AsyncSession, channel_id: int) -> bool:
    """Mark the channel's token as refused by Meta; True only for the call that flipped it."""
    result = await session.execute(
        update(_channels)
        .where(_channels.c.id == channel_id, _channels.c.needs_reauth.is_(False))
        .values(needs_reauth=True)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def clear_needs_reauth(session: AsyncSession, channel_id: int) -> None:
    """A send just succeeded with this channel's token: it is valid again."""
    await session.execute(
        update(_channels)
        .where(_channels.c.id == channel_id, _channels.c.needs_reauth.is_(True))
        .values(needs_reauth=False)
    )
