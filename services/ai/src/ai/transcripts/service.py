"""Turning crm's message events into transcript lines.

Every message of a conversation is in the transcript, in both directions: the
customer's (``crm.message.received``), our replies and those typed in Meta's own apps
(``crm.message.sent``, whose ``author_label`` says "Meta inbox"). Replies that failed never
reached the customer and are not part of the conversation.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai.analysis.transcript import Author
from jggl_common.contracts import MessageReceived, MessageSent, utcnow
from jggl_common.db import autocommit

from .repository import IncomingMessage, record_message

__all__ = ["TranscriptProjection", "incoming"]


def _types(attachments: list[dict[str, object]]) -> tuple[str, ...]:
    return tuple(str(a.get("type") or "file") for a in attachments)


def incoming(event: MessageReceived | MessageSent) -> IncomingMessage:
    """The transcript line an event describes."""
    data = event.data
    author: Author = "customer"
    if isinstance(event, MessageSent):
        # A reply without a CRM user was typed in Meta's own apps ("Meta inbox").
        author = "meta_inbox" if event.data.author_user_id is None and event.data.author_label else "manager"
    return IncomingMessage(
        message_id=data.message_id,
        conversation_id=data.conversation_id,
        deal_id=data.deal_id,
        author=author,
        kind=data.kind,
        text=data.text,
        attachment_types=_types(data.attachments),
        sent_at=data.sent_at,
    )


class TranscriptProjection:
    """Records messages; tells ``on_due`` when a conversation becomes due."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        debounce: Callable[[], float],
        max_new_messages: int,
        on_due: Callable[[datetime], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._debounce = debounce
        self._max_new = max_new_messages
        self._on_due = on_due

    async def handle(self, event: MessageReceived | MessageSent) -> bool:
        """Record the event's message once; returns whether it was new."""
        async with autocommit(self._sessions) as db:
            due = await record_message(
                db, incoming(event), utcnow(), timedelta(seconds=self._debounce()), self._max_new
            )
        if due is not None and self._on_due is not None:
            self._on_due(due)
        return due is not None
