"""Turning Meta messaging items into contacts, conversations, messages and deals.

One item is one transaction: the contact and conversation upserts, the change itself,
the deal's derived fields and the outbox events commit together, and the events are
published after the commit. The rules that make the result independent of delivery
order and repetition:

* creation (contact, conversation, deal, message) is decided by unique constraints;
* a message belongs to the conversation's open deal, or opens one; a message written
  before a closed deal's latest message belongs to that closed deal instead;
* updates about a message that has not arrived yet (reactions, edits, deletes, reads,
  deliveries) wait in ``pending_updates`` and are applied when it lands;
* every applied value is a max/min or a "newest wins" by Meta's timestamp (reactions,
  edits by ``num_edit``, read and delivered times from receipts), and derived deal
  fields (last message, response tracking) are recomputed from the stored messages.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import asyncpg
from prometheus_client import Counter, Histogram
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.conversation import replies, rules
from crm.conversation import repository as core
from crm.deals.events import contact_ref, row_key, snapshot
from crm.inbound import repository as repo
from crm.inbound.items import (
    Delete,
    Delivery,
    Edit,
    Ignored,
    InvalidMetaItem,
    ItemContext,
    NewMessage,
    ParsedItem,
    Reaction,
    Read,
    Referral,
    ReferralOnly,
    from_ms,
    parse_item,
)
from crm.models import Message
from jggl_common.contracts import (
    DealCreated,
    DealUpdated,
    DealUpdatedData,
    Envelope,
    MessageReceived,
    MessageReceivedData,
    MetaItemReceived,
    stable_event_id,
    utcnow,
)
from jggl_common.db import session_scope
from jggl_common.logs import correlation_id, get_logger
from jggl_common.outbox import Outbox, stage_all

__all__ = ["HandleResult", "InboundService"]

log = get_logger(__name__)

ITEMS_PER_TRANSACTION = Histogram(
    "crm_inbound_items_per_transaction",
    "Meta items applied in one transaction (items handled at the same moment share one)",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
GROUPS_SPLIT = Counter(
    "crm_inbound_groups_split_total",
    "Groups of items whose shared transaction failed and that were applied one item per transaction",
)

PRODUCER = "crm"
_E = TypeVar("_E", bound=Envelope)
# Serialization failures, deadlocks and unique violations: another transaction won a
# race; running the whole unit again sees its result.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "23505"})
_FOREIGN_KEY_VIOLATION = "23503"


@dataclass(slots=True)
class HandleResult:
    """What handling one item did (for logs and tests)."""

    applied: bool
    reason: str = ""
    event_ids: list[str] = field(default_factory=list)
    new_contact_id: int | None = None


@dataclass
class _Unit:
    """The state of one transaction: where the item belongs and what to announce."""

    session: AsyncSession
    ctx: ItemContext
    channel_id: int
    contact_id: int
    conversation_id: int
    correlation: str | None
    fresh: bool = False  # the conversation was created by this transaction: it has no deals or messages yet
    created_deals: list[int] = field(default_factory=list)
    updated_deals: dict[int, dict[str, tuple[Any, Any]]] = field(default_factory=dict)
    received: list[tuple[int, int]] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)
    recompute: set[int] = field(default_factory=set)
    contact_created: bool = False
    # Rows this unit already knows in their final state (no need to read them back).
    known_deals: dict[int, tuple[core.DealRow, str]] = field(default_factory=dict)
    known_messages: dict[int, core.MessageRow | Message] = field(default_factory=dict)
    _loaded: dict[int, tuple[core.DealRow, core.ContactRow, str]] = field(default_factory=dict)

    def preload(self, deals: dict[int, tuple[core.DealRow, core.ContactRow, str]]) -> None:
        """Take deals read for several units at once (the ones this unit knows stay)."""
        for deal_id, deal in deals.items():
            if deal_id not in self.known_deals or not self.contact_created:
                self._loaded.setdefault(deal_id, deal)

    async def _deal(self, deal_id: int) -> tuple[core.DealRow, core.ContactRow, str]:
        """The deal as committed by this unit (loaded once, after every change was made)."""
        if deal_id not in self._loaded:
            known = self.known_deals.get(deal_id)
            if known is not None and self.contact_created:
                # A contact created by this unit has no profile yet: nothing to read back.
                contact = core.ContactRow(self.contact_id, self.ctx.platform, self.ctx.customer_id, None, None, None)
                self._loaded[deal_id] = (known[0], contact, known[1])
            else:
                self._loaded[deal_id] = await core.read_deal(self.session, deal_id)
        return self._loaded[deal_id]

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
            _message_values(message, self.ctx.at),
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
        change = await repo.set_referral(self.session, deal_id, referral.source, referral.data)
        if change is not None and change[0] != change[1]:
            self.updated_deals.setdefault(deal_id, {})["lead_source"] = change

    async def events(self) -> list[Envelope]:
        """The deal and message events of this unit, with ids derived from what they
        announce (the caller stages them, with other units' in one statement)."""
        events: list[Envelope] = []
        for deal_id in self.created_deals:
            deal, contact, stage_key = await self._deal(deal_id)
            key = f"crm.deal.created:{row_key(deal_id, deal.created_at)}"
            events.append(self._announce(DealCreated, key, snapshot(deal, contact, stage_key)))
        for deal_id, changes in self.updated_deals.items():
            if deal_id in self.created_deals:
                continue  # the creation event already carries the final state
            deal, contact, stage_key = await self._deal(deal_id)
            key = f"crm.deal.updated:{row_key(deal_id, deal.created_at)}:{self.ctx.dedupe_key}"
            data = DealUpdatedData(deal=snapshot(deal, contact, stage_key), changes=changes, actor_label="system")
            events.append(self._announce(DealUpdated, key, data))
        for message_id, deal_id in self.received:
            message = self.known_messages.get(message_id) or await core.load_message(self.session, message_id)
            if message is None:
                continue  # removed meanwhile (never in the transaction that stored it)
            if message.is_deleted:
                continue  # unsent before we even stored it: nothing to notify about
            deal, contact, stage_key = await self._deal(deal_id)
            assert message.mid is not None
            received = MessageReceivedData(
                message_id=message_id,
                mid=message.mid,
                deal_id=deal_id,
                conversation_id=message.conversation_id,
                kind=message.kind,
                text=message.text,
                attachments=list(message.attachments),
                sent_at=message.sent_at,
                is_first_message=deal_id in self.created_deals,
                deal_stage=stage_key,
                assignee_id=deal.assignee_id,
                contact=contact_ref(contact),
            )
            key = f"crm.message.received:{row_key(message_id, message.created_at)}"
            events.append(self._announce(MessageReceived, key, received))
        return events

    def _announce(self, contract: Callable[..., _E], key: str, data: Any) -> _E:
        """An event of this unit; its id derives from ``key`` (what it announces)."""
        return contract(id=stable_event_id(key), producer=PRODUCER, correlation_id=self.correlation, data=data)

    async def stage_sent(self) -> list[str]:
        """Announce the replies this unit recorded as sent; returns the staged event ids."""
        ids = []
        for message_id in self.sent:
            # Replies typed in Meta's apps, and ours whose echo beat the Send API's answer.
            event_id = await replies.stage_sent(self.session, message_id, self.correlation)
            if event_id is not None:
                ids.append(event_id)
        return ids


async def _load_deals(session: AsyncSession, units: list[_Unit]) -> None:
    """Read, in one statement, every deal the units' events announce and they do not know."""
    wanted = {
        deal_id
        for unit in units
        for deal_id in (*unit.created_deals, *unit.updated_deals, *(deal for _, deal in unit.received))
        if not (deal_id in unit.known_deals and unit.contact_created)
    }
    loaded = await core.read_deals(session, wanted)
    for unit in units:
        unit.preload(loaded)


def _message_values(message: NewMessage, at: datetime, **extra: Any) -> dict[str, Any]:
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


@dataclass(slots=True)
class _Work:
    """An item to apply, with what was looked up before its transaction."""

    parsed: ParsedItem
    channel_id: int
    sealed_token: str | None
    correlation: str | None


# The unit, whether it created the contact, and the ids of the events it staged.
_Applied = tuple[_Unit, bool, list[str]]


class _Groups:
    """Items waiting for a transaction, grouped so that no two open transactions of this
    process share a conversation.

    At most ``max_in_flight`` groups are applied at once. Items handled meanwhile wait
    and go together in the next group (up to ``max_items``), so a busy replica commits
    bigger groups rather than more of them. An item whose conversation is in a group
    being applied waits for that group's commit, and so do the later items of that
    conversation: a conversation's items are applied in the order they were handled,
    and a transaction never waits on this process's other transaction for a contact or
    conversation lock. A lone item on a quiet system goes at once (at the end of the
    event loop's turn).
    """

    def __init__(
        self,
        apply: Callable[[list[_Work]], Awaitable[list[_Applied | BaseException]]],
        *,
        max_in_flight: int,
        max_items: int,
    ) -> None:
        if max_in_flight < 1 or max_items < 1:
            raise ValueError("max_in_flight and max_items must be at least 1")
        self._apply = apply
        self._max_in_flight = max_in_flight
        self._max_items = max_items
        self._waiting: list[tuple[_Work, asyncio.Future[_Applied | BaseException]]] = []
        self._busy: set[tuple[str, str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._scheduled = False

    @property
    def backlogged(self) -> bool:
        """Whether items wait while every transaction slot is busy."""
        return bool(self._waiting) and len(self._tasks) >= self._max_in_flight

    async def submit(self, work: _Work) -> _Applied | BaseException:
        """The outcome of applying ``work`` together with other waiting items."""
        future: asyncio.Future[_Applied | BaseException] = asyncio.get_running_loop().create_future()
        self._waiting.append((work, future))
        self._schedule()
        return await future

    def _schedule(self) -> None:
        if self._scheduled or not self._waiting or len(self._tasks) >= self._max_in_flight:
            return
        self._scheduled = True
        asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        self._scheduled = False
        while self._waiting and len(self._tasks) < self._max_in_flight:
            taken: list[tuple[_Work, asyncio.Future[_Applied | BaseException]]] = []
            left: list[tuple[_Work, asyncio.Future[_Applied | BaseException]]] = []
            held: set[tuple[str, str, str]] = set()
            for entry in self._waiting:
                if entry[1].done():
                    continue  # its caller was cancelled while it waited
                key = entry[0].parsed.context.conversation_key
                if key in self._busy or key in held or len(taken) >= self._max_items:
                    held.add(key)  # later items of the conversation keep their place behind it
                    left.append(entry)
                else:
                    taken.append(entry)
            self._waiting = left
            if not taken:
                return
            keys = {work.parsed.context.conversation_key for work, _ in taken}
            self._busy |= keys
            task = asyncio.get_running_loop().create_task(self._run(taken, keys))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(
        self,
        taken: list[tuple[_Work, asyncio.Future[_Applied | BaseException]]],
        keys: set[tuple[str, str, str]],
    ) -> None:
        try:
            outcomes = await self._apply([work for work, _ in taken])
        except BaseException as exc:
            for _, future in taken:
                if not future.done():
                    if isinstance(exc, asyncio.CancelledError):
                        future.cancel()
                    else:
                        future.set_result(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, future), outcome in zip(taken, outcomes, strict=True):
                if not future.done():
                    future.set_result(outcome)
        finally:
            self._busy -= keys
            task = asyncio.current_task()
            if task is not None:
                self._tasks.discard(task)  # before the done callback: the next group may start now
            self._schedule()


@dataclass(slots=True)
class _KnownChannel:
    """A channel this process has seen: its id, sealed page token, and when its
    ``last_webhook_at`` was last noted (event loop time)."""

    id: int
    sealed_token: str | None
    noted: float


class InboundService:
    """Applies ingest's Meta items to crm's data. One instance per process.

    ``on_new_contact`` is called after commit with each contact the item created
    (profile enrichment hooks in there); it must not block. With ``profile_lease`` the
    contact is created with its first profile fetch claimed for that long, so the hook
    fetches without claiming it again; an unfetched claim expires and the periodic sweep
    takes the contact. ``app_id`` is our Meta app's id (``META_APP_ID``): echoes carrying
    it may be our own replies.

    At most ``max_transactions`` groups of items are applied at once; items handled
    meanwhile wait and share the next transaction (up to ``max_items_per_transaction``),
    so a busy replica commits bigger groups rather than more of them.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        outbox: Outbox,
        *,
        on_new_contact: Callable[[core.NewContact], None] | None = None,
        profile_lease: timedelta | None = None,
        max_attempts: int = 4,
        app_id: str | None = None,
        max_transactions: int = 2,
        max_items_per_transaction: int = 64,
    ) -> None:
        self._profile_lease = profile_lease if on_new_contact is not None else None
        self._sessions = sessions
        self._app_id = app_id or None
        self._outbox = outbox
        self._on_new_contact = on_new_contact
        self._max_attempts = max_attempts
        self._channels: dict[tuple[str, str], _KnownChannel] = {}
        self._noting: set[asyncio.Task[None]] = set()
        self._together = _Groups(self._apply_group, max_in_flight=max_transactions, max_items=max_items_per_transaction)

    @property
    def backlogged(self) -> bool:
        """Whether items are waiting for a transaction (background work should hold back)."""
        return self._together.backlogged

    async def handle(self, event: MetaItemReceived) -> HandleResult:
        """Apply one item exactly once; raises on failure so the bus retries it.

        Raises :class:`crm.inbound.items.InvalidMetaItem` for an item that can never be
        applied: the bus moves it to the DLQ after its bounded retries.
        """
        parsed = parse_item(event.data, fallback_ms=int(event.occurred_at.timestamp() * 1000))
        if isinstance(parsed, Ignored):
            log.debug("meta item ignored", kind=event.data.kind, reason=parsed.reason)
            return HandleResult(applied=False, reason=parsed.reason)
        channel_id, sealed_token = await self._channel(parsed.context)
        work = _Work(parsed, channel_id, sealed_token, event.correlation_id or correlation_id())
        outcome = await self._together.submit(work)
        if isinstance(outcome, BaseException):
            raise outcome
        unit, created_contact, event_ids = outcome
        new_contact = unit.contact_id if created_contact else None
        if new_contact is not None and self._on_new_contact is not None:
            ctx = parsed.context
            self._on_new_contact(core.NewContact(new_contact, ctx.platform, ctx.customer_id, work.sealed_token))
        return HandleResult(applied=True, event_ids=event_ids, new_contact_id=new_contact)

    async def _apply_group(self, works: list[_Work]) -> list[_Applied | BaseException]:
        """Items handled at the same moment share one transaction (one BEGIN, one COMMIT);
        if any of them fails, each is applied alone, with its own retries and outcome."""
        ITEMS_PER_TRANSACTION.observe(len(works))
        if len(works) > 1:
            # One lock order for every group: two groups never wait for each other in a cycle.
            ordered = sorted(range(len(works)), key=lambda i: works[i].parsed.context.conversation_key)
            try:
                async with self._outbox.transaction() as session:
                    applied = await self._apply_units(session, [works[i] for i in ordered])
            except Exception as exc:
                GROUPS_SPLIT.inc()
                log.info(
                    "items applied together failed, applying them one by one",
                    error=f"{type(exc).__name__}",
                    sqlstate=getattr(getattr(exc, "orig", exc), "sqlstate", None),
                )
            else:
                by_index = dict(zip(ordered, applied, strict=True))
                return [by_index[i] for i in range(len(works))]
        return list(await asyncio.gather(*(self._apply_alone(work) for work in works), return_exceptions=True))

    async def _apply_alone(self, work: _Work) -> _Applied:
        """One item in its own transaction, retried in place when it lost a race."""
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._outbox.transaction() as session:
                    (applied,) = await self._apply_units(session, [work])
                break
            except (DBAPIError, asyncpg.PostgresError) as exc:
                # Statements run through SQLAlchemy wrap the driver's error; those run on the driver do not.
                sqlstate = getattr(getattr(exc, "orig", exc), "sqlstate", None)
                if attempt >= self._max_attempts or sqlstate not in (*_RETRYABLE_SQLSTATES, _FOREIGN_KEY_VIOLATION):
                    raise
                if sqlstate == _FOREIGN_KEY_VIOLATION:
                    # The cached channel is gone (removed by an admin): look it up again.
                    ctx = work.parsed.context
                    self._channels.pop((ctx.platform, ctx.page_id), None)
                    work.channel_id, work.sealed_token = await self._channel(ctx)
                    continue
                log.info("meta item lost a race, retrying", sqlstate=sqlstate, attempt=attempt)
                await asyncio.sleep(random.uniform(0.005, 0.05) * attempt)
        return applied

    async def _apply_units(self, session: AsyncSession, works: list[_Work]) -> list[_Applied]:
        """Apply ``works`` in order in ``session``'s transaction, then derive the touched
        deals' fields in one go and stage every event in one statement. A lone item takes
        the single-row statements, which cost less than their multi-row forms for one row."""
        if len(works) == 1:
            (work,) = works
            unit, created_contact = await self._apply(session, work.parsed, work.channel_id, work.correlation)
            applied = [(unit, created_contact)]
        else:
            applied = await self._apply_several(session, works)
        units = [unit for unit, _ in applied]
        await core.recompute_deals(session, {deal_id for unit in units for deal_id in unit.recompute})
        await _load_deals(session, units)
        staged = [(unit, created_contact, await unit.events()) for unit, created_contact in applied]
        await stage_all(session, [(event, None) for _, _, events in staged for event in events])
        return [
            (unit, created_contact, [event.id for event in events] + await unit.stage_sent())
            for unit, created_contact, events in staged
        ]

    async def _apply_several(self, session: AsyncSession, works: list[_Work]) -> list[tuple[_Unit, bool]]:
        """:meth:`_apply_units` for more than one item: the multi-row statements first.

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
        done: dict[int, tuple[_Unit, bool]] = {}
        # New customers' first messages are stored together, in one statement.
        openers: dict[int, tuple[_Unit, NewMessage]] = {}
        seen: set[tuple[int, str]] = set()
        for index, (work, key) in enumerate(zip(works, keys, strict=True)):
            customer, change = customers[key], work.parsed.change
            first_of_customer = key not in seen
            seen.add(key)
            if (
                first_of_customer
                and customer.conversation_created
                and isinstance(change, NewMessage)
                and change.direction == "in"
                and change.referral is None
            ):
                assert customer.conversation_id is not None
                unit = self._unit(session, work, customer, fresh=True)
                openers[index] = (unit, change)
        if openers:
            stored = await repo.open_with_first_messages(session, [u.opening(m) for u, m in openers.values()])
            for (index, (unit, message)), first in zip(openers.items(), stored, strict=True):
                unit.opened(message, first)
                done[index] = (unit, customers[keys[index]].contact_created)
        # A conversation created by this transaction is invisible to every other one
        # until commit: only the existing ones need the lock.
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
            unit, created_contact = await self._apply(
                session, work.parsed, work.channel_id, work.correlation, customer, locked=True
            )
            done[index] = (unit, created_contact)
            customers[key] = repo.Customer(customer.contact_id, False, unit.conversation_id, False)
            handled.add(key)
        return [done[index] for index in range(len(works))]

    async def _follow_ups(
        self,
        session: AsyncSession,
        works: list[_Work],
        customers: dict[tuple[int, str], repo.Customer],
        keys: list[tuple[int, str]],
        done: dict[int, tuple[_Unit, bool]],
    ) -> None:
        """Store, in one statement, the customers' messages of the group that belong to a
        deal that exists already (after the first messages were stored): the message,
        the conversation's touch, what waited for the message; the deal is recomputed
        with the others. Adds what it applied to ``done``."""
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
            work, customer = works[index], customers[keys[index]]
            assert customer.conversation_id is not None
            assert isinstance(work.parsed.change, NewMessage)
            deal_id = rules.owning_deal(spans[customer.conversation_id], work.parsed.context.at, outgoing=False)
            if deal_id is not None:
                values = _message_values(work.parsed.change, work.parsed.context.at, read_at=None, delivered_at=None)
                rows[index] = repo.NewRow(customer.conversation_id, deal_id, values)
        stored = await repo.insert_messages(session, list(rows.values()))
        pending = await repo.take_pending_of(session, stored)
        touched: dict[int, datetime] = {}
        for index, row in rows.items():
            work, customer = works[index], customers[keys[index]]
            unit = self._unit(session, work, customer, fresh=False)
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
                await self._apply_update(unit, ref, kind, payload, occurred_at)
            if not waited:  # as stored; otherwise read back when announced
                unit.known_messages[message.id] = message
        await core.touch_conversations(session, touched)

    def _unit(self, session: AsyncSession, work: _Work, customer: repo.Customer, *, fresh: bool) -> _Unit:
        assert customer.conversation_id is not None
        return _Unit(
            session,
            work.parsed.context,
            work.channel_id,
            customer.contact_id,
            customer.conversation_id,
            work.correlation,
            fresh=fresh,
            contact_created=customer.contact_created,
        )

    def _claim_until(self) -> datetime | None:
        """Until when a new contact's first profile fetch is reserved for the hook."""
        return utcnow() + self._profile_lease if self._profile_lease else None

    async def _channel(self, ctx: ItemContext) -> tuple[int, str | None]:
        """The channel's id and sealed page token, known to the process after its first
        webhook; ``last_webhook_at`` is noted in the background, at most once a second.

        Never in the item's transaction and never awaited by the item: items of one page
        do not wait for each other on the channel's row.
        """
        key = (ctx.platform, ctx.page_id)
        now = asyncio.get_running_loop().time()
        known = self._channels.get(key)
        if known is None:
            async with session_scope(self._sessions) as session:
                channel_id, sealed_token = await repo.ensure_channel(session, ctx.platform, ctx.page_id, utcnow())
            known = self._channels[key] = _KnownChannel(channel_id, sealed_token, now)
        elif now - known.noted >= 1.0:
            known.noted = now
            task = asyncio.get_running_loop().create_task(self._note_webhook(key, known))
            self._noting.add(task)
            task.add_done_callback(self._noting.discard)
        return known.id, known.sealed_token

    async def _note_webhook(self, key: tuple[str, str], known: _KnownChannel) -> None:
        """Move the channel's ``last_webhook_at`` forward and refresh its page token."""
        try:
            async with session_scope(self._sessions) as session:
                exists, known.sealed_token = await repo.note_webhook(session, known.id, utcnow())
        except Exception as exc:  # the next webhook notes it again
            log.warning("channel's last webhook not noted", error=f"{type(exc).__name__}")
            return
        if not exists and self._channels.get(key) is known:
            del self._channels[key]  # removed by an admin: the next webhook creates it again

    async def _apply(
        self,
        session: AsyncSession,
        parsed: ParsedItem,
        channel_id: int,
        cid: str | None,
        customer: repo.Customer | None = None,
        *,
        locked: bool = False,
    ) -> tuple[_Unit, bool]:
        """Apply one item; ``customer`` when its contact was upserted already (with others),
        ``locked`` when its conversation is locked already. The deals it touched are left
        in ``unit.recompute`` for the caller to derive."""
        ctx = parsed.context
        if customer is None:
            customer = await repo.upsert_customer(
                session, channel_id, ctx.platform, ctx.customer_id, ctx.at, profile_claimed_until=self._claim_until()
            )
        contact_id, contact_created = customer.contact_id, customer.contact_created
        if customer.conversation_id is not None:
            conversation_id, fresh = customer.conversation_id, customer.conversation_created
        else:
            conversation_id, fresh = await repo.conversation_of(session, channel_id, contact_id)
        if not fresh and not locked:
            # A conversation created by this transaction is invisible to every other one
            # until commit: only an existing one needs the lock.
            await core.lock_conversation(session, conversation_id)
        unit = _Unit(
            session, ctx, channel_id, contact_id, conversation_id, cid, fresh=fresh, contact_created=contact_created
        )
        change = parsed.change
        if isinstance(change, NewMessage):
            await self._new_message(unit, change)
        elif isinstance(change, ReferralOnly):
            deal_id = await unit.deal_for(ctx.at_ms, "referral")
            await unit.referral(deal_id, change.referral)
        elif isinstance(change, Reaction):
            await self._update(
                unit,
                change.mid,
                "reaction",
                {
                    "reactor": change.reactor,
                    "action": change.action,
                    "reaction": change.reaction,
                    "emoji": change.emoji,
                    "at_ms": ctx.at_ms,
                },
            )
        elif isinstance(change, Edit):
            await self._update(unit, change.mid, "edit", {"text": change.text, "num_edit": change.num_edit})
        elif isinstance(change, Delete):
            await self._update(unit, change.mid, "delete", {})
        elif isinstance(change, Read):
            if change.watermark_ms is not None:
                await repo.add_receipt(session, conversation_id, "read", from_ms(change.watermark_ms), ctx.at)
            if change.mid is not None:
                await self._update(unit, change.mid, "read", {})
        elif isinstance(change, Delivery):
            for mid in change.mids:
                await self._update(unit, mid, "delivery", {}, key_suffix=f"#{mid}")
            if change.watermark_ms is not None:
                await repo.add_receipt(session, conversation_id, "delivery", from_ms(change.watermark_ms), ctx.at)
        return unit, contact_created

    async def _new_message(self, unit: _Unit, message: NewMessage) -> None:
        session, ctx = unit.session, unit.ctx
        if unit.fresh and message.direction == "in" and message.referral is None:
            await self._first_message(unit, message)
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
            **_message_values(message, ctx.at, read_at=read_at, delivered_at=delivered_at),
        )
        if stored is None:
            if unit.fresh:
                # Meta message ids are unique: one stored under another customer is bad input.
                raise InvalidMetaItem(f"message id {message.mid!r} is already stored in another conversation")
            return
        message_id = stored.id
        if not await self._landed(unit, message, message_id, deal_id):
            unit.known_messages[message_id] = stored  # as stored; otherwise read back when announced
        if message.referral is not None:
            await unit.referral(deal_id, message.referral)
        if message.direction == "in":
            unit.received.append((message_id, deal_id))

    async def _first_message(self, unit: _Unit, message: NewMessage) -> None:
        """The customer's first message in a conversation this unit created: one statement."""
        (stored,) = await repo.open_with_first_messages(unit.session, [unit.opening(message)])
        unit.opened(message, stored)

    async def _landed(self, unit: _Unit, message: NewMessage, message_id: int, deal_id: int) -> bool:
        """A message is stored under its ``mid``: apply what waited for it, have its deal
        recomputed, and announce it if it is a reply. Returns whether updates waited for it."""
        session, ctx = unit.session, unit.ctx
        await core.touch_conversation(session, unit.conversation_id, ctx.at, inbound=message.direction == "in")
        ref = repo.MessageRef(message_id, unit.conversation_id, deal_id, message.direction, ctx.at)
        # Updates about a message come from its conversation's items, so a fresh one has none.
        pending = [] if unit.fresh else await repo.take_pending(session, message.mid)
        for kind, payload, occurred_at in pending:
            await self._apply_update(unit, ref, kind, payload, occurred_at)
        unit.recompute.add(deal_id)
        if message.direction == "out":
            unit.sent.append(message_id)
        return bool(pending)

    async def _update(self, unit: _Unit, mid: str, kind: str, payload: dict[str, Any], key_suffix: str = "") -> None:
        """Apply an update about message ``mid`` now, or keep it until the message arrives."""
        ref = await repo.message_by_mid(unit.session, mid)
        if ref is None:
            await repo.add_pending(unit.session, mid, kind, unit.ctx.dedupe_key + key_suffix, payload, unit.ctx.at)
            return
        await self._apply_update(unit, ref, kind, payload, unit.ctx.at)
        if kind in ("edit", "delete"):
            unit.recompute.add(ref.deal_id)

    async def _apply_update(
        self, unit: _Unit, ref: repo.MessageRef, kind: str, payload: dict[str, Any], occurred_at: Any
    ) -> None:
        session = unit.session
        if kind == "reaction":
            await repo.apply_reaction(
                session,
                ref.id,
                str(payload["reactor"]),
                int(payload["at_ms"]),
                str(payload["action"]),
                payload.get("reaction"),
                payload.get("emoji"),
            )
        elif kind == "edit":
            await repo.apply_edit(session, ref.id, payload.get("text"), int(payload["num_edit"]))
        elif kind == "delete":
            await repo.apply_delete(session, ref.id)
        elif kind == "read":
            # Instagram reports the last message read: it and everything before it.
            await repo.add_receipt(session, ref.conversation_id, "read", ref.sent_at, occurred_at)
        elif kind == "delivery":
            await repo.apply_delivery(session, ref.id, occurred_at)
        else:  # pragma: no cover - only the kinds above are ever stored
            log.warning("unknown pending update kind", kind=kind)
