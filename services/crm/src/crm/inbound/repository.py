"""Database access of the inbound consumer: upserts decided by unique constraints.

Every "create if missing" here is ``INSERT ... ON CONFLICT`` followed by a read, so two
replicas handling the same first message at the same instant end with one row each,
whatever the timing. Functions take the caller's session and never commit.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm.conversation import rules
from crm.conversation.repository import DEAL_FIELDS, MESSAGE_FIELDS, DealRow, MessageRow, table
from crm.models import Activity, Channel, Contact, Conversation, Deal, Message, PendingUpdate, Receipt, Stage
from jggl_common.contracts import utcnow
from jggl_common.db import driver_connection

__all__ = [
    "Customer",
    "FirstMessage",
    "MessageRef",
    "NewRow",
    "Opening",
    "Sighting",
    "add_activity",
    "add_pending",
    "add_receipt",
    "apply_delete",
    "apply_delivery",
    "apply_edit",
    "apply_reaction",
    "conversation_of",
    "deal_for",
    "deal_spans",
    "ensure_channel",
    "first_stage",
    "insert_message",
    "insert_messages",
    "message_by_mid",
    "note_webhook",
    "open_deal",
    "open_with_first_messages",
    "plan_for_few_rows",
    "receipt_times",
    "rehome_follow_ups",
    "set_referral",
    "take_pending",
    "take_pending_of",
    "upsert_contacts",
    "upsert_customer",
]


_messages = table(Message)
_deals = table(Deal)
_contacts = table(Contact)
_conversations = table(Conversation)
_channels = table(Channel)
_stages = table(Stage)
_receipts = table(Receipt)
_pending = table(PendingUpdate)
_activities = table(Activity)


@dataclass(frozen=True, slots=True)
class MessageRef:
    """The fields of a stored message that updates about it need."""

    id: int
    conversation_id: int
    deal_id: int
    direction: str
    sent_at: datetime


async def ensure_channel(
    session: AsyncSession, platform: str, external_id: str, webhook_at: datetime
) -> tuple[int, str | None]:
    """The channel's id and sealed page token, creating it on its first webhook, and
    ``last_webhook_at`` moved forward (see :func:`note_webhook`).

    An existing channel's row is only read here, never locked by an upsert: this runs
    once per channel and process, the later webhooks are noted in the background.
    """
    db = await driver_connection(session)
    row = await db.fetchrow(
        "INSERT INTO channels (platform, external_id, needs_reauth, is_active, last_webhook_at, created_at)"
        " VALUES ($1, $2, false, true, $3, $4) ON CONFLICT ON CONSTRAINT uq_channels_platform_external_id"
        " DO NOTHING RETURNING id, access_token_sealed",
        platform,
        external_id,
        webhook_at,
        utcnow(),
    )
    if row is not None:
        return int(row["id"]), row["access_token_sealed"]
    row = await db.fetchrow(
        "SELECT id, access_token_sealed FROM channels WHERE platform = $1 AND external_id = $2", platform, external_id
    )
    assert row is not None  # the insert conflicted with it
    await note_webhook(session, int(row["id"]), webhook_at)
    return int(row["id"]), row["access_token_sealed"]


async def note_webhook(session: AsyncSession, channel_id: int, webhook_at: datetime) -> tuple[bool, str | None]:
    """Move the channel's ``last_webhook_at`` forward to ``webhook_at`` (written when it
    moves by more than a second: plenty for a "last webhook" watchdog). Returns whether
    the channel still exists and its sealed page token."""
    db = await driver_connection(session)
    await db.execute(
        "UPDATE channels SET last_webhook_at = $2::timestamptz WHERE id = $1"
        " AND (last_webhook_at IS NULL OR last_webhook_at < $2::timestamptz - interval '1 second')",
        channel_id,
        webhook_at,
    )
    row = await db.fetchrow("SELECT access_token_sealed FROM channels WHERE id = $1", channel_id)
    return (row is not None), (row["access_token_sealed"] if row is not None else None)


@dataclass(frozen=True, slots=True)
class Customer:
    """A customer's contact and conversation, and whether this transaction created them."""

    contact_id: int
    contact_created: bool
    conversation_id: int | None
    conversation_created: bool


async def upsert_customer(
    session: AsyncSession,
    channel_id: int,
    platform: str,
    external_id: str,
    seen_at: datetime,
    *,
    profile_claimed_until: datetime | None = None,
) -> Customer:
    """The customer's contact and conversation on this channel, each created once.

    First/last seen are kept as the min/max of Meta's timestamps. A new contact's profile
    is still to fetch; with ``profile_claimed_until`` its first fetch is claimed for the
    caller until then, as ``ProfileEnricher`` claims a retry. The upsert always takes the
    contact's row lock first, so every transaction that touches a contact's deals locks
    in the same order as profile enrichment does. A new contact gets its conversation in
    the same statement.
    """
    row = await (await driver_connection(session)).fetchrow(
        "WITH contact AS (INSERT INTO contacts (channel_id, platform, external_id, profile_status,"
        " profile_attempts, profile_retry_at, first_seen_at, last_seen_at)"
        " VALUES ($1, $2, $3, 'pending', CASE WHEN $5::timestamptz IS NULL THEN 0 ELSE 1 END, $5, $4, $4)"
        " ON CONFLICT ON CONSTRAINT uq_contacts_channel_external_id DO UPDATE SET"
        " first_seen_at = least(contacts.first_seen_at, excluded.first_seen_at),"
        " last_seen_at = greatest(contacts.last_seen_at, excluded.last_seen_at)"
        " RETURNING id, (xmax = 0) AS created),"
        " conversation AS (INSERT INTO conversations (channel_id, contact_id, created_at)"
        " SELECT $1, contact.id, now() FROM contact WHERE contact.created RETURNING id)"
        " SELECT contact.id, contact.created, conversation.id AS conversation_id"
        " FROM contact LEFT JOIN conversation ON true",
        channel_id,
        platform,
        external_id,
        seen_at,
        profile_claimed_until,
    )
    assert row is not None  # an upsert with RETURNING always returns its row
    contact_id = int(row["id"])
    if row["conversation_id"] is not None:
        return Customer(contact_id, True, int(row["conversation_id"]), True)
    conversation_id, created = await conversation_of(session, channel_id, contact_id)
    return Customer(contact_id, bool(row["created"]), conversation_id, created)


@dataclass(frozen=True, slots=True)
class Sighting:
    """A customer seen by an item: where, who, and when by Meta's clock."""

    channel_id: int
    platform: str
    external_id: str
    at: datetime


# The inbound transaction's statements each read or write a few rows by index. The
# planner's estimates lag behind tables that grow quickly (a new database, a busy page),
# and a plan it thinks costly gets JIT-compiled (tens of milliseconds of the backend's
# CPU, on every execution of a custom plan), or reads whole tables (split over parallel
# workers) where an index finds the few rows; none of that pays off for a few rows, and
# the group's other items wait. A table without a usable index is still read in full.
_FEW_ROWS = (
    "SELECT set_config('jit', 'off', true), set_config('max_parallel_workers_per_gather', '0', true),"
    " set_config('enable_seqscan', 'off', true)"
)


async def plan_for_few_rows(session: AsyncSession) -> None:
    """For the rest of ``session``'s transaction: no JIT compilation, no parallel workers,
    and an index wherever one applies (every inbound statement touches a few rows)."""
    await (await driver_connection(session)).fetchrow(_FEW_ROWS)


async def upsert_contacts(
    session: AsyncSession, sightings: list[Sighting], *, profile_claimed_until: datetime | None = None
) -> dict[tuple[int, str], Customer]:
    """The contacts of these customers, each created once, in one statement, keyed by
    ``(channel_id, external_id)``, with their conversations: a contact this statement
    created gets its conversation in it too, an existing one's is read (``conversation_id``
    is None only for a contact that has none yet: see :func:`conversation_of`).

    First/last seen are kept as the min/max of Meta's timestamps. A new contact's profile
    is still to fetch; with ``profile_claimed_until`` its first fetch is claimed for the
    caller until then, as ``ProfileEnricher`` claims a retry. The rows are locked in one
    order, (channel, customer), so transactions upserting several never wait in a cycle,
    and every transaction that touches a contact's deals holds the contact's row lock first,
    as profile enrichment does.
    """
    seen: dict[tuple[int, str], list[Any]] = {}
    for s in sightings:
        row = seen.setdefault((s.channel_id, s.external_id), [s.platform, s.at, s.at])
        row[1], row[2] = min(row[1], s.at), max(row[2], s.at)
    keys = sorted(seen)
    rows = await (await driver_connection(session)).fetch(
        "WITH input AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[],"
        " $5::timestamptz[]) WITH ORDINALITY AS t(channel_id, platform, external_id, first_seen, last_seen, n)),"
        " contact AS (INSERT INTO contacts (channel_id, platform, external_id, profile_status, profile_attempts,"
        " profile_retry_at, first_seen_at, last_seen_at)"
        " SELECT channel_id, platform, external_id, 'pending', CASE WHEN $6::timestamptz IS NULL THEN 0 ELSE 1 END,"
        " $6, first_seen, last_seen FROM input ORDER BY n"
        " ON CONFLICT ON CONSTRAINT uq_contacts_channel_external_id DO UPDATE SET"
        " first_seen_at = least(contacts.first_seen_at, excluded.first_seen_at),"
        " last_seen_at = greatest(contacts.last_seen_at, excluded.last_seen_at)"
        " RETURNING id, channel_id, external_id, (xmax = 0) AS created),"
        " conversation AS (INSERT INTO conversations (channel_id, contact_id, created_at)"
        " SELECT channel_id, id, now() FROM contact WHERE created RETURNING id, contact_id)"
        # An existing contact's conversation is read in the same statement.
        " SELECT contact.id, contact.channel_id, contact.external_id, contact.created,"
        " coalesce(conversation.id, existing.id) AS conversation_id, conversation.id IS NOT NULL AS fresh"
        " FROM contact LEFT JOIN conversation ON conversation.contact_id = contact.id"
        " LEFT JOIN conversations existing ON existing.channel_id = contact.channel_id"
        " AND existing.contact_id = contact.id",
        [channel_id for channel_id, _ in keys],
        [seen[key][0] for key in keys],
        [external_id for _, external_id in keys],
        [seen[key][1] for key in keys],
        [seen[key][2] for key in keys],
        profile_claimed_until,
    )
    return {
        (int(r["channel_id"]), str(r["external_id"])): Customer(
            int(r["id"]),
            bool(r["created"]),
            int(r["conversation_id"]) if r["conversation_id"] is not None else None,
            bool(r["fresh"]),
        )
        for r in rows
    }


async def conversation_of(session: AsyncSession, channel_id: int, contact_id: int) -> tuple[int, bool]:
    """``(conversation id, created)``: the conversation of an existing contact, created once."""
    db = await driver_connection(session)
    find = "SELECT id FROM conversations WHERE channel_id = $1 AND contact_id = $2"
    existing = await db.fetchval(find, channel_id, contact_id)
    if existing is not None:
        return int(existing), False
    conversation_id = await db.fetchval(
        "INSERT INTO conversations (channel_id, contact_id, created_at) VALUES ($1, $2, now())"
        " ON CONFLICT ON CONSTRAINT uq_conversations_channel_contact DO NOTHING RETURNING id",
        channel_id,
        contact_id,
    )
    if conversation_id is not None:
        return int(conversation_id), True
    return int(await db.fetchval(find, channel_id, contact_id)), False


async def message_by_mid(session: AsyncSession, mid: str) -> MessageRef | None:
    """The stored message with Meta id ``mid``, if any."""
    row = await (await driver_connection(session)).fetchrow(
        "SELECT id, conversation_id, deal_id, direction, sent_at FROM messages WHERE mid = $1", mid
    )
    if row is None:
        return None
    return MessageRef(int(row[0]), int(row[1]), int(row[2]), str(row[3]), row[4])


async def deal_for(session: AsyncSession, conversation_id: int, at: datetime, *, outgoing: bool) -> int | None:
    """The deal a message written at ``at`` belongs to, if it exists yet (``None``: open one);
    decided by :func:`crm.conversation.rules.owning_deal`."""
    spans = await deal_spans(session, [conversation_id])
    return rules.owning_deal(spans[conversation_id], at, outgoing=outgoing)


async def rehome_follow_ups(session: AsyncSession, conversation_id: int, deal_id: int, since: datetime) -> list[int]:
    """Move the page's follow-ups written from ``since`` on into the deal just opened then.

    An echo that arrived before the customer's message that opened a new deal was
    parked on the closed deal; it belongs to the new one. Messages written in the CRM
    (with an author) stay where the manager wrote them. Returns the deals they left.
    """
    # Follow-ups: the page's messages (not written in the CRM) on the conversation's closed deals.
    left = await (await driver_connection(session)).fetch(
        # Joined to itself, the UPDATE can return each row's deal before the move.
        "WITH moved AS (UPDATE messages m SET deal_id = $2 FROM messages old WHERE old.id = m.id"
        " AND m.conversation_id = $1 AND m.direction = 'out' AND m.author_user_id IS NULL"
        " AND m.sent_at >= $3 AND m.deal_id <> $2"
        " AND m.deal_id IN (SELECT id FROM deals WHERE conversation_id = $1 AND status <> 'open')"
        " RETURNING old.deal_id AS left_deal)"
        " SELECT DISTINCT left_deal FROM moved",
        conversation_id,
        deal_id,
        since,
    )
    return [int(row[0]) for row in left]


async def first_stage(session: AsyncSession) -> rules.StageOption:
    """The stage a new deal opens in (:func:`crm.conversation.rules.first_stage`); raises
    :class:`LookupError` when the pipeline has no stage at all."""
    rows = await (await driver_connection(session)).fetch("SELECT id, key, is_active, position FROM stages")
    stage = rules.first_stage(
        rules.StageOption(int(r["id"]), str(r["key"]), bool(r["is_active"]), int(r["position"])) for r in rows
    )
    if stage is None:
        raise LookupError("no pipeline stage to open a deal in")
    return stage


async def open_deal(
    session: AsyncSession, conversation_id: int, contact_id: int, channel_id: int, platform: str
) -> tuple[int, bool]:
    """``(deal id, created)``: the conversation's open deal, opened in the first stage
    (:func:`first_stage`) if there is none.

    The partial unique index "one open deal per conversation" decides between racers.
    """
    db = await driver_connection(session)
    now = utcnow()
    stage = await first_stage(session)
    deal_id = await db.fetchval(
        "INSERT INTO deals (conversation_id, contact_id, channel_id, platform, stage_id, status, lead_source,"
        " created_at, updated_at) VALUES ($1, $2, $3, $4, $6, 'open', 'organic', $5, $5)"
        " ON CONFLICT (conversation_id) WHERE status = 'open' DO NOTHING RETURNING id",
        conversation_id,
        contact_id,
        channel_id,
        platform,
        now,
        stage.id,
    )
    if deal_id is not None:
        return int(deal_id), True
    existing = await db.fetchval("SELECT id FROM deals WHERE conversation_id = $1 AND status = 'open'", conversation_id)
    assert existing is not None  # the insert conflicted with it
    return int(existing), False


async def receipt_times(
    session: AsyncSession, conversation_id: int, sent_at: datetime
) -> tuple[datetime | None, datetime | None]:
    """``(read_at, delivered_at)`` of an outgoing message from receipts that arrived before it."""
    rows = await (await driver_connection(session)).fetch(
        "SELECT kind, min(occurred_at) AS at FROM receipts WHERE conversation_id = $1 AND watermark >= $2"
        " GROUP BY kind",
        conversation_id,
        sent_at,
    )
    found = {str(row["kind"]): row["at"] for row in rows}
    return found.get("read"), found.get("delivery")


_MESSAGE_DEFAULTS: dict[str, Any] = {
    "reactions": {},
    "reaction_clock": {},
    "attachments": [],
    "is_edited": False,
    "edit_count": 0,
    "is_deleted": False,
}
_JSON_COLUMNS = frozenset(column.name for column in _messages.columns if isinstance(column.type, JSONB))


@functools.cache
def _insert_message_sql(columns: tuple[str, ...]) -> str:
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    return (
        f"INSERT INTO messages ({', '.join(columns)}) VALUES ({placeholders})"
        f" ON CONFLICT (mid) WHERE mid IS NOT NULL DO NOTHING RETURNING {', '.join(MESSAGE_FIELDS)}"
    )


def _message_row(values: dict[str, Any]) -> dict[str, Any]:
    """A messages row: defaults, then ``values``, JSON columns as text for the driver."""
    row = {**_MESSAGE_DEFAULTS, "created_at": utcnow(), **values}
    for name in _JSON_COLUMNS.intersection(row):
        if row[name] is not None:
            row[name] = json.dumps(row[name])
    return row


async def insert_message(session: AsyncSession, **values: Any) -> MessageRow | None:
    """Store a message; ``None`` when its ``mid`` is already stored (a repeat, or our own send echoed)."""
    row = _message_row(values)
    stored = await (await driver_connection(session)).fetchrow(_insert_message_sql(tuple(row)), *row.values())
    return MessageRow(*stored.values()) if stored is not None else None


@dataclass(frozen=True, slots=True)
class Opening:
    """A customer's first message in a conversation this transaction created."""

    conversation_id: int
    contact_id: int
    channel_id: int
    platform: str
    message: dict[str, Any]  # its columns, as for insert_message


@dataclass(frozen=True, slots=True)
class FirstMessage:
    """What :func:`open_with_first_messages` stored for one opening."""

    deal: DealRow
    stage_key: str
    message: MessageRow


def _first_message(record: asyncpg.Record) -> FirstMessage:
    """A row of the first-message statements: the deal's fields, the stage key, the message's."""
    values = list(record.values())
    deal_end = len(DEAL_FIELDS)
    return FirstMessage(DealRow(*values[:deal_end]), str(values[deal_end]), MessageRow(*values[deal_end + 1 :]))


_PG: Any = postgresql.dialect()  # type: ignore[no-untyped-call]


@functools.cache
def _openings_sql(columns: tuple[str, ...]) -> str:
    # Every column arrives as an array; JSON ones as text, cast per element.
    arrays = [
        f"${i}::text[]" if name in _JSON_COLUMNS else f"${i}::{_messages.c[name].type.compile(dialect=_PG)}[]"
        for i, name in enumerate(columns, start=7)
    ]
    values = [f"i.m_{name}::jsonb" if name in _JSON_COLUMNS else f"i.m_{name}" for name in columns]
    now, stage_id, stage_key = (f"${n}" for n in range(7 + len(columns), 10 + len(columns)))
    return (
        "WITH i AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[],"
        f" $6::text[], {', '.join(arrays)}) WITH ORDINALITY AS t(conversation_id, contact_id, channel_id, platform,"
        f" activity, preview, {', '.join('m_' + c for c in columns)}, n)),"
        f" stage AS (SELECT {stage_id}::bigint AS id, {stage_key}::text AS key),"
        " deal AS (INSERT INTO deals (conversation_id, contact_id, channel_id, platform, stage_id, status,"
        " lead_source, created_at, updated_at, awaiting_reply_since, last_message_at, last_message_text)"
        f" SELECT i.conversation_id, i.contact_id, i.channel_id, i.platform, stage.id, 'open', 'organic', {now}, {now},"
        f" i.m_sent_at, i.m_sent_at, i.preview FROM i, stage ORDER BY i.n RETURNING {', '.join(DEAL_FIELDS)}),"
        " activity AS (INSERT INTO activities (deal_id, kind, actor_label, data, created_at)"
        f" SELECT deal.id, 'created', 'system', i.activity::jsonb, {now} FROM deal"
        " JOIN i ON i.conversation_id = deal.conversation_id),"
        f" message AS (INSERT INTO messages (conversation_id, deal_id, {', '.join(columns)})"
        f" SELECT i.conversation_id, deal.id, {', '.join(values)} FROM deal"
        " JOIN i ON i.conversation_id = deal.conversation_id ORDER BY i.n"
        " ON CONFLICT (mid) WHERE mid IS NOT NULL DO NOTHING"
        f" RETURNING {', '.join(MESSAGE_FIELDS)}),"
        # By primary key (= ANY), never a join the planner could turn into a scan of the table.
        " touched AS (UPDATE conversations c SET"
        " last_message_at = greatest(c.last_message_at, (SELECT i.m_sent_at FROM i WHERE i.conversation_id = c.id)),"
        " last_inbound_at = greatest(c.last_inbound_at, (SELECT i.m_sent_at FROM i WHERE i.conversation_id = c.id))"
        " WHERE c.id = ANY($1::bigint[]))"
        f" SELECT {', '.join('deal.' + f for f in DEAL_FIELDS)}, stage.key,"
        f" {', '.join('message.' + f for f in MESSAGE_FIELDS)}"
        " FROM deal JOIN message ON message.conversation_id = deal.conversation_id CROSS JOIN stage"
    )


async def open_with_first_messages(session: AsyncSession, openings: list[Opening]) -> list[FirstMessage | None]:
    """Customers' first messages, in one statement for all of them: for each, the deal it
    opens (with its timeline entry), the message, and what they derive from it.

    Only for conversations created by this transaction (no deals, messages or pending
    updates can exist yet): each ends exactly as :func:`open_deal`, :func:`add_activity`,
    :func:`insert_message`, :func:`touch_conversation` and
    :func:`crm.conversation.repository.recompute_deal` would.
    An opening whose ``mid`` is stored already gets ``None`` (and no deal).
    """
    rows = [_message_row(opening.message) for opening in openings]
    if any(row.get("direction") != "in" for row in rows):
        raise ValueError("only the customer's message opens a conversation this way")
    columns = tuple(rows[0])
    if any(tuple(row) != columns for row in rows):
        raise ValueError("openings must carry the same message columns")
    stage = await first_stage(session)
    result = await (await driver_connection(session)).fetch(
        _openings_sql(columns),
        [o.conversation_id for o in openings],
        [o.contact_id for o in openings],
        [o.channel_id for o in openings],
        [o.platform for o in openings],
        [json.dumps({"opened_by": o.message["kind"], "platform": o.platform}) for o in openings],
        [rules.preview(str(row["kind"]), row.get("text"), False) for row in rows],
        *([row[name] for row in rows] for name in columns),
        utcnow(),
        stage.id,
        stage.key,
    )
    stored = {first.deal.conversation_id: first for first in map(_first_message, result)}
    return [stored.get(opening.conversation_id) for opening in openings]


# ---------------------------------------------------------------- pending updates


async def add_pending(
    session: AsyncSession, mid: str, kind: str, dedupe_key: str, payload: dict[str, Any], occurred_at: datetime
) -> None:
    """Keep an update about a message that has not arrived yet; repeats are stored once."""
    await session.execute(
        insert(_pending)
        .values(mid=mid, kind=kind, dedupe_key=dedupe_key[:500], payload=payload, occurred_at=occurred_at)
        .on_conflict_do_nothing(constraint="uq_pending_updates_dedupe_key")
    )


async def take_pending(session: AsyncSession, mid: str) -> list[tuple[str, dict[str, Any], datetime]]:
    """Remove and return the updates waiting for message ``mid``, oldest first."""
    rows = await (await driver_connection(session)).fetch(
        "DELETE FROM pending_updates WHERE mid = $1 RETURNING kind, payload, occurred_at, dedupe_key", mid
    )
    ordered = sorted(rows, key=lambda r: (r["occurred_at"], r["dedupe_key"]))
    return [(str(r["kind"]), dict(r["payload"]), r["occurred_at"]) for r in ordered]


# --------------------------------------------------------------- message updates


async def apply_reaction(
    session: AsyncSession,
    message_id: int,
    reactor: str,
    at_ms: int,
    action: str,
    reaction: str | None,
    emoji: str | None,
) -> bool:
    """Apply a reaction unless a newer one from the same reactor was applied already
    (:func:`crm.conversation.rules.newest_reaction`). Returns whether anything changed."""
    db = await driver_connection(session)
    row = await db.fetchrow("SELECT reactions, reaction_clock FROM messages WHERE id = $1 FOR UPDATE", message_id)
    if row is None:
        return False
    change = rules.newest_reaction(
        row["reactions"] or {}, row["reaction_clock"] or {}, reactor, at_ms, action, reaction, emoji
    )
    if change is None:
        return False
    await db.execute(
        "UPDATE messages SET reactions = $2, reaction_clock = $3 WHERE id = $1",
        message_id,
        json.dumps(change.reactions),
        json.dumps(change.clock),
    )
    return True


async def apply_edit(session: AsyncSession, message_id: int, text_: str | None, num_edit: int) -> bool:
    """Apply edit number ``num_edit`` unless a later edit is already applied.

    An unsent message keeps no text, but still counts its edits.
    """
    result = await session.execute(
        update(_messages)
        .where(_messages.c.id == message_id, _messages.c.edit_count < num_edit)
        .values(
            text=sa.case((_messages.c.is_deleted, None), else_=sa.literal(text_, sa.Text)),
            edit_count=num_edit,
            is_edited=True,
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def apply_delete(session: AsyncSession, message_id: int) -> bool:
    """Mark a message unsent and drop its content: the customer took it back."""
    result = await session.execute(
        update(_messages)
        .where(_messages.c.id == message_id, _messages.c.is_deleted.is_(False))
        .values(is_deleted=True, text=None, attachments=[])
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def apply_delivery(session: AsyncSession, message_id: int, at: datetime) -> None:
    """An outgoing message reached the customer's device at ``at`` (the earliest report wins)."""
    await session.execute(
        update(_messages)
        .where(_messages.c.id == message_id, _messages.c.direction == "out")
        .values(delivered_at=func.least(_messages.c.delivered_at, at))
    )


@functools.cache
def _receipt_sql(kind: str) -> str:
    # Identifiers from a closed set, values bound.
    column, watermark = ("read_at", "read_watermark") if kind == "read" else ("delivered_at", "delivered_watermark")
    return (
        "WITH r AS (INSERT INTO receipts (conversation_id, kind, watermark, occurred_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT ON CONSTRAINT uq_receipts_natural_key DO NOTHING RETURNING id),"
        f" m AS (UPDATE messages SET {column} = $4 WHERE EXISTS (SELECT 1 FROM r) AND conversation_id = $1"
        f" AND direction = 'out' AND sent_at <= $3 AND ({column} IS NULL OR {column} > $4) RETURNING 1),"
        f" c AS (UPDATE conversations SET {watermark} = greatest({watermark}, $3)"
        " WHERE EXISTS (SELECT 1 FROM r) AND id = $1 RETURNING 1)"
        " SELECT count(*) FROM r"
    )


async def add_receipt(
    session: AsyncSession, conversation_id: int, kind: str, watermark: datetime, at: datetime
) -> None:
    """Record a read or delivery receipt and apply it to the outgoing messages it covers,
    in one statement (a repeated receipt changes nothing).

    A message's read/delivered time is the earliest receipt covering it, so the
    result does not depend on the order receipts and messages arrive in.
    """
    if kind not in ("read", "delivery"):
        raise ValueError(f"unknown receipt kind {kind!r}")
    await (await driver_connection(session)).execute(_receipt_sql(kind), conversation_id, kind, watermark, at)


async def set_referral(
    session: AsyncSession, deal_id: int, source: str, data: dict[str, Any]
) -> tuple[str | None, str | None] | None:
    """Record where the lead came from, first touch wins
    (:func:`crm.conversation.rules.first_touch_wins`).

    Returns ``(old lead source, new lead source)`` when the deal's referral changed.
    """
    row = (
        await session.execute(
            select(_deals.c.lead_source, _deals.c.referral).where(_deals.c.id == deal_id).with_for_update()
        )
    ).one()
    current = row.referral if isinstance(row.referral, dict) else None
    if not rules.first_touch_wins(current, data):
        return None
    await session.execute(
        update(_deals).where(_deals.c.id == deal_id).values(lead_source=source, referral=data, updated_at=utcnow())
    )
    return row.lead_source, source


async def add_activity(session: AsyncSession, deal_id: int, kind: str, data: dict[str, Any], actor_label: str) -> None:
    """Add an entry to the deal's timeline."""
    await (await driver_connection(session)).execute(
        "INSERT INTO activities (deal_id, kind, actor_label, data, created_at) VALUES ($1, $2, $3, $4, $5)",
        deal_id,
        kind,
        actor_label,
        json.dumps(data),
        utcnow(),
    )


# ------------------------------------------------------- a group's follow-ups at once


async def deal_spans(session: AsyncSession, conversation_ids: Iterable[int]) -> dict[int, list[rules.DealSpan]]:
    """The deals of these conversations, oldest first, as :func:`rules.owning_deal` needs them."""
    ids = sorted(set(conversation_ids))
    spans: dict[int, list[rules.DealSpan]] = {conversation_id: [] for conversation_id in ids}
    rows = await (await driver_connection(session)).fetch(
        "SELECT d.conversation_id, d.id, d.status = 'open' AS is_open,"
        " (SELECT min(m.sent_at) FROM messages m WHERE m.deal_id = d.id AND m.direction = 'in') AS first_in,"
        " (SELECT max(m.sent_at) FROM messages m WHERE m.deal_id = d.id AND m.direction = 'in') AS last_in"
        " FROM deals d WHERE d.conversation_id = ANY($1::bigint[]) ORDER BY d.id",
        ids,
    )
    for row in rows:
        spans[int(row["conversation_id"])].append(
            rules.DealSpan(int(row["id"]), bool(row["is_open"]), row["first_in"], row["last_in"])
        )
    return spans


@dataclass(frozen=True, slots=True)
class NewRow:
    """A message to store in a deal of an existing conversation."""

    conversation_id: int
    deal_id: int
    message: dict[str, Any]  # its columns, as for insert_message


@functools.cache
def _insert_messages_sql(columns: tuple[str, ...]) -> str:
    arrays = [
        f"${i}::text[]" if name in _JSON_COLUMNS else f"${i}::{_messages.c[name].type.compile(dialect=_PG)}[]"
        for i, name in enumerate(columns, start=3)
    ]
    values = [f"i.m_{name}::jsonb" if name in _JSON_COLUMNS else f"i.m_{name}" for name in columns]
    return (
        f"WITH i AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], {', '.join(arrays)}) WITH ORDINALITY"
        f" AS t(conversation_id, deal_id, {', '.join('m_' + c for c in columns)}, n))"
        f" INSERT INTO messages (conversation_id, deal_id, {', '.join(columns)})"
        f" SELECT i.conversation_id, i.deal_id, {', '.join(values)} FROM i ORDER BY i.n"
        " ON CONFLICT (mid) WHERE mid IS NOT NULL DO NOTHING"
        f" RETURNING {', '.join(MESSAGE_FIELDS)}, deal_id"
    )


async def insert_messages(session: AsyncSession, rows: list[NewRow]) -> dict[str, tuple[MessageRow, int]]:
    """Store messages in one statement; returns what was stored by ``mid``, with its deal.
    A ``mid`` stored already (a repeat) is left out, as :func:`insert_message` does."""
    if not rows:
        return {}
    values = [_message_row(row.message) for row in rows]
    columns = tuple(values[0])
    if any(tuple(value) != columns for value in values):
        raise ValueError("messages stored together must carry the same columns")
    result = await (await driver_connection(session)).fetch(
        _insert_messages_sql(columns),
        [row.conversation_id for row in rows],
        [row.deal_id for row in rows],
        *([value[name] for value in values] for name in columns),
    )
    stored: dict[str, tuple[MessageRow, int]] = {}
    for record in result:
        fields = list(record.values())
        message = MessageRow(*fields[:-1])
        assert message.mid is not None
        stored[message.mid] = (message, int(fields[-1]))
    return stored


async def take_pending_of(
    session: AsyncSession, mids: Iterable[str]
) -> dict[str, list[tuple[str, dict[str, Any], datetime]]]:
    """:func:`take_pending` for several messages in one statement, by ``mid``."""
    wanted = sorted(set(mids))
    if not wanted:
        return {}
    rows = await (await driver_connection(session)).fetch(
        "DELETE FROM pending_updates WHERE mid = ANY($1::text[]) RETURNING mid, kind, payload, occurred_at, dedupe_key",
        wanted,
    )
    taken: dict[str, list[tuple[str, dict[str, Any], datetime]]] = {}
    for r in sorted(rows, key=lambda r: (r["occurred_at"], r["dedupe_key"])):
        taken.setdefault(str(r["mid"]), []).append((str(r["kind"]), dict(r["payload"]), r["occurred_at"]))
    return taken
