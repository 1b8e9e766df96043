"""What the replies API reads and answers."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl, model_validator

from crm.deals.schemas import MessageItem
from crm.models import Message
from crm.web.types import CleanStr

__all__ = ["MAX_TEXT", "AttachmentIn", "OutgoingMessage", "ReplyIn"]

MAX_TEXT = 2000
"""Meta's limit on a message's text, in characters."""


def _http_only(url: HttpUrl) -> HttpUrl:
    # HttpUrl already refuses other schemes; kept explicit because Meta fetches the file
    # from this address and anything but http(s) must never reach it.
    if url.scheme not in ("http", "https"):
        raise ValueError("must be an http(s) URL")
    return url


class AttachmentIn(BaseModel):
    """A file the customer receives: Meta downloads it from ``url``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["image", "video", "audio", "file"]
    url: Annotated[HttpUrl, AfterValidator(_http_only)]


class ReplyIn(BaseModel):
    """A reply to the deal's customer: text, or one attachment (Meta sends them as separate messages)."""

    model_config = ConfigDict(extra="forbid")

    text: Annotated[CleanStr, Field(max_length=MAX_TEXT, description=f"at most {MAX_TEXT} characters")] | None = None
    attachments: list[AttachmentIn] = Field(
        default_factory=list, max_length=1, description="at most one; not together with text"
    )
    idempotency_key: Annotated[CleanStr, Field(min_length=1, max_length=200)] = Field(
        description="chosen by the client per reply; repeating it returns the same message and never sends twice"
    )

    @model_validator(mode="after")
    def _content(self) -> Self:
        if self.text is not None and not self.text.strip():
            self.text = None
        if self.text is None and not self.attachments:
            raise ValueError("a reply needs text or an attachment")
        if self.text is not None and self.attachments:
            raise ValueError("send text and an attachment as two replies: Meta delivers them as separate messages")
        if not self.idempotency_key.strip():
            raise ValueError("idempotency_key must not be blank")
        return self

    @property
    def kind(self) -> str:
        """The stored message's kind: ``text`` or the attachment's type."""
        return self.attachments[0].type if self.attachments else "text"

    def stored_attachments(self) -> list[dict[str, str]]:
        """Attachments as messages keep them (``{type, url}``, like received ones)."""
        return [{"type": a.type, "url": str(a.url)} for a in self.attachments]


class OutgoingMessage(MessageItem):
    """A reply with how it is (or was) delivered."""

    messaging_type: str | None = Field(description="RESPONSE, or MESSAGE_TAG between 24 h and 7 days")
    tag: str | None = Field(description="HUMAN_AGENT with MESSAGE_TAG")
    idempotency_key: str | None
    error_subcode: int | None
    send_attempts: int = Field(description="Send API calls made so far")

    @classmethod
    def of(cls, message: Message) -> Self:
        """From the model."""
        return cls.model_validate(message)
