"""The transcript projection's statements.

A message is stored once (its crm id is the key) and, in the same statement, counted into
its conversation's transcript: the version is the number of messages, the deal is the one
of the newest message (by when it was written, then by id), and the time the next
analysis is owed moves (:func:`due_at`). A repeat of an event finds the message stored and
changes nothing, so a replay of the CRM stream rebuilds the same transcripts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from ai.analysis.transcript import Author, Line, Transcript

__all__ = ["IncomingMessage", "due_at", "load_transcript", "record_message"]


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A message of a conversation as crm announced it."""

    message_id: int
    conversation_id: int
    deal_id: int
    author: Author
    kind: str
    text: str | None
    attachment_types: tuple[str, ...]
    sent_at: datetime


def due_at(
    now: datetime, new_messages: int, last_started_at: datetime | None, debounce: timedelta, max_new: int
) -> datetime:
    """When a conversation that just received its ``new_messages``-th unanalysed message
    is owed an analysis: once it has been quiet for ``debounce``, or as soon as
    ``max_new`` messages are waiting, but never sooner than ``debounce`` after the previous
    analysis started (a burst is analysed at most twice). The SQL of
    :func:`record_message` computes the same."""
    quiet = now + debounce
    if new_messages < max_new:
        return quiet
    earliest = now if last_started_at is None else max(now, last_started_at + debounce)
    return min(quiet, earliest)


_RECORD = """
WITH stored AS (
    INSERT INTO transcript_messages
        (message_id, conversation_id, deal_id, author, kind, text, attachment_types, sent_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)
    ON CONFLICT (message_id) DO NOTHING
    RETURNING message_id
)
INSERT INTO transcripts AS t
    (conversation_id, deal_id, version, last_message_at, last_message_id, last_arrival_at, new_messages, due_at)
SELECT $2, $3, 1, $8, $1, $9::timestamptz, 1,
    CASE WHEN $11::int <= 1 THEN $9::timestamptz ELSE $9::timestamptz + $10::interval END
FROM stored
ON CONFLICT (conversation_id) DO UPDATE SET
    version = t.version + 1,
    deal_id = CASE WHEN (EXCLUDED.last_message_at, EXCLUDED.last_message_id)
        > (t.last_message_at, t.last_message_id) THEN EXCLUDED.deal_id ELSE t.deal_id END,
    last_message_id = CASE WHEN (EXCLUDED.last_message_at, EXCLUDED.last_message_id)
        > (t.last_message_at, t.last_message_id) THEN EXCLUDED.last_message_id ELSE t.last_message_id END,
    last_message_at = GREATEST(t.last_message_at, EXCLUDED.last_message_at),
    last_arrival_at = EXCLUDED.last_arrival_at,
    new_messages = t.new_messages + 1,
    due_at = CASE
        WHEN t.new_messages + 1 < $11::int THEN $9::timestamptz + $10::interval
        ELSE LEAST(
            $9::timestamptz + $10::interval,
            GREATEST($9::timestamptz, COALESCE(t.last_started_at + $10::interval, $9::timestamptz))
        )
    END
RETURNING due_at
"""


async def record_message(
    db: asyncpg.Connection, message: IncomingMessage, now: datetime, debounce: timedelta, max_new: int
) -> datetime | None:
    """Store ``message`` and count it into its transcript; returns when the conversation is
    now due, or None when the message was already stored."""
    due: datetime | None = await db.fetchval(
        _RECORD,
        message.message_id,
        message.conversation_id,
        message.deal_id,
        message.author,
        message.kind,
        message.text,
        json.dumps(list(message.attachment_types)),
        message.sent_at,
        now,
        debounce,
        max_new,
    )
    return due


async def load_transcript(db: asyncpg.Connection, conversation_id: int) -> Transcript | None:
    """The conversation's transcript as stored now (without the previous analysis): its
    version is the number of messages read, its deal the newest message's."""
    rows = await db.fetch(
        "SELECT message_id, deal_id, author, kind, text, attachment_types, sent_at FROM transcript_messages"
        " WHERE conversation_id = $1 ORDER BY sent_at, message_id",
        conversation_id,
    )
    if not rows:
        return None
    lines = tuple(
        Line(
            message_id=row["message_id"],
            author=row["author"],
            kind=row["kind"],
            text=row["text"],
            attachment_types=tuple(row["attachment_types"]),
            sent_at=row["sent_at"],
        )
        for row in rows
    )
    return Transcript(conversation_id=conversation_id, deal_id=rows[-1]["deal_id"], version=len(lines), lines=lines)
