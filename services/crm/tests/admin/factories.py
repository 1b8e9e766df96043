"""Typed factories that insert crm rows straight through the models (add and flush; the
test commits). Identifiers are random, so tests never collide."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Channel, Contact, Conversation, Deal, Message, Stage, User
from jggl_common.contracts import utcnow

# Hashing is slow on purpose: hash one password once per process.
PASSWORD_HASH = PasswordHash((Argon2Hasher(),)).hash("correct horse battery staple")


async def create_user(
    session: AsyncSession, *, role: str = "manager", name: str | None = None, is_active: bool = True
) -> User:
    """An admin or a manager."""
    user = User(
        email=f"{role}-{secrets.token_hex(6)}@example.test",
        name=name or f"{role.title()} {secrets.token_hex(2)}",
        password_hash=PASSWORD_HASH,
        role=role,
        is_active=is_active,
    )
    session.add(user)
    await session.flush()
    return user


async def create_deal(
    session: AsyncSession,
    *,
    assignee: User | None = None,
    stage: str = "new",
    status: str = "open",
    created_at: datetime | None = None,
    closed_at: datetime | None = None,
    **fields: Any,
) -> Deal:
    """A deal on a conversation (and contact, and channel) of its own."""
    channel = Channel(platform="messenger", external_id=str(10**15 + secrets.randbits(40)), name="Test page")
    session.add(channel)
    await session.flush()
    assert channel.id is not None
    contact = Contact(channel_id=channel.id, platform="messenger", external_id=str(10**15 + secrets.randbits(40)))
    session.add(contact)
    await session.flush()
    assert contact.id is not None
    conversation = Conversation(channel_id=channel.id, contact_id=contact.id)
    session.add(conversation)
    await session.flush()
    assert conversation.id is not None
    stage_id = (await session.execute(select(Stage.id).where(Stage.key == stage))).scalar_one()
    deal = Deal(
        conversation_id=conversation.id,
        contact_id=contact.id,
        channel_id=channel.id,
        platform="messenger",
        stage_id=stage_id,
        status=status,
        assignee_id=assignee.id if assignee else None,
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
    direction: str,
    sent_at: datetime,
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
        text="hello" if direction == "in" else "hi, how can I help?",
        sent_at=sent_at,
        author_user_id=author.id if author else None,
        **fields,
    )
    session.add(message)
    await session.flush()
    return message
