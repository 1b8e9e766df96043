"""Database access of a conversation, shared by the inbound consumer, replies and
profile fetching: its lock, its touch, its deals' response tracking, and the one reader
of a deal (with its contact and stage) and the one loader of a message.

Functions take the caller's session and never commit; the rules they apply are in
:mod:`crm.conversation.rules`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

import asyncpg
import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel, col

from crm.conversation import rules
from crm.models import Message
from jggl_common.contracts import utcnow
from jggl_common.db import driver_connection

__all__ = [
    "CONTACT_FIELDS",
    "DEAL_FIELDS",
    "MESSAGE_FIELDS",
    "ContactRow",
    "DealRow",
    "MessageRow",
    "NewContact",
    "load_message",
    "lock_conversation",
    "lock_conversations",
    "read_deal",
    "read_deals",
    "recompute_deal",
    "recompute_deals",
    "table",
    "touch_conversation",
    "touch_conversations",
]


def table(model: type[SQLModel]) -> sa.Table:
    """The Core table of a model, for ``INSERT ... ON CONFLICT`` and bulk updates."""
    return cast(sa.Table, model.__table__)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class NewContact:
    """A contact an item created, with its first profile fetch claimed for the hook."""

    id: int
    platform: str
    external_id: str
    sealed_token: str | None  # the channel's page token, sealed, if it has its own


async def lock_conversation(session: AsyncSession, conversation_id: int) -> None:
    """Serialise the transactions of one conversation until commit.

    The constraints already make creation exactly-once; the lock makes the
    read-then-write steps (pending updates, response tracking) see each other. The
    schema's name is part of the key, so schemas sharing a database do not collide.
    """
    await (await driver_connection(session)).execute(
        "SELECT pg_advisory_xact_lock(hashtext(current_schema()), $1)", conversation_id
    )


async def touch_conversation(session: AsyncSession, conversation_id: int, at: datetime, *, inbound: bool) -> None:
    """Move the conversation's last message (and last customer message) times forward to ``at``."""
    await (await driver_connection(session)).execute(
        "UPDATE conversations SET last_message_at = greatest(last_message_at, $2),"
        " last_inbound_at = CASE WHEN $3 THEN greatest(last_inbound_at, $2) ELSE last_inbound_at END"
        " WHERE id = $1",
        conversation_id,
        at,
        inbound,
    )


async def recompute_deal(session: AsyncSession, deal_id: int) -> None:
    """Derive the deal's last message and response tracking from its messages
    (:func:`recompute_deals` for one deal)."""
    await recompute_deals(session, [deal_id])


async def recompute_deals(session: AsyncSession, deal_ids: Iterable[int]) -> None:
    """Derive each deal's last message and response tracking from its messages, in three
    statements however many deals: read their histories, write the replies' changed
    ``response_seconds``, write the deals whose derived fields changed.

    Computed from the whole history ordered by Meta's timestamps
    (:func:`crm.conversation.rules.track_responses`), so the result is the same
    whatever order the messages arrived in.
    """
    ids = sorted(set(deal_ids))
    if not ids:
        return
    db = await driver_connection(session)
    rows = await db.fetch(
        "SELECT deal_id, id, mid, direction, sent_at, response_seconds, status, kind, text, is_deleted"
        " FROM messages WHERE deal_id = ANY($1::bigint[])",
        ids,
    )
    histories: dict[int, list[asyncpg.Record]] = {deal_id: [] for deal_id in ids}
    for row in rows:
        histories[int(row["deal_id"])].append(row)
    changed: list[tuple[int, int | None]] = []
    summaries: list[tuple[Any, ...]] = []
    for deal_id, history in histories.items():
        tracked = {
            int(r["id"]): rules.TrackedMessage(
                int(r["id"]), str(r["direction"]), r["sent_at"], r["status"] == "failed", r["mid"]
            )
            for r in history
        }
        tracking = rules.track_responses(tracked.values())
        for row in history:
            seconds = tracking.response_seconds.get(int(row["id"]))
            if row["direction"] == "out" and seconds != row["response_seconds"]:
                changed.append((int(row["id"]), seconds))
        last = max(history, key=lambda r: rules.history_order(tracked[int(r["id"])]), default=None)
        summaries.append(
            (
                deal_id,
                tracking.awaiting_reply_since,
                tracking.first_response_seconds,
                tracking.first_response_at,
                last["sent_at"] if last is not None else None,
                rules.preview(last["kind"], last["text"], last["is_deleted"]) if last is not None else None,
            )
        )
    if changed:
        await db.execute(
            "UPDATE messages m SET response_seconds = c.seconds"
            " FROM unnest($1::bigint[], $2::int[]) AS c(id, seconds) WHERE m.id = ANY($1::bigint[]) AND m.id = c.id",
            [c[0] for c in changed],
            [c[1] for c in changed],
        )
    # Only real changes are written, so the search trigger and updated_at move only then.
    await db.execute(
        "UPDATE deals d SET awaiting_reply_since = s.awaiting, first_response_seconds = s.first_seconds,"
        " first_response_at = s.first_at, last_message_at = s.last_at, last_message_text = s.last_text,"
        " updated_at = $7 FROM unnest($1::bigint[], $2::timestamptz[], $3::int[], $4::timestamptz[],"
        " $5::timestamptz[], $6::text[]) AS s(id, awaiting, first_seconds, first_at, last_at, last_text)"
        " WHERE d.id = ANY($1::bigint[]) AND d.id = s.id AND ("
        "d.awaiting_reply_since IS DISTINCT FROM s.awaiting OR d.first_response_seconds IS DISTINCT FROM"
        " s.first_seconds OR d.first_response_at IS DISTINCT FROM s.first_at"
        " OR d.last_message_at IS DISTINCT FROM s.last_at OR d.last_message_text IS DISTINCT FROM s.last_text)",
        *([summary[i] for summary in summaries] for i in range(6)),
        utcnow(),
    )


@dataclass(frozen=True, slots=True)
class DealRow:
    """A deal as events announce it, read without the ORM."""

    id: int
    conversation_id: int
    channel_id: int
    platform: str
    status: str
    assignee_id: int | None
    amount: Decimal | None
    lead_source: str | None
    lost_reason: str | None
    awaiting_reply_since: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ContactRow:
    """A contact as events announce it, read without the ORM."""

    id: int
    platform: str
    external_id: str
    name: str | None
    username: str | None
    avatar_url: str | None


@dataclass(frozen=True, slots=True)
class MessageRow:
    """A message as ``crm.message.received`` announces it, read without the ORM."""

    id: int
    mid: str | None
    conversation_id: int
    kind: str
    text: str | None
    attachments: list[Any]
    sent_at: datetime
    created_at: datetime
    is_deleted: bool


DEAL_FIELDS = [f.name for f in dataclasses.fields(DealRow)]
CONTACT_FIELDS = [f.name for f in dataclasses.fields(ContactRow)]
MESSAGE_FIELDS = [f.name for f in dataclasses.fields(MessageRow)]


async def read_deal(session: AsyncSession, deal_id: int) -> tuple[DealRow, ContactRow, str]:
    """The deal, its contact and its stage key as this transaction sees them."""
    row = await (await driver_connection(session)).fetchrow(
        f"SELECT {', '.join('d.' + f for f in DEAL_FIELDS)}, {', '.join('c.' + f for f in CONTACT_FIELDS)},"
        " s.key FROM deals d JOIN contacts c ON c.id = d.contact_id JOIN stages s ON s.id = d.stage_id"
        " WHERE d.id = $1",
        deal_id,
    )
    if row is None:
        raise LookupError(f"deal {deal_id} not found")
    values = list(row.values())
    deal_end = len(DEAL_FIELDS)
    contact_end = deal_end + len(CONTACT_FIELDS)
    return DealRow(*values[:deal_end]), ContactRow(*values[deal_end:contact_end]), str(values[contact_end])


# Built once: constructing an ORM select costs more than running it.
_LOAD_MESSAGE = (
    select(Message).where(col(Message.id) == sa.bindparam("message_id")).execution_options(populate_existing=True)
)


async def load_message(session: AsyncSession, message_id: int) -> Message | None:
    """A message, fresh from the database (``None``: there is no such message)."""
    return (await session.execute(_LOAD_MESSAGE, {"message_id": message_id})).scalar_one_or_none()


async def lock_conversations(session: AsyncSession, conversation_ids: Iterable[int]) -> None:
    """:func:`lock_conversation` for several conversations in one statement, in id order,
    so two transactions locking overlapping sets never wait for each other in a cycle."""
    ids = sorted(set(conversation_ids))
    if ids:
        await (await driver_connection(session)).execute(
            "SELECT count(*) FROM (SELECT pg_advisory_xact_lock(hashtext(current_schema()), id)"
            " FROM unnest($1::int[]) AS id) AS locked",
            ids,
        )


async def touch_conversations(session: AsyncSession, inbound_at: Mapping[int, datetime]) -> None:
    """:func:`touch_conversation` for customer messages of several conversations in one
    statement: each conversation's last (customer) message time moved forward."""
    if not inbound_at:
        return
    ids = sorted(inbound_at)
    await (await driver_connection(session)).execute(
        "UPDATE conversations c SET last_message_at = greatest(c.last_message_at, t.at),"
        " last_inbound_at = greatest(c.last_inbound_at, t.at)"
        " FROM unnest($1::bigint[], $2::timestamptz[]) AS t(id, at) WHERE c.id = ANY($1::bigint[]) AND c.id = t.id",
        ids,
        [inbound_at[i] for i in ids],
    )


async def read_deals(session: AsyncSession, deal_ids: Iterable[int]) -> dict[int, tuple[DealRow, ContactRow, str]]:
    """:func:`read_deal` for several deals in one statement."""
    ids = sorted(set(deal_ids))
    if not ids:
        return {}
    rows = await (await driver_connection(session)).fetch(
        f"SELECT {', '.join('d.' + f for f in DEAL_FIELDS)}, {', '.join('c.' + f for f in CONTACT_FIELDS)},"
        " s.key FROM deals d JOIN contacts c ON c.id = d.contact_id JOIN stages s ON s.id = d.stage_id"
        " WHERE d.id = ANY($1::bigint[])",
        ids,
    )
    deal_end = len(DEAL_FIELDS)
    contact_end = deal_end + len(CONTACT_FIELDS)
    found = {}
    for row in rows:
        values = list(row.values())
        found[int(values[0])] = (
            DealRow(*values[:deal_end]),
            ContactRow(*values[deal_end:contact_end]),
            str(values[contact_end]),
        )
    return found
