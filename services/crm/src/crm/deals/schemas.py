"""What the deals API reads and answers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from crm.models import Activity, Contact, Deal, Message, Stage
from crm.web.types import CleanStr

from .events import display_name
from .repository import UNREAD_CAP

DealStatus = Literal["open", "won", "lost"]
SlaState = Literal["breached", "escalated"]


def sla_state(deal: Deal) -> SlaState | None:
    """Whether the current wait was announced late: the episodes the SLA sweep announced
    are the deal's current one (a reply or a new episode makes them old)."""
    waiting = deal.awaiting_reply_since
    if waiting is None or deal.status != "open":
        return None
    if deal.sla_escalation_since == waiting:
        return "escalated"
    return "breached" if deal.sla_breach_since == waiting else None


Platform = Literal["messenger", "instagram"]
DealSort = Literal["created_at", "-created_at", "last_message_at", "-last_message_at", "amount", "-amount"]
Amount = Annotated[
    Decimal,
    Field(ge=0, max_digits=14, decimal_places=2, description="decimal, at most 2 places"),
    # Stored as numeric(14, 2): answer and announce the value as the database keeps it.
    AfterValidator(lambda value: value.quantize(Decimal("0.01"))),
]


class ContactBrief(BaseModel):
    """The customer behind a deal."""

    id: int
    platform: Platform
    external_id: str = Field(description="PSID (Messenger) or IGSID (Instagram)")
    name: str | None
    username: str | None
    avatar_url: str | None
    display_name: str = Field(description="name, else @username, else the platform id")

    @classmethod
    def of(cls, contact: Contact) -> Self:
        """From the model."""
        assert contact.id is not None
        return cls(
            id=contact.id,
            platform=contact.platform,
            external_id=contact.external_id,
            name=contact.name,
            username=contact.username,
            avatar_url=contact.avatar_url,
            display_name=display_name(contact),
        )


class StageRef(BaseModel):
    """A deal's pipeline stage."""

    id: int
    key: str
    name: str


class AssigneeRef(BaseModel):
    """The manager a deal is assigned to."""

    id: int
    name: str


class DealItem(BaseModel):
    """A deal in lists and search results."""

    id: int
    contact: ContactBrief
    stage: StageRef
    status: DealStatus
    amount: Decimal | None
    assignee_id: int | None
    assignee: AssigneeRef | None
    platform: Platform
    awaiting_reply_since: datetime | None = Field(description="the customer waits for an answer since")
    sla: SlaState | None = Field(
        description="breached: this wait passed the SLA (business hours); escalated: twice the SLA; "
        "null: not waiting, or not late (yet)"
    )
    last_message_text: str | None
    last_message_at: datetime | None
    ai_summary: str | None
    ai_intent: str | None
    ai_temperature: str | None
    ai_score: int | None
    ai_source: str | None = Field(description="gemini, or heuristic while the AI is unavailable")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def fields_of(cls, deal: Deal, contact: Contact, stage: Stage, assignee_name: str | None) -> dict[str, Any]:
        """The item's fields from the models."""
        assert deal.id is not None
        assert stage.id is not None
        return {
            "id": deal.id,
            "contact": ContactBrief.of(contact),
            "stage": StageRef(id=stage.id, key=stage.key, name=stage.name),
            "status": deal.status,
            "amount": deal.amount,
            "assignee_id": deal.assignee_id,
            "assignee": AssigneeRef(id=deal.assignee_id, name=assignee_name)
            if deal.assignee_id is not None and assignee_name is not None
            else None,
            "platform": deal.platform,
            "awaiting_reply_since": deal.awaiting_reply_since,
            "sla": sla_state(deal),
            "last_message_text": deal.last_message_text,
            "last_message_at": deal.last_message_at,
            "ai_summary": deal.ai_summary,
            "ai_intent": deal.ai_intent,
            "ai_temperature": deal.ai_temperature,
            "ai_score": deal.ai_score,
            "ai_source": deal.ai_source,
            "created_at": deal.created_at,
            "updated_at": deal.updated_at,
        }

    @classmethod
    def of(cls, deal: Deal, contact: Contact, stage: Stage, assignee_name: str | None) -> Self:
        """From the models."""
        return cls(**cls.fields_of(deal, contact, stage, assignee_name))


UNREAD_DESCRIPTION = (
    "the customer's messages no manager has read: written since the last reply and after the "
    "deal was last opened (POST /api/deals/{deal_id}/read); counted up to 100 (100: 100 or more)"
)


class DealListItem(DealItem):
    """A deal in the deal list: the item and its unread count."""

    unread: int = Field(ge=0, le=UNREAD_CAP, description=UNREAD_DESCRIPTION)

    @classmethod
    def with_unread(cls, row: tuple[Deal, Contact, Stage, str | None], unread: int) -> Self:
        """From the models and the deal's unread count."""
        return cls(**cls.fields_of(*row), unread=unread)


class DealPage(BaseModel):
    """One page of deals; pass ``next_cursor`` back as ``cursor`` for the next one."""

    items: list[DealListItem]
    next_cursor: str | None = Field(description="null on the last page")


class AiManagerNotes(BaseModel):
    """How the AI found the manager handled the conversation, one sentence per criterion."""

    speed: str | None = None
    politeness: str | None = None
    needs_discovery: str | None = None
    next_step: str | None = Field(default=None, description="whether a next step was proposed")


class DealDetail(DealListItem):
    """A deal with everything a manager needs to work it."""

    last_inbound_at: datetime | None = Field(
        description="when the customer last wrote in the conversation: Meta's reply window "
        "(24 hours, 7 days with the HUMAN_AGENT tag) counts from it"
    )
    conversation_id: int
    channel_id: int
    lead_source: str | None
    referral: dict[str, Any] | None = Field(description="ad or m.me link the customer came from")
    lost_reason: str | None
    comment: str | None
    first_response_at: datetime | None
    first_response_seconds: int | None
    ai_analyzed_at: datetime | None
    ai_next_action: str | None = Field(description="what the AI suggests the manager does next")
    ai_language: str | None = Field(description="the conversation's language (ISO 639-1), as the AI found it")
    ai_manager_notes: AiManagerNotes | None = Field(description="the AI's notes behind ai_score")
    ai_version: int | None = Field(description="messages of the conversation the analysis read")
    ai_model: str | None = Field(description="the Gemini model; null for the heuristic")
    closed_at: datetime | None

    @classmethod
    def of(  # type: ignore[override]
        cls,
        row: tuple[Deal, Contact, Stage, str | None],
        *,
        unread: int,
        last_inbound_at: datetime | None,
    ) -> Self:
        """From the models, the unread count and the conversation's last customer message."""
        deal = row[0]
        return cls(
            **cls.fields_of(*row),
            unread=unread,
            last_inbound_at=last_inbound_at,
            conversation_id=deal.conversation_id,
            channel_id=deal.channel_id,
            lead_source=deal.lead_source,
            referral=deal.referral,
            lost_reason=deal.lost_reason,
            comment=deal.comment,
            first_response_at=deal.first_response_at,
            first_response_seconds=deal.first_response_seconds,
            ai_analyzed_at=deal.ai_analyzed_at,
            ai_next_action=deal.ai_next_action,
            ai_language=deal.ai_language,
            ai_manager_notes=AiManagerNotes.model_validate(deal.ai_manager_notes)
            if deal.ai_manager_notes is not None
            else None,
            ai_version=deal.ai_version,
            ai_model=deal.ai_model,
            closed_at=deal.closed_at,
        )


class DealPatch(BaseModel):
    """Changes to a deal; absent fields stay as they are, ``null`` clears a clearable one."""

    model_config = ConfigDict(extra="forbid")

    stage: Annotated[CleanStr, Field(min_length=1, max_length=50, description="stage key")] | None = None
    amount: Amount | None = None
    comment: Annotated[CleanStr, Field(max_length=10_000)] | None = None
    assignee_id: Annotated[int, Field(ge=1, le=2_147_483_647)] | None = Field(
        default=None, description="admins assign anyone active; managers only themselves, or null to let go"
    )
    status: DealStatus | None = Field(default=None, description="won / lost closes the deal, open reopens it")
    lost_reason: Annotated[CleanStr, Field(max_length=500)] | None = Field(
        default=None, description="required with status 'lost'"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for name in ("stage", "status"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        if self.status == "lost" and not (self.lost_reason and self.lost_reason.strip()):
            raise ValueError("lost_reason is required when marking a deal lost")
        if "lost_reason" in self.model_fields_set and self.status not in (None, "lost"):
            raise ValueError("lost_reason goes only with status 'lost'")
        return self


class MessageItem(BaseModel):
    """One message of the conversation."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    mid: str | None = Field(description="Meta's message id (null while a reply is queued)")
    direction: Literal["in", "out"]
    kind: str
    text: str | None
    attachments: list[dict[str, Any]]
    status: str = Field(description="received | queued | sent | failed")
    sent_at: datetime
    reactions: dict[str, Any]
    is_edited: bool
    is_deleted: bool
    delivered_at: datetime | None
    read_at: datetime | None
    author_user_id: int | None
    author_label: str | None = Field(description="who replied when no CRM user did, e.g. 'Meta inbox'")
    reply_to_mid: str | None
    reply_to_story: dict[str, Any] | None
    quick_reply_payload: str | None
    postback_payload: str | None
    error_code: int | None
    error_message: str | None
    response_seconds: int | None

    @classmethod
    def of(cls, message: Message) -> Self:
        """From the model."""
        return cls.model_validate(message)


class MessagePage(BaseModel):
    """Messages oldest first; ``next_cursor`` (as ``before``) loads the older ones."""

    items: list[MessageItem]
    next_cursor: str | None = Field(description="null when there is nothing older")


class ActivityItem(BaseModel):
    """One event in a deal's timeline."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str = Field(description="created, stage_changed, assigned, won, lost, reopened, amount_changed, ...")
    actor_user_id: int | None
    actor_label: str | None
    data: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, activity: Activity) -> Self:
        """From the model."""
        return cls.model_validate(activity)


class ActivityList(BaseModel):
    """A deal's timeline, oldest first, with the names of the users it mentions."""

    items: list[ActivityItem]
    user_names: dict[str, str] = Field(
        default_factory=dict,
        description="user id -> name, for every actor and every assignee (from/to) of the entries",
    )


def mentioned_users(activities: Sequence[Activity]) -> set[int]:
    """The user ids a timeline mentions: its actors, and who a deal or a task moved between."""
    found = {a.actor_user_id for a in activities if a.actor_user_id is not None}
    for activity in activities:
        if activity.kind in ("assigned", "task_reassigned"):
            found |= {v for k in ("from", "to") if isinstance(v := activity.data.get(k), int)}
    return found
