"""Queries over deals and what hangs off them (messages, activities)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from crm.models import Activity, Contact, Conversation, Deal, Message, Stage, Task, User
from jggl_common.contracts import utcnow

from .access import visible_deal_scopes, visible_deals

DealRow = tuple[Deal, Contact, Stage, str | None]
"""A deal with its contact, its stage and the assignee's name."""

UNREAD_CAP = 100
"""Unread messages are counted up to this many (the app shows "99+"): a deal nobody read
for months costs the list no more than a recent one."""

_NEVER_READ: ColumnElement[Any] = sa.literal_column("'-infinity'::timestamptz")


def may_have_unread(deal: Deal) -> bool:
    """Whether the deal can have unread messages at all, judged from its own columns: the
    customer waits for a reply (a manager's reply clears the wait, and so reads the
    conversation) and wrote since the last read. Deals that cannot are not queried."""
    waiting = deal.awaiting_reply_since
    if waiting is None:
        return False
    read = deal.manager_read_at
    return read is None or deal.last_message_at is None or deal.last_message_at > read


# Missing values sort as the smallest ones (ASC NULLS FIRST / DESC NULLS LAST), through
# the same expressions the expression indexes are built on, so one index serves both
# directions and keyset conditions stay plain row comparisons.
_NEG_INF_TS: ColumnElement[Any] = sa.literal_column("'-infinity'::timestamptz")
_NEG_INF_NUM: ColumnElement[Any] = sa.literal_column("'-Infinity'::numeric")
SORT_EXPRESSIONS: dict[str, tuple[ColumnElement[Any], ColumnElement[Any] | None]] = {
    "created_at": (sa.type_coerce(col(Deal.created_at), sa.DateTime(timezone=True)), None),
    "last_message_at": (sa.func.coalesce(col(Deal.last_message_at), _NEG_INF_TS), _NEG_INF_TS),
    "amount": (sa.func.coalesce(col(Deal.amount), _NEG_INF_NUM), _NEG_INF_NUM),
}


@dataclass(frozen=True)
class DealFilters:
    """Narrowing of the deal list; None means "any"."""

    stage: str | None = None
    status: str | None = None
    assignee_id: int | None = None
    unassigned: bool = False
    awaiting_reply: bool | None = None
    platform: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    overdue_tasks: bool | None = None
    sla: str | None = None


def sort_value(deal: Deal, field: str) -> datetime | Decimal | None:
    """The value of ``deal`` that the list is sorted by."""
    value: datetime | Decimal | None = getattr(deal, field)
    return value


def _conditions(filters: DealFilters) -> list[ColumnElement[bool]]:
    """``filters`` as WHERE conditions on ``deals`` alone."""
    found: list[ColumnElement[bool]] = []
    if filters.stage is not None:
        found.append(
            col(Deal.stage_id) == select(col(Stage.id)).where(col(Stage.key) == filters.stage).scalar_subquery()
        )
    if filters.status is not None:
        found.append(col(Deal.status) == filters.status)
    if filters.assignee_id is not None:
        found.append(col(Deal.assignee_id) == filters.assignee_id)
    if filters.unassigned:
        found.append(col(Deal.assignee_id).is_(None))
    if filters.awaiting_reply is True:
        found.append(col(Deal.awaiting_reply_since).is_not(None))
    elif filters.awaiting_reply is False:
        found.append(col(Deal.awaiting_reply_since).is_(None))
    if filters.overdue_tasks is not None:
        overdue = (
            select(col(Task.id))
            .where(col(Task.deal_id) == col(Deal.id), sa.not_(col(Task.done)), col(Task.due_at) < sa.func.now())
            .exists()
        )
        found.append(overdue if filters.overdue_tasks else sa.not_(overdue))
    if filters.sla is not None:
        # The deal's current wait was announced at that level (escalated ones are breached too).
        since = Deal.sla_escalation_since if filters.sla == "escalated" else Deal.sla_breach_since
        found += [col(Deal.status) == "open", col(since) == col(Deal.awaiting_reply_since)]
    if filters.platform is not None:
        found.append(col(Deal.platform) == filters.platform)
    if filters.created_from is not None:
        found.append(col(Deal.created_at) >= filters.created_from)
    if filters.created_to is not None:
        found.append(col(Deal.created_at) < filters.created_to)
    return found


class DealRepository:
    """Deals as a user sees them."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @staticmethod
    def _rows() -> Select[Deal, Contact, Stage, str]:
        return (
            select(Deal, Contact, Stage, col(User.name))
            .join(Contact, col(Contact.id) == col(Deal.contact_id))
            .join(Stage, col(Stage.id) == col(Deal.stage_id))
            .outerjoin(User, col(User.id) == col(Deal.assignee_id))
        )

    async def page(
        self,
        user: User,
        filters: DealFilters,
        *,
        sort: str,
        after: tuple[Any, int] | None,
        limit: int,
    ) -> list[DealRow]:
        """Up to ``limit`` visible deals matching ``filters`` in ``sort`` order, after a position."""
        field = sort.lstrip("-")
        descending = sort.startswith("-")
        expression, missing = SORT_EXPRESSIONS[field]
        order = (expression.desc(), col(Deal.id).desc()) if descending else (expression.asc(), col(Deal.id).asc())
        conditions = _conditions(filters)
        if after is not None:
            value, after_id = after
            bound: Any = missing if value is None else sa.literal(value, type_=expression.type)
            position = sa.tuple_(expression, col(Deal.id))
            conditions.append(
                position < sa.tuple_(bound, after_id) if descending else position > sa.tuple_(bound, after_id)
            )
        scopes = visible_deal_scopes(user)
        if scopes is None or not (filters.awaiting_reply is True and field == "last_message_at"):
            query = self._rows().where(visible_deals(user), *conditions)
        else:
            # A manager's "awaiting reply" inbox: their waiting deals and the unassigned ones
            # are each an ordered range of an index (ix_deals_waiting_*), so each is read a
            # page deep and only the two pages are merged, instead of sorting every waiting
            # deal either set has. (Other lists find their first rows sooner along the sort
            # order's own index, filtering as they go.)
            picked = sa.union_all(
                *(select(col(Deal.id)).where(scope, *conditions).order_by(*order).limit(limit) for scope in scopes)
            ).subquery("picked")
            query = self._rows().where(col(Deal.id).in_(select(picked.c.id)))
        result = await self.session.execute(query.order_by(*order).limit(limit))
        return [(row[0], row[1], row[2], row[3]) for row in result.all()]

    async def get_visible(self, user: User, deal_id: int, *, for_update: bool = False) -> DealRow | None:
        """The deal if ``user`` may see it (locked for the transaction when ``for_update``)."""
        query = self._rows().where(col(Deal.id) == deal_id, visible_deals(user))
        if for_update:
            query = query.with_for_update(of=Deal)
        row = (await self.session.execute(query)).first()
        return (row[0], row[1], row[2], row[3]) if row is not None else None

    async def unread_counts(self, deals: Sequence[Deal]) -> dict[int, int]:
        """Unread customer messages per deal (only the deals that have some; capped at ``UNREAD_CAP``).

        Unread are the customer's messages since the wait began (``awaiting_reply_since``:
        the first message after the last reply) and after the manager's read marker. One
        query for the whole page; each deal reads at most ``UNREAD_CAP`` entries of the
        ``(deal_id, sent_at, id)`` index, starting at the later of the two moments.
        """
        wanted = [deal for deal in deals if may_have_unread(deal)]
        if not wanted:
            return {}
        ids = sa.func.unnest(sa.bindparam("ids", [deal.id for deal in wanted], type_=sa.ARRAY(sa.Integer)))
        waits = sa.func.unnest(
            sa.bindparam("waits", [deal.awaiting_reply_since for deal in wanted], type_=sa.ARRAY(sa.DateTime(True)))
        )
        reads = sa.func.unnest(
            sa.bindparam("reads", [deal.manager_read_at for deal in wanted], type_=sa.ARRAY(sa.DateTime(True)))
        )
        page = select(ids.label("deal_id"), waits.label("waiting_since"), reads.label("read_at")).subquery("page")
        recent = (
            select(sa.literal(1).label("one"))
            .select_from(Message)
            .where(
                col(Message.deal_id) == page.c.deal_id,
                col(Message.direction) == "in",
                col(Message.sent_at) >= page.c.waiting_since,
                col(Message.sent_at) > sa.func.coalesce(page.c.read_at, _NEVER_READ),
            )
            .order_by(col(Message.sent_at), col(Message.id))
            .limit(UNREAD_CAP)
            .subquery()
            .lateral("recent")
        )
        query = (
            select(page.c.deal_id, sa.func.count(recent.c.one))
            .select_from(page.join(recent, sa.true()))
            .group_by(page.c.deal_id)
        )
        return {int(deal_id): int(count) for deal_id, count in (await self.session.execute(query)).all()}

    async def last_inbound_at(self, conversation_id: int) -> datetime | None:
        """When the customer last wrote in the conversation (Meta's reply window counts from it)."""
        query = select(col(Conversation.last_inbound_at)).where(col(Conversation.id) == conversation_id)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def mark_read(self, deal: Deal) -> tuple[datetime | None, datetime] | None:
        """Move the deal's read marker to the customer's latest message, if that is unread.

        Returns ``(old marker, new marker)`` when it moved; None when nothing was unread
        (nothing is written then). The marker only ever moves forward, so two
        managers reading at once end at the same place.
        """
        newest = (
            select(col(Message.sent_at))
            .where(col(Message.deal_id) == deal.id, col(Message.direction) == "in")
            .order_by(col(Message.sent_at).desc(), col(Message.id).desc())
            .limit(1)
            .scalar_subquery()
        )
        result = await self.session.execute(
            update(Deal)
            .where(
                col(Deal.id) == deal.id,
                # Answered conversations have nothing unread: no write, no event.
                col(Deal.awaiting_reply_since) <= newest,
                sa.func.coalesce(col(Deal.manager_read_at), _NEVER_READ) < newest,
            )
            .values(manager_read_at=newest)
            .returning(col(Deal.manager_read_at))
            .execution_options(synchronize_session=False)
        )
        new = result.scalar_one_or_none()
        if new is None:
            return None
        old = deal.manager_read_at
        set_committed_value(deal, "manager_read_at", new)  # as written, nothing left to flush
        return old, new

    async def stage_by_key(self, key: str) -> Stage | None:
        """The stage with this key."""
        return (await self.session.execute(select(Stage).where(col(Stage.key) == key))).scalar_one_or_none()

    async def has_other_open_deal(self, conversation_id: int, deal_id: int) -> bool:
        """Whether the conversation has an open deal besides ``deal_id``."""
        query = select(col(Deal.id)).where(
            col(Deal.conversation_id) == conversation_id, col(Deal.status) == "open", col(Deal.id) != deal_id
        )
        return (await self.session.execute(query.limit(1))).first() is not None

    async def assign_if_unassigned(self, deal_id: int, user_id: int) -> bool:
        """Atomically give an unassigned deal to ``user_id``; False if it has an assignee (or none exists)."""
        result = await self.session.execute(
            update(Deal)
            .where(col(Deal.id) == deal_id, col(Deal.assignee_id).is_(None))
            .values(assignee_id=user_id, updated_at=utcnow())
            .returning(col(Deal.id))
            .execution_options(synchronize_session=False)
        )
        return result.first() is not None

    async def unassign_open_deals_of(self, user_id: int) -> list[int]:
        """Return every open deal of ``user_id`` to the unassigned pool; their ids."""
        result = await self.session.execute(
            update(Deal)
            .where(col(Deal.assignee_id) == user_id, col(Deal.status) == "open")
            .values(assignee_id=None, updated_at=utcnow())
            .returning(col(Deal.id))
            .execution_options(synchronize_session=False)
        )
        return [int(row[0]) for row in result.all() if row[0] is not None]

    async def messages(self, deal_id: int, *, limit: int, before: tuple[datetime, int] | None) -> list[Message]:
        """The latest ``limit`` messages of a deal (older than ``before``), newest first."""
        query = select(Message).where(col(Message.deal_id) == deal_id)
        if before is not None:
            query = query.where(sa.tuple_(col(Message.sent_at), col(Message.id)) < sa.tuple_(*before))
        query = query.order_by(col(Message.sent_at).desc(), col(Message.id).desc()).limit(limit)
        return list((await self.session.execute(query)).scalars().all())

    async def activities(self, deal_id: int, *, limit: int) -> Sequence[Activity]:
        """The latest ``limit`` activities of a deal, newest first."""
        query = (
            select(Activity)
            .where(col(Activity.deal_id) == deal_id)
            .order_by(col(Activity.created_at).desc(), col(Activity.id).desc())
            .limit(limit)
        )
        return (await self.session.execute(query)).scalars().all()

    def add_activity(self, deal_id: int, kind: str, actor: User | None, data: dict[str, Any]) -> None:
        """Record a timeline entry (written with the transaction)."""
        self.session.add(
            Activity(
                deal_id=deal_id,
                kind=kind,
                actor_user_id=actor.id if actor else None,
                data=data,
                created_at=utcnow(),
            )
        )
