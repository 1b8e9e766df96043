"""Contracts of replies to customers: sending through Meta, its outcome, and the commands
other services use to act on deals as a user.

``crm.outbound.send_requested`` is crm's own durable work queue (a reply was accepted and
waits for the Send API); the rest are what ai and notifier consume or publish:

* ``crm.message.sent`` / ``crm.message.failed``: a reply reached Meta, or will not;
* ``crm.cmd.send_message`` / ``crm.cmd.assign_deal``: a user acting through another
  service (the Telegram bot's "reply" and "take" buttons); crm applies the same rules as
  its HTTP API and answers a refusal with ``crm.cmd.rejected``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from .base import Envelope
from .crm import ContactRef

__all__ = [
    "ALREADY_ASSIGNED_TO_YOU",
    "AssignDealCommand",
    "AssignDealCommandData",
    "CommandRejected",
    "CommandRejectedData",
    "MessageFailed",
    "MessageFailedData",
    "MessageSent",
    "MessageSentData",
    "OutgoingAttachment",
    "SendMessageCommand",
    "SendMessageCommandData",
    "SendRequested",
    "SendRequestedData",
]

AttachmentType = Literal["image", "video", "audio", "file"]
FailureReason = Literal["meta_error", "token_invalid", "throttled", "window_closed", "unreachable"]


class OutgoingAttachment(BaseModel):
    """A file a reply carries, by URL (Meta downloads it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: AttachmentType
    url: str = Field(description="http(s) URL Meta fetches the file from")


class SendRequestedData(BaseModel):
    """A stored, queued reply that the sender should deliver."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: int
    deal_id: int
    conversation_id: int


class SendRequested(Envelope):
    """A reply waits for the Send API. Subject ``crm.outbound.send_requested`` (crm's own queue)."""

    subject: ClassVar[str] = "crm.outbound.send_requested"

    type: Literal["crm.outbound.send_requested"] = "crm.outbound.send_requested"
    version: Literal[1] = 1
    data: SendRequestedData


class MessageSentData(BaseModel):
    """A reply as the customer received it, with who wrote it and how fast."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: int
    mid: str = Field(description="Meta's message id")
    deal_id: int
    conversation_id: int
    kind: str = Field(description="text, image, video, audio, file")
    text: str | None = None
    attachments: list[dict[str, Any]] = Field(default_factory=list)
    sent_at: datetime
    messaging_type: str | None = Field(default=None, description="RESPONSE or MESSAGE_TAG; null for Meta inbox replies")
    tag: str | None = Field(default=None, description="HUMAN_AGENT when sent with a message tag")
    author_user_id: int | None = Field(default=None, description="the CRM user who wrote it")
    author_label: str | None = Field(default=None, description="'Meta inbox' when written in Meta's own apps")
    response_seconds: int | None = Field(default=None, description="how long the customer had waited")
    deal_stage: str
    assignee_id: int | None = None
    contact: ContactRef


class MessageSent(Envelope):
    """A reply reached the customer through Meta. Subject ``crm.message.sent``."""

    subject: ClassVar[str] = "crm.message.sent"

    type: Literal["crm.message.sent"] = "crm.message.sent"
    version: Literal[1] = 1
    data: MessageSentData


class MessageFailedData(BaseModel):
    """A reply that will not reach the customer, and why (Meta's own code and text when it answered)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: int
    deal_id: int
    conversation_id: int
    kind: str
    text: str | None = None
    author_user_id: int | None = None
    reason: FailureReason = Field(
        description="meta_error (refused, e.g. 551 or outside the window), token_invalid (190), throttled "
        "(gave up after retries), window_closed (checked before sending), unreachable (no answer from Meta)"
    )
    error_code: int | None = Field(default=None, description="Meta's error code")
    error_subcode: int | None = None
    error_message: str
    attempts: int = Field(description="Send API calls made for this reply")
    failed_at: datetime
    deal_stage: str
    assignee_id: int | None = None
    contact: ContactRef


class MessageFailed(Envelope):
    """A reply could not be delivered. Subject ``crm.message.failed``."""

    subject: ClassVar[str] = "crm.message.failed"

    type: Literal["crm.message.failed"] = "crm.message.failed"
    version: Literal[1] = 1
    data: MessageFailedData


class SendMessageCommandData(BaseModel):
    """Reply to a deal's customer as ``acting_user_id``; ``idempotency_key`` makes a repeat send once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    deal_id: int
    acting_user_id: int
    text: str | None = None
    attachments: list[OutgoingAttachment] = Field(default_factory=list)
    idempotency_key: str = Field(min_length=1, max_length=200)


class SendMessageCommand(Envelope):
    """Send a reply on a user's behalf. Subject ``crm.cmd.send_message``."""

    subject: ClassVar[str] = "crm.cmd.send_message"

    type: Literal["crm.cmd.send_message"] = "crm.cmd.send_message"
    version: Literal[1] = 1
    data: SendMessageCommandData


class AssignDealCommandData(BaseModel):
    """Assign a deal as ``acting_user_id`` would through the API (null ``assignee_id`` lets it go)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    deal_id: int
    assignee_id: int | None
    acting_user_id: int


class AssignDealCommand(Envelope):
    """Assign (or take, or let go of) a deal on a user's behalf. Subject ``crm.cmd.assign_deal``."""

    subject: ClassVar[str] = "crm.cmd.assign_deal"

    type: Literal["crm.cmd.assign_deal"] = "crm.cmd.assign_deal"
    version: Literal[1] = 1
    data: AssignDealCommandData


ALREADY_ASSIGNED_TO_YOU = "The deal is already assigned to you"
"""The ``reason`` of a ``crm.cmd.assign_deal`` answered with ``crm.cmd.rejected`` because the
deal already was the acting user's (status 409): nothing changed, the user has it."""


class CommandRejectedData(BaseModel):
    """Why crm refused a command: the same refusal the HTTP API would have answered."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command_id: str = Field(description="the refused command's event id")
    command_type: str
    acting_user_id: int | None = None
    deal_id: int | None = None
    status: int = Field(description="the HTTP status the API would answer: 403, 404, 409, 422")
    reason: str = Field(description="a sentence the user can read")


class CommandRejected(Envelope):
    """A command was refused and will not be retried. Subject ``crm.cmd.rejected``."""

    subject: ClassVar[str] = "crm.cmd.rejected"

    type: Literal["crm.cmd.rejected"] = "crm.cmd.rejected"
    version: Literal[1] = 1
    data: CommandRejectedData
