"""The daily digest: each active user's day in the business time zone, once per day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlmodel import col

from crm.models import OutboxEvent, Task
from crm.stats.digest import stage_daily_digests
from jggl_common.contracts import DailyDigest, DailyDigestData
from jggl_common.db import session_scope

from ..api.factories import create_deal, create_message, create_user
from .conftest import Api

TOKYO = ZoneInfo("Asia/Tokyo")  # UTC+9, no daylight saving
DAY = date(2026, 12, 9)


def tokyo(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TOKYO)


async def digests(api: Api) -> dict[int, DailyDigestData]:
    async with session_scope(api.sessions) as session:
        payloads = await session.execute(
            select(col(OutboxEvent.payload)).where(col(OutboxEvent.subject) == DailyDigest.subject)
        )
        events = [DailyDigest.model_validate_json(payload) for payload in payloads.scalars()]
    assert len({(e.data.user_id, e.data.day) for e in events}) == len(events), "a digest was staged twice"
    return {event.data.user_id: event.data for event in events}


async def test_each_user_gets_their_day_in_the_business_time_zone(api: Api) -> None:
    yesterday = DAY - timedelta(days=1)
    async with session_scope(api.sessions) as session:
        anna = await create_user(session, name="Anna")
        boris = await create_user(session, name="Boris")
        gone = await create_user(session, name="Gone", is_active=False)
        # Anna: two customers waiting (one past the SLA), one answered deal, one won.
        oldest = await create_deal(
            session, assignee=anna, contact_name="Oldest Olga", awaiting_reply_since=tokyo(yesterday, 10)
        )
        oldest.sla_breach_since = oldest.awaiting_reply_since
        await create_deal(session, assignee=anna, contact_name="Newer Nick", awaiting_reply_since=tokyo(DAY, 8))
        answered = await create_deal(session, assignee=anna)
        await create_deal(session, assignee=anna, status="won")
        # Replies yesterday in Tokyo after 60 and 120 seconds (median 90): the first one was
        # still the day before in UTC; the one at 00:30 today is not yesterday's.
        for sent_at, seconds in ((tokyo(yesterday, 0, 30), 60), (tokyo(yesterday, 23, 30), 120)):
            await create_message(
                session, answered, direction="out", author=anna, sent_at=sent_at, response_seconds=seconds
            )
        await create_message(session, answered, direction="out", author=anna, sent_at=tokyo(DAY, 0, 30))
        # Tasks due today in Tokyo: one of Anna's own, one on her deal without an assignee,
        # one tomorrow and one done (not counted), one for Boris.
        for title, due, assignee, done in (
            ("call", tokyo(DAY, 11), None, False),
            ("mine", tokyo(DAY, 23, 59), anna, False),
            ("tomorrow", tokyo(DAY + timedelta(days=1), 0, 1), anna, False),
            ("finished", tokyo(DAY, 12), anna, True),
            ("boris", tokyo(DAY, 12), boris, False),
        ):
            assert answered.id is not None
            session.add(
                Task(
                    deal_id=answered.id,
                    title=title,
                    due_at=due,
                    assignee_id=assignee.id if assignee else None,
                    done=done,
                )
            )
    for _ in range(2):  # a repeated tick stages nothing new
        async with session_scope(api.sessions) as session:
            await stage_daily_digests(session, DAY, TOKYO)
    found = await digests(api)
    assert {anna.id, boris.id} <= set(found)
    assert gone.id not in found
    assert anna.id is not None
    assert boris.id is not None
    a = found[anna.id]
    assert (a.day, a.timezone) == (DAY, "Asia/Tokyo")
    assert (a.open_deals, a.awaiting_reply, a.sla_breaches, a.tasks_due_today) == (3, 2, 1, 2)
    assert (a.replies_yesterday, a.median_response_seconds_yesterday) == (2, 90)
    assert [(d.display_name, d.waiting_since) for d in a.longest_waiting] == [
        ("Oldest Olga", tokyo(yesterday, 10).astimezone(UTC)),
        ("Newer Nick", tokyo(DAY, 8).astimezone(UTC)),
    ]
    b = found[boris.id]
    assert (b.open_deals, b.awaiting_reply, b.tasks_due_today, b.replies_yesterday) == (0, 0, 1, 0)
    assert b.median_response_seconds_yesterday is None
    assert b.longest_waiting == []
