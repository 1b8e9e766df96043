"""What the contacts API answers."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Self

from pydantic import BaseModel, Field

from crm.deals.schemas import ContactBrief, DealStatus, StageRef
from crm.models import Contact, Deal, Stage


class ContactItem(ContactBrief):
    """A customer in lists."""

    profile_status: str = Field(description="pending | fetched | failed (name and avatar from Meta)")
    first_seen_at: datetime
    last_seen_at: datetime

    @classmethod
    def of(cls, contact: Contact) -> Self:
        """From the model."""
        return cls(
            **ContactBrief.of(contact).model_dump(),
            profile_status=contact.profile_status,
            first_seen_at=contact.first_seen_at,
            last_seen_at=contact.last_seen_at,
        )


class ContactPage(BaseModel):
    """One page of contacts, newest first; pass ``next_cursor`` back as ``cursor``."""

    items: list[ContactItem]
    next_cursor: str | None = Field(description="null on the last page")


class ContactDeal(BaseModel):
    """One of the contact's deals."""

    id: int
    status: DealStatus
    stage: StageRef
    amount: Decimal | None
    assignee_id: int | None
    last_message_at: datetime | None
    created_at: datetime
    closed_at: datetime | None

    @classmethod
    def of(cls, deal: Deal, stage: Stage) -> Self:
        """From the models."""
        assert deal.id is not None
        assert stage.id is not None
        return cls(
            id=deal.id,
            status=deal.status,
            stage=StageRef(id=stage.id, key=stage.key, name=stage.name),
            amount=deal.amount,
            assignee_id=deal.assignee_id,
            last_message_at=deal.last_message_at,
            created_at=deal.created_at,
            closed_at=deal.closed_at,
        )


class ContactDetail(ContactItem):
    """A customer with the deals you may see, newest first."""

    deals: list[ContactDeal]
