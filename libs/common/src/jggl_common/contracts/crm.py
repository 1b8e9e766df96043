"""Contracts published by crm. They carry the state their consumers need (ai, notifier),
so those services never have to ask crm back."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from .base import Envelope

__all__ = [
    "ContactDeal",
    "ContactRef",
    "ContactUpdated",
    "ContactUpdatedData",
    "DealCreated",
    "DealHotLead",
    "DealSnapshot",
    "DealUpdated",
    "DealUpdatedData",
    "HotLeadData",
    "MessageReceived",
    "MessageReceivedData",
]

Platform = Literal["messenger", "instagram"]


class ContactRef(BaseModel):
    """Who the customer is, as a notification or an analysis needs it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int
    platform: Platform
    external_id: str = Field(description="PSID or IGSID")
    display_name: str = Field(description="name, else @username, else the id")
    username: str | None = None
    avatar_url: str | None = None


class DealSnapshot(BaseModel):
    """A deal as it is after the change that caused the event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int
    conversation_id: int
    channel_id: int
    platform: Platform
    stage: str = Field(description="stage key, e.g. 'new'")
    status: Literal["open", "won", "lost"]
    assignee_id: int | None = None
    amount: str | None = Field(default=None, description="decimal as a string, to keep precision")
    lead_source: str | None = None
    lost_reason: str | None = None
    awaiting_reply_since: datetime | None = None
    created_at: datetime
    contact: ContactRef


class DealCreated(Envelope):
    """A new deal. Subject ``crm.deal.created``."""

    subject: ClassVar[str] = "crm.deal.created"

    type: Literal["crm.deal.created"] = "crm.deal.created"
    version: Literal[1] = 1
    data: DealSnapshot


class DealUpdatedData(BaseModel):
    """The deal after the change, which fields changed (old and new), and who did it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    deal: DealSnapshot
    changes: dict[str, tuple[Any, Any]] = Field(description="field -> (old, new)")
    actor_user_id: int | None = None
    actor_label: str | None = Field(default=None, description="'system', 'Meta inbox'... when no user acted")


class DealUpdated(Envelope):
    """A deal changed (stage, status, assignee, amount, comment...). Subject ``crm.deal.updated``."""

    subject: ClassVar[str] = "crm.deal.updated"

    type: Literal["crm.deal.updated"] = "crm.deal.updated"
    version: Literal[1] = 1
    data: DealUpdatedData


class MessageReceivedData(BaseModel):
    """A customer's message, with its deal and the manager who should see it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: int
    mid: str
    deal_id: int
    conversation_id: int
    kind: str = Field(description="text, image, video, audio, file, location, share, story_mention, ...")
    text: str | None = None
    attachments: list[dict[str, Any]] = Field(default_factory=list)
    sent_at: datetime
    is_first_message: bool = Field(description="this message opened the deal")
    deal_stage: str
    assignee_id: int | None = None
    contact: ContactRef


class MessageReceived(Envelope):
    """A customer wrote. Subject ``crm.message.received``."""

    subject: ClassVar[str] = "crm.message.received"

    type: Literal["crm.message.received"] = "crm.message.received"
    version: Literal[1] = 1
    data: MessageReceivedData


class HotLeadData(BaseModel):
    """A deal the AI now rates hot, with what a notification shows about it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    deal: DealSnapshot
    summary: str
    intent: str
    next_action: str | None = None
    provider: Literal["gemini", "heuristic"]
    analysis_version: int = Field(description="the transcript version the analysis covered")


class DealHotLead(Envelope):
    """The AI rated a deal hot (it was not before). Subject ``crm.deal.hot_lead``."""

    subject: ClassVar[str] = "crm.deal.hot_lead"

    type: Literal["crm.deal.hot_lead"] = "crm.deal.hot_lead"
    version: Literal[1] = 1
    data: HotLeadData


class ContactDeal(BaseModel):
    """One of a contact's open deals, with who may see it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int
    assignee_id: int | None = None


class ContactUpdatedData(BaseModel):
    """The contact after the change, which fields changed (old and new), and the contact's
    open deals (a consumer shows the new name wherever those deals are shown)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    contact: ContactRef
    changes: dict[str, tuple[Any, Any]] = Field(description="field -> (old, new): display_name, username, avatar_url")
    open_deals: list[ContactDeal] = Field(default_factory=list)


class ContactUpdated(Envelope):
    """What a customer is shown as changed (crm read their Meta profile, or someone edited
    it). Subject ``crm.contact.updated``."""

    subject: ClassVar[str] = "crm.contact.updated"

    type: Literal["crm.contact.updated"] = "crm.contact.updated"
    version: Literal[1] = 1
    data: ContactUpdatedData
