"""Typed factories that insert crm rows straight through the models.

Each one adds and flushes in the given session; the test commits (or wraps the calls in
``session_scope``). Identifiers are random, so tests never collide.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from decimal import Decimal
from typing import Any

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from crm.models import Channel, Contact, Conversation, Deal, Message, Stage, User
from jggl_common.contracts import utcnow

PASSWORD = "correct horse battery staple"
# Hashing is slow on purpose: hash the shared test password once per process.
PASSWORD_HASH = PasswordHash((Argon2Hasher(),)).hash(PASSWORD)


def unique_email(prefix: str = "user") -> str:
    """An e-mail no other test uses."""
    return f"{prefix}-{secrets.token_hex(6)}@example.test"


async def create_user(
    session: AsyncSession,
    *,
    role: str = "manager",
    email: str | None = None,
    name: str | None = None,
    is_active: bool = True,
    password_hash: str = PASSWORD_HASH,
) -> User:
    """An admin or manager whose password is :data:`PASSWORD`."""
    user = User(
        email=(email or unique_email(role)).lower(),
        name=name or f"{role.title()} {secrets.token_hex(2)}",
        password_hash=password_hash,
        role=role,
        is_active=is_active,
    )
    session.add(user)
    await session.flush()
    return user


async def create_channel(session: AsyncSession, *, platform: str = "messenger") -> Channel:
    """A connected Page or Instagram account."""
    channel = Channel(platform=platform, external_id=str(10**15 + secrets.randbits(40)), name="Test page")
    session.add(channel)
    await session.flush()
    return channel


async def create_contact(
    session: AsyncSession,
    channel: Channel | None = None,
    *,
    name: str | None = None,
    username: str | None = None,
    platform: str | None = None,
) -> Contact:
    """A customer of ``channel`` (a new channel when not given)."""
    channel = channel or await create_channel(session, platform=platform or "messenger")
    assert channel.id is not None
    contact = Contact(
        channel_id=channel.id,
        platform=channel.platform,
        external_id=str(10**15 + secrets.randbits(40)),
        name=name,
        username=username,
    )
    session.add(contact)
    await session.flush()
    return contact


async def stage_id(session: AsyncSession, key: str) -> int:
    """The id of a seeded stage."""
    found: int | None = (await session.execute(select(col(Stage.id)).where(col(Stage.key) == key))).scalar_one()
    assert found is not None
    return found


async def create_deal(
    session: AsyncSession,
    *,
    contact: Contact | None = None,
    contact_name: str | None = None,
    stage: str = "new",
    status: str = "open",
    assignee: User | None = None,
    amount: Decimal | str | None = None,
    comment: str | None = None,
    last_message_text: str | None = None,
    last_message_at: datetime | None = None,
    awaiting_reply_since: datetime | None = None,
    created_at: datetime | None = None,
    closed_at: datetime | None = None,
    platform: str = "messenger",
    **fields: Any,
) -> Deal:
    """A deal on a conversation of its own (contact, channel and conversation made as needed)."""
    contact = contact or await create_contact(session, name=contact_name, platform=platform)
    assert contact.id is not None
    conversation = (
        await session.execute(select(Conversation).where(col(Conversation.contact_id) == contact.id))
    ).scalar_one_or_none()
    if conversation is None:
        conversation = Conversation(channel_id=contact.channel_id, contact_id=contact.id)
        session.add(conversation)
        await session.flush()
    assert conversation.id is not None
    deal = Deal(
        conversation_id=conversation.id,
        contact_id=contact.id,
        channel_id=contact.channel_id,
        platform=contact.platform,
        stage_id=await stage_id(session, stage),
        status=status,
        assignee_id=assignee.id if assignee else None,
        amount=Decimal(amount) if amount is not None else None,
        comment=comment,
        last_message_text=last_message_text,
        last_message_at=last_message_at,
        awaiting_reply_since=awaiting_reply_since,
        created_at=created_at or utcnow(),
        closed_at=closed_at if closed_at is not None else (utcnow() if status != "open" else None),
        **fields,
    )
    session.add(deal)
    await session.flush()
    return deal


async def create_message(
    session: AsyncSession,
    deal: Deal,
    *,
    text: str | None = None,
    direction: str = "in",
    sent_at: datetime | None = None,
    author: User | None = None,
    **fields: Any,
) -> Message:
    """A message of ``deal``'s conversation: the customer's (in) or a reply (out)."""
    assert deal.id is not None
    fields.setdefault("status", "received" if direction == "in" else "sent")
    message = Message(
        conversation_id=deal.conversation_id,
        deal_id=deal.id,
        mid="m_" + secrets.token_hex(12),
        direction=direction,
        kind="text",
        text=text if text is not None else ("hello" if direction == "in" else "hi, how can I help?"),
        sent_at=sent_at or utcnow(),
        author_user_id=author.id if author else None,
        **fields,
    )
    session.add(message)
    await session.flush()
    return message
