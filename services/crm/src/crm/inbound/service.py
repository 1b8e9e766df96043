"""The inbound consumer's transaction policy: which items share a transaction, when it
commits, what is retried, and when the events are announced.

This module owns the commit. An item is applied in a transaction of the outbox
(:meth:`jggl_common.outbox.Outbox.transaction`), which commits the rows and the staged
events together and publishes the events after the commit. Items handled at the same
moment share one transaction (up to ``max_items_per_transaction``; at most
``max_transactions`` open at once, never two sharing a conversation); if a shared
transaction fails, each of its items is applied alone, and a lone item that lost a race
(serialization failure, deadlock, unique violation) is retried in place. Inside the
transaction :mod:`crm.inbound.changes` applies the typed changes, the touched deals'
derived fields are recomputed once (:func:`crm.conversation.repository.recompute_deals`),
and :mod:`crm.inbound.announce` builds the events, staged in one statement.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg
from prometheus_client import Counter, Histogram
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.conversation import repository as core
from crm.inbound import announce
from crm.inbound import repository as repo
from crm.inbound.changes import Changes, Unit, Work
from crm.inbound.items import Ignored, ItemContext, parse_item
from jggl_common.contracts import MetaItemReceived, utcnow
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


# The unit, whether it created the contact, and the ids of the events it staged.
_Applied = tuple[Unit, bool, list[str]]


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
        apply: Callable[[list[Work]], Awaitable[list[_Applied | BaseException]]],
        *,
        max_in_flight: int,
        max_items: int,
    ) -> None:
        if max_in_flight < 1 or max_items < 1:
            raise ValueError("max_in_flight and max_items must be at least 1")
        self._apply = apply
        self._max_in_flight = max_in_flight
        self._max_items = max_items
        self._waiting: list[tuple[Work, asyncio.Future[_Applied | BaseException]]] = []
        self._busy: set[tuple[str, str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._scheduled = False

    @property
    def backlogged(self) -> bool:
        """Whether items wait while every transaction slot is busy."""
        return bool(self._waiting) and len(self._tasks) >= self._max_in_flight

    async def submit(self, work: Work) -> _Applied | BaseException:
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
            taken: list[tuple[Work, asyncio.Future[_Applied | BaseException]]] = []
            left: list[tuple[Work, asyncio.Future[_Applied | BaseException]]] = []
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
        taken: list[tuple[Work, asyncio.Future[_Applied | BaseException]]],
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

    At most ``max_transactions`` groups of items are applied at once, never two sharing a
    conversation; items handled meanwhile wait and share the next transaction (up to
    ``max_items_per_transaction``), so a busy replica commits bigger groups rather than
    more of them.
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
        self._outbox = outbox
        self._on_new_contact = on_new_contact
        self._max_attempts = max_attempts
        self._channels: dict[tuple[str, str], _KnownChannel] = {}
        self._noting: set[asyncio.Task[None]] = set()
        self._changes = Changes(app_id=app_id, claim_until=self._claim_until)
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
        work = Work(parsed, channel_id, sealed_token, event.correlation_id or correlation_id())
        outcome = await self._together.submit(work)
        if isinstance(outcome, BaseException):
            raise outcome
        unit, created_contact, event_ids = outcome
        new_contact = unit.contact_id if created_contact else None
        if new_contact is not None and self._on_new_contact is not None:
            ctx = parsed.context
            self._on_new_contact(core.NewContact(new_contact, ctx.platform, ctx.customer_id, work.sealed_token))
        return HandleResult(applied=True, event_ids=event_ids, new_contact_id=new_contact)

    async def _apply_group(self, works: list[Work]) -> list[_Applied | BaseException]:
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

    async def _apply_alone(self, work: Work) -> _Applied:
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

    async def _apply_units(self, session: AsyncSession, works: list[Work]) -> list[_Applied]:
        """Apply ``works`` in order in ``session``'s transaction, then recompute the deals
        they touched in one go, build their events and stage them in one statement."""
        await repo.plan_for_few_rows(session)
        if len(works) == 1:
            applied = [await self._changes.apply_one(session, works[0])]
        else:
            applied = await self._changes.apply_group(session, works)
        units = [unit for unit, _ in applied]
        await core.recompute_deals(session, {deal_id for unit in units for deal_id in unit.recompute})
        events = await announce.events_of(session, units)
        await stage_all(session, [(event, None) for unit_events in events for event in unit_events])
        return [
            (unit, created_contact, [event.id for event in unit_events] + await announce.stage_sent(session, unit))
            for (unit, created_contact), unit_events in zip(applied, events, strict=True)
        ]

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
