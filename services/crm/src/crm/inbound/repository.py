"""Database access of the inbound consumer: upserts decided by unique constraints.

Every "create if missing" here is ``INSERT ... ON CONFLICT`` followed by a read, so two
replicas handling the same first message at the same instant end with one row each,
whatever the timing. Functions take the caller's session and never commit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel, col

from crm.inbound.items import preview
from crm.models import Activity, Channel, Contact, Conversation, Deal, Message, PendingUpdate, Receipt, Stage
from jggl_common.contracts import utcnow

__all__ = [
    "MessageRef",
    "add_activity",
    "add_pending",
    "add_receipt",
    "apply_delete",
    "apply_delivery",
    "apply_edit",
    "apply_reaction",
    "deal_for",
    "ensure_channel",
    "insert_message",
    "load_deal",
    "load_message",
    "lock_conversation",
    "message_by_mid",
    "open_deal",
    "receipt_times",
    "recompute_deal",
    "rehome_follow_ups",
    "set_referral",
    "table",
    "take_pending",
    "touch_conversation",
    "upsert_contact",
    "upsert_conversation",
]


def table(model: type[SQLModel]) -> sa.Table:
    """The Core table of a model, for ``INSERT ... ON CONFLICT`` and bulk updates."""
    return cast(sa.Table, model.__table__)  # type: ignore[attr-defined]


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


async def ensure_channel(session: AsyncSession, platform: str, external_id: str, webhook_at: datetime) -> int:
    """The channel's id, creating it on its first webhook; moves ``last_webhook_at`` forward."""
    excluded = insert(_channels).excluded
    stmt = (
        insert(_channels)
        .values(
            platform=platform,
            external_id=external_id,
            needs_reauth=False,
            is_active=True,
            last_webhook_at=webhook_at,
            created_at=utcnow(),
        )
        .on_conflict_do_update(
            constraint="uq_channels_platform_external_id",
            set_={"last_webhook_at": func.greatest(_channels.c.last_webhook_at, excluded.last_webhook_at)},
            # One write per second is plenty for a "last webhook" watchdog.
            where=sa.or_(
                _channels.c.last_webhook_at.is_(None),
                _channels.c.last_webhook_at < excluded.last_webhook_at - sa.text("interval '1 second'"),
            ),
        )
        .returning(_channels.c.id)
    )
    channel_id = (await session.execute(stmt)).scalar()
    if channel_id is None:
        channel_id = (
            await session.execute(
                select(_channels.c.id).where(_channels.c.platform == platform, _channels.c.external_id == external_id)
            )
        ).scalar_one()
    return int(channel_id)


async def upsert_contact(
    session: AsyncSession, channel_id: int, platform: str, external_id: str, seen_at: datetime
) -> tuple[int, bool]:
    """``(contact id, created)``; keeps first/last seen as the min/max of Meta's timestamps.

    The upsert always takes the contact's row lock first, so every transaction that
    touches a contact's deals locks in the same order as profile enrichment does.
    """
    excluded = insert(_contacts).excluded
    stmt = (
        insert(_contacts)
        .values(
            channel_id=channel_id,
            platform=platform,
            external_id=external_id,
            profile_status="pending",
            profile_attempts=0,
            first_seen_at=seen_at,
            last_seen_at=seen_at,
        )
        .on_conflict_do_update(
            constraint="uq_contacts_channel_external_id",
            set_={
                "first_seen_at": func.least(_contacts.c.first_seen_at, excluded.first_seen_at),
                "last_seen_at": func.greatest(_contacts.c.last_seen_at, excluded.last_seen_at),
            },
        )
        .returning(_contacts.c.id, sa.literal_column("(xmax = 0)").label("created"))
    )
    row = (await session.execute(stmt)).one()
    return int(row.id), bool(row.created)


async def upsert_conversation(session: AsyncSession, channel_id: int, contact_id: int) -> int:
    """The conversation of this contact on this channel, created once."""
    existing = (
        await session.execute(
            select(_conversations.c.id).where(
                _conversations.c.channel_id == channel_id, _conversations.c.contact_id == contact_id
            )
        )
    ).scalar()
    if existing is not None:
        return int(existing)
    stmt = (
        insert(_conversations)
        .values(channel_id=channel_id, contact_id=contact_id, created_at=utcnow())
        .on_conflict_do_nothing(constraint="uq_conversations_channel_contact")
        .returning(_conversations.c.id)
    )
    conversation_id = (await session.execute(stmt)).scalar()
    if conversation_id is None:
        conversation_id = (
            await session.execute(
                select(_conversations.c.id).where(
                    _conversations.c.channel_id == channel_id, _conversations.c.contact_id == contact_id
                )
            )
        ).scalar_one()
    return int(conversation_id)


async def lock_conversation(session: AsyncSession, conversation_id: int) -> None:
    """Serialise the transactions of one conversation until commit.

    The constraints already make creation exactly-once; the lock makes the
    read-then-write steps (pending updates, response tracking) see each other. The
    schema's name is part of the key, so schemas sharing a database do not collide.
    """
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(current_schema()), :id)"), {"id": conversation_id}
    )


async def message_by_mid(session: AsyncSession, mid: str) -> MessageRef | None:
    """The stored message with Meta id ``mid``, if any."""
    row = (
        await session.execute(
            select(
                _messages.c.id,
                _messages.c.conversation_id,
                _messages.c.deal_id,
                _messages.c.direction,
                _messages.c.sent_at,
            ).where(_messages.c.mid == mid)
        )
    ).one_or_none()
    if row is None:
        return None
    return MessageRef(int(row.id), int(row.conversation_id), int(row.deal_id), str(row.direction), row.sent_at)


async def deal_for(session: AsyncSession, conversation_id: int, at: datetime, *, outgoing: bool) -> int | None:
    """The deal a message written at ``at`` belongs to, if it exists yet (``None``: open one).

    Deals of a conversation follow each other in time, so membership is decided by
    Meta's timestamps, not by arrival order:

    * a closed deal whose customer wrote at or after ``at`` owns the message (it was
      written before the deal closed and only delivered late);
    * otherwise the open deal owns a customer's message;
    * a page's message (echo) goes to the open deal once that deal's customer has
      written, else it is a follow-up on the latest closed deal; only a conversation
      with no deal at all gets a deal opened by the page.
    """
    inbound = sa.and_(_messages.c.deal_id == _deals.c.id, _messages.c.direction == "in")
    first_in = select(func.min(_messages.c.sent_at)).where(inbound).scalar_subquery()
    last_in = select(func.max(_messages.c.sent_at)).where(inbound).scalar_subquery()
    rows = (
        await session.execute(
            select(_deals.c.id, _deals.c.status, first_in.label("first_in"), last_in.label("last_in"))
            .where(_deals.c.conversation_id == conversation_id)
            .order_by(_deals.c.id)
        )
    ).all()
    closed = [row for row in rows if row.status != "open"]
    open_ = next((row for row in rows if row.status == "open"), None)
    for row in closed:
        if row.last_in is not None and row.last_in >= at:
            return int(row.id)
    if not outgoing:
        return int(open_.id) if open_ is not None else None
    if open_ is not None and (open_.first_in is None or open_.first_in <= at):
        return int(open_.id)
    if closed:
        return int(closed[-1].id)
    return int(open_.id) if open_ is not None else None


async def rehome_follow_ups(session: AsyncSession, conversation_id: int, deal_id: int, since: datetime) -> list[int]:
    """Move the page's follow-ups written from ``since`` on into the deal just opened then.

    An echo that arrived before the customer's message that opened a new deal was
    parked on the closed deal; it belongs to the new one. Messages written in the CRM
    (with an author) stay where the manager wrote them. Returns the deals they left.
    """
    follow_ups = sa.and_(
        _messages.c.conversation_id == conversation_id,
        _messages.c.direction == "out",
        _messages.c.author_user_id.is_(None),
        _messages.c.sent_at >= since,
        _messages.c.deal_id != deal_id,
        _messages.c.deal_id.in_(
            select(_deals.c.id).where(_deals.c.conversation_id == conversation_id, _deals.c.status != "open")
        ),
    )
    left = [int(d) for d in (await session.execute(select(_messages.c.deal_id).where(follow_ups).distinct())).scalars()]
    if left:
        await session.execute(update(_messages).where(follow_ups).values(deal_id=deal_id))
    return left


async def open_deal(
    session: AsyncSession, conversation_id: int, contact_id: int, channel_id: int, platform: str
) -> tuple[int, bool]:
    """``(deal id, created)``: the conversation's open deal, opened in stage ``new`` if there is none.

    The partial unique index "one open deal per conversation" decides between racers.
    """
    stage_id = (
        await session.execute(
            select(_stages.c.id)
            .order_by(sa.case((_stages.c.key == "new", 0), else_=1), _stages.c.is_active.desc(), _stages.c.position)
            .limit(1)
        )
    ).scalar_one()
    now = utcnow()
    stmt = (
        insert(_deals)
        .values(
            conversation_id=conversation_id,
            contact_id=contact_id,
            channel_id=channel_id,
            platform=platform,
            stage_id=stage_id,
            status="open",
            lead_source="organic",
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["conversation_id"], index_where=text("status = 'open'"))
        .returning(_deals.c.id)
    )
    deal_id = (await session.execute(stmt)).scalar()
    if deal_id is not None:
        return int(deal_id), True
    existing = (
        await session.execute(
            select(_deals.c.id).where(_deals.c.conversation_id == conversation_id, _deals.c.status == "open")
        )
    ).scalar_one()
    return int(existing), False


async def receipt_times(
    session: AsyncSession, conversation_id: int, sent_at: datetime
) -> tuple[datetime | None, datetime | None]:
    """``(read_at, delivered_at)`` of an outgoing message from receipts that arrived before it."""
    rows = (
        await session.execute(
            select(_receipts.c.kind, func.min(_receipts.c.occurred_at))
            .where(_receipts.c.conversation_id == conversation_id, _receipts.c.watermark >= sent_at)
            .group_by(_receipts.c.kind)
        )
    ).all()
    found = {str(kind): at for kind, at in rows}
    return found.get("read"), found.get("delivery")


async def insert_message(session: AsyncSession, **values: Any) -> int | None:
    """Store a message; ``None`` when its ``mid`` is already stored (a repeat, or our own send echoed)."""
    now = utcnow()
    row = {
        "reactions": {},
        "reaction_clock": {},
        "attachments": [],
        "is_edited": False,
        "edit_count": 0,
        "is_deleted": False,
        "created_at": now,
        **values,
    }
    stmt = (
        insert(_messages)
        .values(**row)
        .on_conflict_do_nothing(index_elements=["mid"], index_where=text("mid IS NOT NULL"))
        .returning(_messages.c.id)
    )
    message_id = (await session.execute(stmt)).scalar()
    return int(message_id) if message_id is not None else None


async def touch_conversation(session: AsyncSession, conversation_id: int, at: datetime, *, inbound: bool) -> None:
    """Move the conversation's last message (and last customer message) times forward to ``at``."""
    values: dict[str, Any] = {"last_message_at": func.greatest(_conversations.c.last_message_at, at)}
    if inbound:
        values["last_inbound_at"] = func.greatest(_conversations.c.last_inbound_at, at)
    await session.execute(update(_conversations).where(_conversations.c.id == conversation_id).values(**values))


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
    rows = (
        await session.execute(
            sa.delete(_pending)
            .where(_pending.c.mid == mid)
            .returning(_pending.c.kind, _pending.c.payload, _pending.c.occurred_at, _pending.c.dedupe_key)
        )
    ).all()
    ordered = sorted(rows, key=lambda r: (r.occurred_at, r.dedupe_key))
    return [(str(r.kind), dict(r.payload), r.occurred_at) for r in ordered]


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
    """Apply a reaction unless a newer one from the same reactor was applied already.

    ``reactions`` holds what the customer shows now; ``reaction_clock`` remembers the
    newest event per reactor (time, then content as a tie-break), so any order of the
    same events ends in the same state. Returns whether anything changed.
    """
    row = (
        await session.execute(
            select(_messages.c.reactions, _messages.c.reaction_clock)
            .where(_messages.c.id == message_id)
            .with_for_update()
        )
    ).one()
    clock = dict(row.reaction_clock or {})
    stamp = [at_ms, f"{action}:{reaction or ''}:{emoji or ''}"]
    previous = clock.get(reactor)
    if previous is not None and (int(previous[0]), str(previous[1])) >= (at_ms, stamp[1]):
        return False
    clock[reactor] = stamp
    reactions = dict(row.reactions or {})
    if action == "react":
        reactions[reactor] = {"reaction": reaction, "emoji": emoji, "at": at_ms}
    else:
        reactions.pop(reactor, None)
    await session.execute(
        update(_messages).where(_messages.c.id == message_id).values(reactions=reactions, reaction_clock=clock)
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


async def add_receipt(
    session: AsyncSession, conversation_id: int, kind: str, watermark: datetime, at: datetime
) -> None:
    """Record a read or delivery receipt and apply it to the outgoing messages it covers.

    A message's read/delivered time is the earliest receipt covering it, so the
    result does not depend on the order receipts and messages arrive in.
    """
    inserted = (
        await session.execute(
            insert(_receipts)
            .values(conversation_id=conversation_id, kind=kind, watermark=watermark, occurred_at=at)
            .on_conflict_do_nothing(constraint="uq_receipts_natural_key")
            .returning(_receipts.c.id)
        )
    ).scalar()
    if inserted is None:
        return
    column = _messages.c.read_at if kind == "read" else _messages.c.delivered_at
    await session.execute(
        update(_messages)
        .where(
            _messages.c.conversation_id == conversation_id,
            _messages.c.direction == "out",
            _messages.c.sent_at <= watermark,
            sa.or_(column.is_(None), column > at),
        )
        .values({column.key: at})
    )
    watermark_column = _conversations.c.read_watermark if kind == "read" else _conversations.c.delivered_watermark
    await session.execute(
        update(_conversations)
        .where(_conversations.c.id == conversation_id)
        .values({watermark_column.key: func.greatest(watermark_column, watermark)})
    )


# ------------------------------------------------------------ deal recomputation


async def recompute_deal(session: AsyncSession, deal_id: int) -> None:
    """Derive the deal's last message and response tracking from its messages.

    Computed from the whole history ordered by Meta's timestamps, so the result is the
    same whatever order the messages arrived in. A reply (an outgoing message that did
    not fail) answers the customer's earliest message since the previous reply: its
    ``response_seconds`` is the gap; the first such reply is the deal's first response;
    customer messages after the last reply make the deal await a reply since the
    earliest of them.
    """
    # Ties at the same millisecond: the customer's message first, then by Meta id.
    order = (_messages.c.sent_at, _messages.c.direction, func.coalesce(_messages.c.mid, ""), _messages.c.id)
    rows = (
        await session.execute(
            select(
                _messages.c.id,
                _messages.c.direction,
                _messages.c.sent_at,
                _messages.c.response_seconds,
                _messages.c.status,
            )
            .where(_messages.c.deal_id == deal_id)
            .order_by(*order)
        )
    ).all()
    waiting_since: datetime | None = None
    first_response: tuple[int, datetime] | None = None
    changed: list[tuple[int, int | None]] = []
    for row in rows:
        if row.direction == "in":
            if waiting_since is None:
                waiting_since = row.sent_at
            continue
        if row.status == "failed":
            response = None
        else:
            response = int((row.sent_at - waiting_since).total_seconds()) if waiting_since is not None else None
            if response is not None and first_response is None:
                first_response = (response, row.sent_at)
            waiting_since = None
        if response != row.response_seconds:
            changed.append((int(row.id), response))
    for message_id, response in changed:
        await session.execute(update(_messages).where(_messages.c.id == message_id).values(response_seconds=response))

    last = (
        await session.execute(
            select(_messages.c.kind, _messages.c.text, _messages.c.is_deleted, _messages.c.sent_at)
            .where(_messages.c.deal_id == deal_id)
            .order_by(*(c.desc() for c in order))
            .limit(1)
        )
    ).one_or_none()
    values: dict[str, Any] = {
        "awaiting_reply_since": waiting_since,
        "first_response_seconds": first_response[0] if first_response else None,
        "first_response_at": first_response[1] if first_response else None,
        "last_message_at": last.sent_at if last is not None else None,
        "last_message_text": preview(last.kind, last.text, last.is_deleted) if last is not None else None,
    }
    # Only real changes are written, so the search trigger and updated_at move only then.
    distinct = sa.or_(*(_deals.c[name].is_distinct_from(value) for name, value in values.items()))
    await session.execute(update(_deals).where(_deals.c.id == deal_id, distinct).values(**values, updated_at=utcnow()))


async def set_referral(
    session: AsyncSession, deal_id: int, source: str, data: dict[str, Any]
) -> tuple[str | None, str | None] | None:
    """Record where the lead came from, first touch wins: the earliest referral by Meta time.

    Returns ``(old lead source, new lead source)`` when the deal's referral changed.
    """
    row = (
        await session.execute(
            select(_deals.c.lead_source, _deals.c.referral).where(_deals.c.id == deal_id).with_for_update()
        )
    ).one()
    current = row.referral if isinstance(row.referral, dict) else None
    if current is not None:
        current_key = (int(current.get("timestamp") or 0), _canonical(current))
        if current_key <= (int(data.get("timestamp") or 0), _canonical(data)):
            return None
    await session.execute(
        update(_deals).where(_deals.c.id == deal_id).values(lead_source=source, referral=data, updated_at=utcnow())
    )
    return row.lead_source, source


def _canonical(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


async def add_activity(session: AsyncSession, deal_id: int, kind: str, data: dict[str, Any], actor_label: str) -> None:
    """Add an entry to the deal's timeline."""
    await session.execute(
        insert(_activities).values(deal_id=deal_id, kind=kind, actor_label=actor_label, data=data, created_at=utcnow())
    )


async def load_deal(session: AsyncSession, deal_id: int) -> tuple[Deal, Contact, str]:
    """The deal, its contact and its stage key, fresh from the database."""
    row = (
        await session.execute(
            select(Deal, Contact, col(Stage.key))
            .join(Contact, col(Contact.id) == col(Deal.contact_id))
            .join(Stage, col(Stage.id) == col(Deal.stage_id))
            .where(col(Deal.id) == deal_id)
            .execution_options(populate_existing=True)
        )
    ).one()
    return row[0], row[1], str(row[2])


async def load_message(session: AsyncSession, message_id: int) -> Message:
    """A message, fresh from the database."""
    return (
        await session.execute(
            select(Message).where(col(Message.id) == message_id).execution_options(populate_existing=True)
        )
    ).scalar_one()
