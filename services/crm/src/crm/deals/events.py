"""Building the event-carried state of deals (what ai and notifier receive)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from crm.models import Contact, Deal, Stage
from jggl_common.contracts import ContactRef, DealSnapshot


class ContactLike(Protocol):
    """What events need of a contact: the model, or a row read for a hot path."""

    @property
    def id(self) -> int | None: ...
    @property
    def platform(self) -> str: ...
    @property
    def external_id(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def username(self) -> str | None: ...
    @property
    def avatar_url(self) -> str | None: ...


class DealLike(Protocol):
    """What events need of a deal: the model, or a row read for a hot path."""

    @property
    def id(self) -> int | None: ...
    @property
    def conversation_id(self) -> int: ...
    @property
    def channel_id(self) -> int: ...
    @property
    def platform(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def assignee_id(self) -> int | None: ...
    @property
    def amount(self) -> Decimal | None: ...
    @property
    def lead_source(self) -> str | None: ...
    @property
    def lost_reason(self) -> str | None: ...
    @property
    def awaiting_reply_since(self) -> datetime | None: ...
    @property
    def created_at(self) -> datetime: ...


def row_key(row_id: int | None, created_at: datetime) -> str:
    """A row's identity for event ids: stable for the row, and distinct from a row that gets
    the same id in another database (a test schema, a restored backup) publishing to the
    same JetStream within its duplicate window."""
    return f"{row_id}@{created_at.isoformat()}"


def display_name(contact: ContactLike) -> str:
    """The name managers see: name, else @username, else the platform id."""
    if contact.name and contact.name.strip():
        return contact.name.strip()
    if contact.username:
        return f"@{contact.username}"
    return contact.external_id


def contact_ref(contact: ContactLike) -> ContactRef:
    """The contact as events carry it."""
    assert contact.id is not None
    return ContactRef(
        id=contact.id,
        platform=contact.platform,
        external_id=contact.external_id,
        display_name=display_name(contact),
        username=contact.username,
        avatar_url=contact.avatar_url,
    )


def snapshot(deal: DealLike, contact: ContactLike, stage_key: str) -> DealSnapshot:
    """A deal as events carry it."""
    assert deal.id is not None
    return DealSnapshot(
        id=deal.id,
        conversation_id=deal.conversation_id,
        channel_id=deal.channel_id,
        platform=deal.platform,
        stage=stage_key,
        status=deal.status,
        assignee_id=deal.assignee_id,
        amount=str(deal.amount) if deal.amount is not None else None,
        lead_source=deal.lead_source,
        lost_reason=deal.lost_reason,
        awaiting_reply_since=deal.awaiting_reply_since,
        created_at=deal.created_at,
        contact=contact_ref(contact),
    )


async def load_snapshot(session: AsyncSession, deal_id: int) -> DealSnapshot:
    """Read a deal with its contact and stage and build its snapshot."""
    row = (
        await session.execute(
            select(Deal, Contact, col(Stage.key))
            .join(Contact, col(Contact.id) == col(Deal.contact_id))
            .join(Stage, col(Stage.id) == col(Deal.stage_id))
            .where(col(Deal.id) == deal_id)
        )
    ).one()
    return snapshot(row[0], row[1], row[2])
