"""What a consumer writes to the ``DLQ`` stream when it gives up on a message."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from .base import Envelope

__all__ = ["DeadLetter", "DeadLetterData"]


class DeadLetterData(BaseModel):
    """The original message and why it could not be handled."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service: str
    consumer: str
    original_subject: str
    original_stream: str | None = None
    original_sequence: int | None = None
    original_headers: dict[str, str] = Field(default_factory=dict)
    payload: str = Field(description="the original payload, UTF-8 (undecodable bytes replaced)")
    payload_base64: str | None = Field(default=None, description="the original bytes when they are not valid UTF-8")
    deliveries: int = Field(description="how many times the consumer received it")
    error: str = Field(description="the last error, as 'ExceptionType: message'")


class DeadLetter(Envelope):
    """Published on ``dlq.<service>.<original subject>``."""

    subject: ClassVar[str] = "dlq"

    type: Literal["dlq.dead_letter"] = "dlq.dead_letter"
    version: Literal[1] = 1
    data: DeadLetterData
