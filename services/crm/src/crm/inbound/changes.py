"""Applying Meta items' typed changes inside the caller's transaction.

:class:`Changes` turns each parsed item (a :class:`crm.inbound.items.NewMessage`,
reaction, edit, delete, read, delivery or referral) into rows, with a ``match`` on the
typed change. It never commits and never announces: the transaction policy
(:mod:`crm.inbound.service`) owns the transaction, and :mod:`crm.inbound.announce`
builds the events from what each :class:`Unit` records. The rules that make the result
independent of delivery order and repetition:

* creation (contact, conversation, deal, message) is decided by unique constraints;
* a message belongs to the deal :func:`crm.conversation.rules.owning_deal` names, or
  opens one;
* updates about a message that has not arrived yet (reactions, edits, deletes, reads,
  deliveries) wait in ``pending_updates`` and are applied when it lands;
* every applied value is a max/min or a "newest wins" by Meta's timestamp, and derived
  deal fields (last message, response tracking) are recomputed from the stored
  messages by the caller, once per transaction (``Unit.recompute`` names the deals).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from crm.conversation import replies, rules
from crm.conversation import repository as core
from crm.inbound import repository as repo
from crm.inbound.items import (
    Delete,
    Delivery,
    Edit,
    InvalidMetaItem,
    ItemContext,
    NewMessage,
    ParsedItem,
    Reaction,
    Read,
    Referral,
    ReferralOnly,
    from_ms,
)
from crm.models import Message

__all__ = ["Changes", "Unit", "Work"]


@dataclass(slots=True)
class Work:
    """An item to apply, with what was looked up before its transaction."""

    parsed: ParsedItem
    channel_id: int
    sealed_token: str | None
    correlation: str | None


@dataclass
class Unit:
    """What applying one item did: where it belongs, and what to derive and announce."""

    session: AsyncSession
    ctx: ItemContext
    channel_id: int
    contact_id: int
    conversation_id: int
    correlation: str | None
    fresh: bool = False  # the conversation was created by this transaction: it has no deals or messages yet
    contact_created: bool = False
    created_deals: list[int] = field(default_factory=list)
    updated_deals: dict[int, dict[str, tuple[Any, Any]]] = field(default_factory=dict)
    received: list[tuple[int, int]] = field(default_factory=list)  # customers' messages stored: (message, deal)
    sent: list[int] = field(default_factory=list)  # replies recorded as sent
    recompute: set[int] = field(default_factory=set)  # deals whose derived fields may have changed
    # Rows this unit already knows in their final state (no need to read them back).
    known_deals: dict[int, tuple[core.DealRow, str]] = field(default_factory=dict)
    known_messages: dict[int, core.MessageRow | Message] = field(default_factory=dict)

    async def deal_for(self, at_ms: int, opened_by: str, *, outgoing: bool = False) -> int:
        """The deal a message or referral written at ``at_ms`` belongs to (opened if needed)."""
        at = from_ms(at_ms)
        if not self.fresh or self.created_deals:
            existing = await repo.deal_for(self.session, self.conversation_id, at, outgoing=outgoing)
            if existing is not None:
                return existing
        deal_id, created = await repo.open_deal(
            self.session, self.conversation_id, self.contact_id, self.channel_id, self.ctx.platform
        )
        if created:
            self.created_deals.append(deal_id)
            await repo.add_activity(
                self.session, deal_id, "created", {"opened_by": opened_by, "platform": self.ctx.platform}, "system"
            )
            if not self.fresh:
                left = await repo.rehome_follow_ups(self.session, self.conversation_id, deal_id, at)
                if left:
                    self.recompute.update([*left, deal_id])
        return deal_id

    def opening(self, message: NewMessage) -> repo.Opening:
        """The customer's first message, to store with the deal it opens (the conversation is fresh)."""
        return repo.Opening(
            self.conversation_id,
            self.contact_id,
            self.channel_id,
            self.ctx.platform,
            message_values(message, self.ctx.at),
        )

    def opened(self, message: NewMessage, stored: repo.FirstMessage | None) -> None:
        """Take what :func:`repo.open_with_first_messages` stored for :meth:`opening`."""
        if stored is None:
            # Meta message ids are unique: one stored under another customer is bad input.
            raise InvalidMetaItem(f"message id {message.mid!r} is already stored in another conversation")
        deal_id, message_id = stored.deal.id, stored.message.id
        self.created_deals.append(deal_id)
        self.received.append((message_id, deal_id))
        self.known_messages[message_id] = stored.message
        self.known_deals[deal_id] = (stored.deal, stored.stage_key)

    async def referral(self, deal_id: int, referral: Referral) -> None:
        """Record the referral on the deal, first touch wins."""
        change = await repo.set_referral(self.session, deal_id, referral.source, referral.data)
        if change is not None and change[0] != change[1]:
            self.updated_deals.setdefault(deal_id, {})["lead_source"] = change


def message_values(message: NewMessage, at: datetime, **extra: Any) -> dict[str, Any]:
    """The stored columns of a new message (besides its conversation and deal)."""
    return {
        "mid": message.mid,
        "direction": message.direction,
        "kind": message.kind,
        "text": message.text,
        "attachments": message.attachments,
        "quick_reply_payload": message.quick_reply_payload,
        "postback_payload": message.postback_payload,
        "reply_to_mid": message.reply_to_mid,
        "reply_to_story": message.reply_to_story,
        "status": "received" if message.direction == "in" else "sent",
        "sent_at": at,
        "author_label": message.author_label,
        "app_id": message.app_id,
        **extra,
    }


# A change about one stored message: what an item says about it, or what waited for it.
MessageChange = Reaction | Edit | Delete | Read | Delivery


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A change about a message, as it waits in ``pending_updates`` for the message."""

    change: MessageChange
    at_ms: int  # the item's Meta time (reactions are ordered by it)
    occurred_at: datetime


def _stored_form(change: MessageChange, at_ms: int) -> tuple[str, dict[str, Any]]:
    """``(kind, payload)``: how a waiting change is kept in ``pending_updates``."""
    match change:
        case Reaction():
            return "reaction", {
                "reactor": change.reactor,
                "action": change.action,
                "reaction": change.reaction,
                "emoji": change.emoji,
                "at_ms": at_ms,
            }
        case Edit():
            return "edit", {"text": change.text, "num_edit": change.num_edit}
        case Delete():
            return "delete", {}
        case Read():
            return "read", {}
        case Delivery():
            return "delivery", {}


def _from_stored(mid: str, kind: str, payload: dict[str, Any], occurred_at: datetime) -> _Waiting:
    """The typed change a ``pending_updates`` row keeps (the inverse of :func:`_stored_form`)."""
    at_ms = int(occurred_at.timestamp() * 1000)
    change: MessageChange
    if kind == "reaction":
        action: Literal["react", "unreact"] = "react" if payload["action"] == "react" else "unreact"
        change = Reaction(mid, str(payload["reactor"]), action, payload.get("reaction"), payload.get("emoji"))
        at_ms = int(payload["at_ms"])
    elif kind == "edit":
        change = Edit(mid, payload.get("text"), int(payload["num_edit"]))
    elif kind == "delete":
        change = Delete(mid)
    elif kind == "read":
        change = Read(None, mid)
    elif kind == "delivery":
        change = Delivery((mid,), None)
    else:
        raise ValueError(f"unknown pending update kind {kind!r}")
    return _Waiting(change, at_ms, occurred_at)


class Changes:
    """Applies items' typed changes in the caller's transaction (one instance per process).

    ``app_id`` is our Meta app's id (``META_APP_ID``): echoes carrying it may be our own
    replies. ``claim_until`` says until when a new contact's first profile fetch is
    reserved for the caller's hook (``None``: not reserved).
    """

    def __init__(self, *, app_id: str | None, claim_until: Callable[[], datetime | None]) -> None:
        self._app_id = app_id or None
        self._claim_until = claim_until

    async def apply_one(
        self,
        session: AsyncSession,
        work: Work,
        customer: repo.Customer | None = None,
        *,
        locked: bool = False,
    ) -> tuple[Unit, bool]:
        """Apply one item; ``customer`` when its contact was upserted already (with others),
        ``locked`` when its conversation is locked already. Returns the unit and whether
        it created the contact."""
        ctx = work.parsed.context
        if customer is None:
            customer = await repo.upsert_customer(
                session,
                work.channel_id,
                ctx.platform,
                ctx.customer_id,
                ctx.at,
                profile_claimed_until=self._claim_until(),
            )
        if customer.conversation_id is not None:
            conversation_id, fresh = customer.conversation_id, customer.conversation_created
        else:
            conversation_id, fresh = await repo.conversation_of(session, work.channel_id, customer.contact_id)
        if not fresh and not locked:
            # A conversation created by this transaction is invisible to every other one
            # until commit: only an existing one needs the lock.
            await core.lock_conversation(session, conversation_id)
        unit = Unit(
            session,
            ctx,
            work.channel_id,
            customer.contact_id,
            conversation_id,
            work.correlation,
            fresh=fresh,
            contact_created=customer.contact_created,
        )
        change = work.parsed.change
        match change:
            case NewMessage():
                await self._new_message(unit, change)
            case ReferralOnly():
                deal_id = await unit.deal_for(ctx.at_ms, "referral")
                await unit.referral(deal_id, change.referral)
            case Reaction() | Edit() | Delete():
                await self._about_message(unit, change.mid, change)
            case Read():
                if change.watermark_ms is not None:
                    await repo.add_receipt(session, conversation_id, "read", from_ms(change.watermark_ms), ctx.at)
                if change.mid is not None:
                    await self._about_message(unit, change.mid, change)
            case Delivery():
                for mid in change.mids:
                    await self._about_message(unit, mid, Delivery((mid,), None), key_suffix=f"#{mid}")
                if change.watermark_ms is not None:
                    await repo.add_receipt(session, conversation_id, "delivery", from_ms(change.watermark_ms), ctx.at)
        return unit, customer.contact_created

    async def apply_group(self, session: AsyncSession, works: list[Work]) -> list[tuple[Unit, bool]]:
        """Apply several items, in order, with multi-row statements where they can share one.

        Their customers are upserted in one statement (which also finds their
        conversations), new customers' first messages stored in one more, the existing
        conversations locked in one more (in id order), and customers' messages that
        belong to an existing deal stored in one more, with the conversations touched in
        one more. What is left (echoes, reactions, reads, referrals, messages that open a
        deal...) is applied item by item, in order.
        """
        customers = await repo.upsert_contacts(
            session,
            [
                repo.Sighting(
                    work.channel_id,
                    work.parsed.context.platform,
                    work.parsed.context.customer_id,
                    work.parsed.context.at,
                )
                for work in works
            ],
            profile_claimed_until=self._claim_until(),
        )
        keys = [(work.channel_id, work.parsed.context.customer_id) for work in works]
        done: dict[int, tuple[Unit, bool]] = {}
        await self._first_messages(session, works, customers, keys, done)
        await core.lock_conversations(
            session,
            {
                c.conversation_id
                for c in customers.values()
                if c.conversation_id is not None and not c.conversation_created
            },
        )
        await self._follow_ups(session, works, customers, keys, done)
        handled = {keys[index] for index in done}
        for index, (work, key) in enumerate(zip(works, keys, strict=True)):
            if index in done:
                continue
            customer = customers[key]
            if key in handled:
                # A later item of a customer finds the conversation (and its deal) as earlier ones left it.
                customer = repo.Customer(customer.contact_id, False, customer.conversation_id, False)
            unit, created_contact = await self.apply_one(session, work, customer, locked=True)
            done[index] = (unit, created_contact)
            customers[key] = repo.Customer(customer.contact_id, False, unit.conversation_id, False)
            handled.add(key)
        return [done[index] for index in range(len(works))]

    async def _first_messages(
        self,
        session: AsyncSession,
        works: list[Work],
        customers: dict[tuple[int, str], repo.Customer],
        keys: list[tuple[int, str]],
        done: dict[int, tuple[Unit, bool]],
    ) -> None:
        """Store new customers' first messages, with the deals they open, in one statement."""
        openers: dict[int, tuple[Unit, NewMessage]] = {}
        seen: set[tuple[int, str]] = set()
        for index, (work, key) in enumerate(zip(works, keys, strict=True)):
            customer, change = customers[key], work.parsed.change
            first_of_customer = key not in seen
            seen.add(key)
            if (
                first_of_customer
                and customer.conversation_created
                and customer.conversation_id is not None
                and isinstance(change, NewMessage)
                and change.direction == "in"
                and change.referral is None
            ):
                openers[index] = (_unit(session, work, customer, customer.conversation_id, fresh=True), change)
        if not openers:
            return
        stored = await repo.open_with_first_messages(session, [unit.opening(m) for unit, m in openers.values()])
        for (index, (unit, message)), first in zip(openers.items(), stored, strict=True):
            unit.opened(message, first)
            done[index] = (unit, customers[keys[index]].contact_created)

    async def _follow_ups(
        self,
        session: AsyncSession,
        works: list[Work],
        customers: dict[tuple[int, str], repo.Customer],
        keys: list[tuple[int, str]],
        done: dict[int, tuple[Unit, bool]],
    ) -> None:
        """Store, in one statement, the customers' messages of the group that belong to a
        deal that exists already (after the first messages were stored): the message,
        the conversation's touch, what waited for the message. Adds what it applied to
        ``done``."""
        candidates = [
            index
            for index, work in enumerate(works)
            if index not in done
            and isinstance(work.parsed.change, NewMessage)
            and work.parsed.change.direction == "in"
            and work.parsed.change.referral is None
            and customers[keys[index]].conversation_id is not None
        ]
        if not candidates:
            return
        conversations = {customers[keys[index]].conversation_id for index in candidates}
        spans = await repo.deal_spans(session, {c for c in conversations if c is not None})
        rows: dict[int, repo.NewRow] = {}
        for index in candidates:
            work, conversation_id = works[index], customers[keys[index]].conversation_id
            change = work.parsed.change
            if conversation_id is None or not isinstance(change, NewMessage):
                continue  # not a candidate (see above): for the type checker
            deal_id = rules.owning_deal(spans[conversation_id], work.parsed.context.at, outgoing=False)
            if deal_id is not None:
                values = message_values(change, work.parsed.context.at, read_at=None, delivered_at=None)
                rows[index] = repo.NewRow(conversation_id, deal_id, values)
        stored = await repo.insert_messages(session, list(rows.values()))
        pending = await repo.take_pending_of(session, stored)
        touched: dict[int, datetime] = {}
        for index, row in rows.items():
            work, customer = works[index], customers[keys[index]]
            unit = _unit(session, work, customer, row.conversation_id, fresh=False)
            done[index] = (unit, False)
            mid = str(row.message["mid"])
            if mid not in stored or stored[mid][0].conversation_id != row.conversation_id:
                continue  # a repeat (stored before, or earlier in this group)
            message, deal_id = stored.pop(mid)
            at = work.parsed.context.at
            touched[row.conversation_id] = max(at, touched.get(row.conversation_id, at))
            unit.received.append((message.id, deal_id))
            unit.recompute.add(deal_id)
            ref = repo.MessageRef(message.id, row.conversation_id, deal_id, "in", at)
            waited = pending.get(mid, [])
            for kind, payload, occurred_at in waited:
                await self._apply_to(unit, ref, _from_stored(mid, kind, payload, occurred_at))
            if not waited:  # as stored; otherwise read back when announced
                unit.known_messages[message.id] = message
        await core.touch_conversations(session, touched)

    async def _new_message(self, unit: Unit, message: NewMessage) -> None:
        session, ctx = unit.session, unit.ctx
        if unit.fresh and message.direction == "in" and message.referral is None:
            # The customer's first message in a conversation this unit created: one statement.
            (first,) = await repo.open_with_first_messages(session, [unit.opening(message)])
            unit.opened(message, first)
            return
        # A fresh conversation has no messages: a repeat would have found it.
        if not unit.fresh and await repo.message_by_mid(session, message.mid) is not None:
            return  # a repeat, or the echo of a message we sent ourselves
        if message.direction == "out":
            own = await replies.claim_own_echo(
                session,
                unit.conversation_id,
                mid=message.mid,
                text=message.text,
                attachments=message.attachments,
                app_id=message.app_id,
                our_app_id=self._app_id,
                at=ctx.at,
            )
            if own is not None:
                # Our reply, echoed before the Send API answered: it is sent, not a second message.
                await self._landed(unit, message, own[0], own[1])
                return
        opened_by = "echo" if message.direction == "out" else message.kind
        deal_id = await unit.deal_for(ctx.at_ms, opened_by, outgoing=message.direction == "out")
        read_at = delivered_at = None
        if message.direction == "out":
            read_at, delivered_at = await repo.receipt_times(session, unit.conversation_id, ctx.at)
        stored = await repo.insert_message(
            session,
            conversation_id=unit.conversation_id,
            deal_id=deal_id,
            **message_values(message, ctx.at, read_at=read_at, delivered_at=delivered_at),
        )
        if stored is None:
            if unit.fresh:
                # Meta message ids are unique: one stored under another customer is bad input.
                raise InvalidMetaItem(f"message id {message.mid!r} is already stored in another conversation")
            return
        if not await self._landed(unit, message, stored.id, deal_id):
            unit.known_messages[stored.id] = stored  # as stored; otherwise read back when announced
        if message.referral is not None:
            await unit.referral(deal_id, message.referral)
        if message.direction == "in":
            unit.received.append((stored.id, deal_id))

    async def _landed(self, unit: Unit, message: NewMessage, message_id: int, deal_id: int) -> bool:
        """A message is stored under its ``mid``: apply what waited for it, have its deal
        recomputed, and record it as sent if it is a reply. Returns whether updates waited
        for it."""
        session, ctx = unit.session, unit.ctx
        await core.touch_conversation(session, unit.conversation_id, ctx.at, inbound=message.direction == "in")
        ref = repo.MessageRef(message_id, unit.conversation_id, deal_id, message.direction, ctx.at)
        # Updates about a message come from its conversation's items, so a fresh one has none.
        pending = [] if unit.fresh else await repo.take_pending(session, message.mid)
        for kind, payload, occurred_at in pending:
            await self._apply_to(unit, ref, _from_stored(message.mid, kind, payload, occurred_at))
        unit.recompute.add(deal_id)
        if message.direction == "out":
            unit.sent.append(message_id)
        return bool(pending)

    async def _about_message(self, unit: Unit, mid: str, change: MessageChange, key_suffix: str = "") -> None:
        """Apply a change about message ``mid`` now, or keep it until the message arrives."""
        ref = await repo.message_by_mid(unit.session, mid)
        if ref is None:
            kind, payload = _stored_form(change, unit.ctx.at_ms)
            await repo.add_pending(unit.session, mid, kind, unit.ctx.dedupe_key + key_suffix, payload, unit.ctx.at)
            return
        await self._apply_to(unit, ref, _Waiting(change, unit.ctx.at_ms, unit.ctx.at))

    async def _apply_to(self, unit: Unit, ref: repo.MessageRef, waiting: _Waiting) -> None:
        """Apply a change to a stored message (newest wins, whatever the order)."""
        session, change = unit.session, waiting.change
        match change:
            case Reaction():
                await repo.apply_reaction(
                    session, ref.id, change.reactor, waiting.at_ms, change.action, change.reaction, change.emoji
                )
            case Edit():
                await repo.apply_edit(session, ref.id, change.text, change.num_edit)
                unit.recompute.add(ref.deal_id)
            case Delete():
                await repo.apply_delete(session, ref.id)
                unit.recompute.add(ref.deal_id)
            case Read():
                # Instagram reports the last message read: it and everything before it.
                await repo.add_receipt(session, ref.conversation_id, "read", ref.sent_at, waiting.occurred_at)
            case Delivery():
                await repo.apply_delivery(session, ref.id, waiting.occurred_at)


def _unit(session: AsyncSession, work: Work, customer: repo.Customer, conversation_id: int, *, fresh: bool) -> Unit:
    return Unit(
        session,
        work.parsed.context,
        work.channel_id,
        customer.contact_id,
        conversation_id,
        work.correlation,
        fresh=fresh,
        contact_created=customer.contact_created,
    )
