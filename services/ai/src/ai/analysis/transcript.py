"""A conversation as the analysers read it: plain, immutable values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from jggl_common.contracts import AnalysisResult

Author = Literal["customer", "manager", "meta_inbox"]


@dataclass(frozen=True, slots=True)
class Line:
    """One message of a transcript."""

    message_id: int
    author: Author
    kind: str
    text: str | None
    attachment_types: tuple[str, ...]
    sent_at: datetime

    @property
    def from_customer(self) -> bool:
        """Whether the customer wrote it (the rest are our replies, here or in Meta's apps)."""
        return self.author == "customer"


@dataclass(frozen=True, slots=True)
class Previous:
    """The latest analysis of the conversation, carried instead of the part it covered."""

    result: AnalysisResult
    last_message_id: int | None


@dataclass(frozen=True, slots=True)
class Transcript:
    """A conversation at a version: its messages in the order they were written."""

    conversation_id: int
    deal_id: int
    version: int
    lines: tuple[Line, ...]
    previous: Previous | None = None
