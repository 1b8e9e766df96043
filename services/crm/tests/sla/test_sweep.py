"""The SLA sweep on a real schema: once per waiting episode and level, nothing for deals
that are answered, closed or not late yet, and a reply starts the count again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.sla import BusinessHours, sweep_sla
from jggl_common.contracts import SlaBreached
from jggl_common.db import session_scope

from ..api.factories import create_deal, create_user

ALWAYS = BusinessHours.from_settings("00:00-23:59", "UTC", frozenset(range(7)))
OFFICE = BusinessHours.from_settings("09:00-18:00", "UTC")
NOW = datetime(2026, 12, 9, 12, 0, tzinfo=UTC)  # a Wednesday


async def announced(sessions: async_sessionmaker[AsyncSession]) -> list[SlaBreached]:
    async with session_scope(sessions) as session:
        rows = (
            await session.execute(
                text("SELECT payload FROM outbox WHERE subject = 'crm.deal.sla_breached' ORDER BY id")
            )
        ).scalars()
        return [SlaBreached.model_validate_json(row) for row in rows]


async def sweep(sessions: async_sessionmaker[AsyncSession], now: datetime = NOW, hours: BusinessHours = ALWAYS) -> None:
    async with session_scope(sessions) as session:
        await sweep_sla(session, hours, 30, now)


async def test_breach_then_escalation_once_per_episode(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with session_scope(sessions) as session:
        manager = await create_user(session)
        late = await create_deal(
            session, assignee=manager, awaiting_reply_since=NOW - timedelta(minutes=45), contact_name="Late Lena"
        )
        very_late = await create_deal(session, awaiting_reply_since=NOW - timedelta(minutes=90))
        await create_deal(session, awaiting_reply_since=NOW - timedelta(minutes=10))  # not late yet
        await create_deal(session, awaiting_reply_since=None)  # answered
        await create_deal(session, status="won", awaiting_reply_since=NOW - timedelta(hours=5))  # closed
    await sweep(sessions)
    await sweep(sessions)  # a repeated tick announces nothing again
    events = await announced(sessions)
    got = sorted((e.data.deal.id, e.data.level) for e in events)
    assert got == sorted([(late.id, "breach"), (very_late.id, "breach"), (very_late.id, "escalation")])
    lena = next(e for e in events if e.data.deal.id == late.id)
    assert lena.data.deal.assignee_id == manager.id
    assert lena.data.deal.contact.display_name == "Late Lena"
    assert lena.data.waited_minutes == 45
    assert lena.data.sla_minutes == 30
    # Later, the first deal reaches twice the SLA: only its escalation is new.
    await sweep(sessions, NOW + timedelta(minutes=20))
    events = await announced(sessions)
    assert sorted((e.data.deal.id, e.data.level) for e in events if e.data.deal.id == late.id) == [
        (late.id, "breach"),
        (late.id, "escalation"),
    ]


async def test_a_new_waiting_episode_is_announced_again(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with session_scope(sessions) as session:
        deal = await create_deal(session, awaiting_reply_since=NOW - timedelta(minutes=40))
    await sweep(sessions)
    # A reply, then the customer writes again: a new episode.
    async with session_scope(sessions) as session:
        await session.execute(
            text("UPDATE deals SET awaiting_reply_since = :t WHERE id = :id"),
            {"t": NOW + timedelta(minutes=5), "id": deal.id},
        )
    await sweep(sessions, NOW + timedelta(minutes=40))
    breaches = [e for e in await announced(sessions) if e.data.level == "breach"]
    assert [e.data.waiting_since for e in breaches] == [NOW - timedelta(minutes=40), NOW + timedelta(minutes=5)]
    assert len({e.id for e in breaches}) == 2


async def test_only_business_hours_count(sessions: async_sessionmaker[AsyncSession]) -> None:
    monday_morning = datetime(2026, 12, 14, 9, 20, tzinfo=UTC)
    async with session_scope(sessions) as session:
        # Wrote on Friday at 17:50: 10 working minutes on Friday, 20 on Monday = 30.
        friday = await create_deal(session, awaiting_reply_since=datetime(2026, 12, 11, 17, 50, tzinfo=UTC))
        # Wrote on Saturday: only Monday's 20 minutes count.
        await create_deal(session, awaiting_reply_since=datetime(2026, 12, 12, 11, 0, tzinfo=UTC))
    await sweep(sessions, monday_morning, OFFICE)
    assert [(e.data.deal.id, e.data.waited_minutes) for e in await announced(sessions)] == [(friday.id, 30)]


async def test_two_sweeps_at_once_announce_each_deal_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with session_scope(sessions) as session:
        for minutes in range(35, 35 + 40):
            await create_deal(session, awaiting_reply_since=NOW - timedelta(minutes=minutes))
    await asyncio.gather(sweep(sessions), sweep(sessions), sweep(sessions))
    events = await announced(sessions)
    assert len(events) == 40 + 15  # every deal waiting 35-74 minutes; those at 60 or more escalated too
    assert len({(e.data.deal.id, e.data.level) for e in events}) == len(events)
