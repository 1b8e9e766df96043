"""Each manager's daily digest (``crm.digest.daily``): their day at a glance, in the
business time zone, staged once per manager and day.

Open deals, customers waiting for a reply (and how many of those waits passed the SLA),
tasks due today, yesterday's replies with their median response time, and the deals
waiting longest. Every active user gets one; the event id is derived from the user and
the day, so a repeated tick stages nothing new.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from crm.deals.events import display_name, row_key
from crm.models import Contact, Deal, Stage, Task, User
from jggl_common.contracts import DailyDigest, DailyDigestData, DigestDeal, stable_event_id
from jggl_common.outbox import stage_all

from .repository import StatsRepository

__all__ = ["LONGEST_WAITING", "stage_daily_digests"]

PRODUCER = "crm"
LONGEST_WAITING = 5


_ASSIGNED_AND_WAITING = (
    col(Deal.status) == "open",
    col(Deal.awaiting_reply_since).is_not(None),
    col(Deal.assignee_id).is_not(None),
)


def _day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=zone)
    return start, datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)


async def _waiting(session: AsyncSession) -> dict[int, tuple[int, int]]:
    """Per assignee: open deals whose customer waits, and how many of those waits are past the SLA."""
    late = sa.func.count().filter(col(Deal.sla_breach_since) == col(Deal.awaiting_reply_since))
    rows = await session.execute(
        select(col(Deal.assignee_id), sa.func.count(), late)
        .where(
            col(Deal.status) == "open", col(Deal.awaiting_reply_since).is_not(None), col(Deal.assignee_id).is_not(None)
        )
        .group_by(col(Deal.assignee_id))
    )
    return {int(user or 0): (int(waiting), int(breached)) for user, waiting, breached in rows.all()}


async def _longest_waiting(session: AsyncSession) -> dict[int, list[DigestDeal]]:
    """Per assignee: the open deals waiting longest (at most :data:`LONGEST_WAITING`)."""
    ranked = (
        select(
            col(Deal.id).label("deal_id"),
            col(Deal.assignee_id).label("assignee_id"),
            col(Deal.platform).label("platform"),
            col(Deal.awaiting_reply_since).label("waiting_since"),
            col(Deal.contact_id).label("contact_id"),
            col(Deal.stage_id).label("stage_id"),
            sa.func.row_number()
            .over(partition_by=col(Deal.assignee_id), order_by=(col(Deal.awaiting_reply_since), col(Deal.id)))
            .label("rank"),
        )
        .where(
            col(Deal.status) == "open", col(Deal.awaiting_reply_since).is_not(None), col(Deal.assignee_id).is_not(None)
        )
        .subquery()
    )
    rows = await session.execute(
        select(ranked, Contact, col(Stage.key))
        .join(Contact, col(Contact.id) == ranked.c.contact_id)
        .join(Stage, col(Stage.id) == ranked.c.stage_id)
        .where(ranked.c.rank <= LONGEST_WAITING)
        .order_by(ranked.c.assignee_id, ranked.c.rank)
    )
    found: dict[int, list[DigestDeal]] = defaultdict(list)
    for row in rows.all():
        found[int(row.assignee_id)].append(
            DigestDeal(
                deal_id=row.deal_id,
                display_name=display_name(row.Contact),
                platform=row.platform,
                stage=row.key,
                waiting_since=row.waiting_since,
            )
        )
    return found


async def _tasks_due(session: AsyncSession, start: datetime, end: datetime) -> dict[int, int]:
    """Per user: open tasks due in [start, end), a task without an assignee counting for its deal's."""
    owner = sa.func.coalesce(col(Task.assignee_id), col(Deal.assignee_id))
    rows = await session.execute(
        select(owner, sa.func.count())
        .join(Deal, col(Deal.id) == col(Task.deal_id))
        .where(sa.not_(col(Task.done)), col(Task.due_at) >= start, col(Task.due_at) < end, owner.is_not(None))
        .group_by(owner)
    )
    return {int(user): int(count) for user, count in rows.all()}


async def stage_daily_digests(
    session: AsyncSession, day: date, zone: ZoneInfo, *, correlation_id: str | None = None
) -> int:
    """Stage the digest of ``day`` (in ``zone``) for every active user; how many users (the
    caller commits; a digest staged before is not published again)."""
    today_start, today_end = _day_bounds(day, zone)
    yesterday_start, _ = _day_bounds(day - timedelta(days=1), zone)
    stats = StatsRepository(session)
    users = list((await session.execute(select(User).where(col(User.is_active)).order_by(col(User.id)))).scalars())
    replies = await stats.replies(yesterday_start, today_start, None)
    open_deals = await stats.open_deals(None)
    waiting = await _waiting(session)
    longest = await _longest_waiting(session)
    tasks = await _tasks_due(session, today_start, today_end)
    digests: list[tuple[DailyDigest, None]] = []
    for user in users:
        assert user.id is not None
        figures = replies.get((user.id, None))
        median = figures.median_seconds if figures is not None else None
        awaiting, breached = waiting.get(user.id, (0, 0))
        event = DailyDigest(
            id=stable_event_id(f"crm.digest.daily:{row_key(user.id, user.created_at)}:{day.isoformat()}"),
            producer=PRODUCER,
            correlation_id=correlation_id,
            data=DailyDigestData(
                user_id=user.id,
                day=day,
                timezone=zone.key,
                open_deals=open_deals.get(user.id, 0),
                awaiting_reply=awaiting,
                sla_breaches=breached,
                tasks_due_today=tasks.get(user.id, 0),
                replies_yesterday=figures.replies if figures is not None else 0,
                median_response_seconds_yesterday=round(median) if median is not None else None,
                longest_waiting=longest.get(user.id, []),
            ),
        )
        digests.append((event, None))
    await stage_all(session, digests)
    return len(digests)
