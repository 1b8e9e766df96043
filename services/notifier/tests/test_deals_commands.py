"""``/deals`` and ``/stats`` against the Telegram fake, from the projection crm's events
built: a manager's deals awaiting a reply (longest waiting first, at most ten), the
unassigned ones, and their figures of today in the business time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.db import session_factory
from jggl_sandbox.telegram_fake import TelegramFakeServer, parse_html
from notifier.bot import texts
from notifier.bot.deals import duration
from notifier.business_time import BusinessClock
from notifier.process import NotifierService
from notifier.projection import Projection

from .conftest import APP_URL, Bus, StartNotifier, next_id
from .deal_events import Deal
from .test_actions import linked, said, types

ZONE = "Pacific/Kiritimati"  # UTC+14: "today" there is rarely today in UTC


@pytest.fixture
async def notifier(start_notifier: StartNotifier, telegram: TelegramFakeServer) -> NotifierService:
    telegram.fake.set_rate_limits(False)
    return await start_notifier(telegram_per_chat_per_second=0, business_timezone=ZONE)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (5, "<1 min"),
        (60, "1 min"),
        (59 * 60, "59 min"),
        (3600, "1 h"),
        (3 * 3600 + 300, "3 h 5 min"),
        (50 * 3600, "2 d 2 h"),
    ],
)
def test_durations(seconds: float, shown: str) -> None:
    assert duration(seconds) == shown


async def test_deals_lists_my_waiting_deals_longest_first(
    notifier: NotifierService, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    projection = Projection(session_factory(engine))
    user, chat = await linked(engine, telegram)
    now = datetime.now(UTC)
    waiting = []
    for minutes in range(12, 0, -1):  # twelve deals awaiting a reply, the oldest first
        deal = Deal(name=f"Customer {minutes}", assignee_id=user)
        await projection.apply(deal.received(now - timedelta(minutes=minutes * 10), f"<b>question</b> {minutes}"))
        waiting.append(deal)
    answered = Deal(name="Answered", assignee_id=user)
    await projection.apply(answered.received(now - timedelta(hours=5), "hi", first=True))
    await projection.apply(answered.sent(now - timedelta(hours=4), "hello", user))
    won = Deal(name="Won", assignee_id=user)
    await projection.apply(won.received(now - timedelta(hours=9), "deal!", first=True))
    await projection.apply(won.updated(now - timedelta(hours=8), status="won"))
    await projection.apply(Deal(name="Someone else's", assignee_id=next_id()).received(now, "x"))
    unassigned = [Deal(name=f"Free {i}") for i in range(3)]
    for deal in unassigned:
        await projection.apply(deal.received(now - timedelta(minutes=1), "anyone?", first=True))

    await types(bus, telegram, chat, "/deals")
    (answer,) = await said(telegram, chat, 1)
    blocks = answer.split("\n\n")
    assert blocks[0] == "📋 Your deals awaiting a reply, longest waiting first:"
    assert blocks[1].split("\n") == [
        "1. Customer 12 · Messenger · new",
        "⏱ waiting 2 h (since their last message)",
        "💬 <b>question</b> 12",
        "Open in CRM",
    ]
    assert [block.split("\n")[0] for block in blocks[1:11]] == [
        f"{i}. Customer {12 - i + 1} · Messenger · new" for i in range(1, 11)
    ]
    assert blocks[11] == "📥 Unassigned deals awaiting a reply: 3"
    (message,) = telegram.fake.sent(chat)
    links = [e["url"] for e in message.entities if e["type"] == "text_link"]
    assert links == [f"{APP_URL}/deals/{deal.id}" for deal in waiting[:10]]


async def test_deals_when_nothing_waits_and_for_an_unlinked_chat(
    notifier: NotifierService, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    _, chat = await linked(engine, telegram)
    await types(bus, telegram, chat, "/deals")
    (answer,) = await said(telegram, chat, 1)
    assert answer.startswith("✅ None of your deals is awaiting a reply.\n\n📥 Unassigned deals awaiting a reply: ")

    stranger = next_id()
    await types(bus, telegram, stranger, "/deals")
    await types(bus, telegram, stranger, "/stats")
    assert await said(telegram, stranger, 2) == [parse_html(texts.INSTRUCTIONS)[0]] * 2


async def test_stats_counts_my_day_in_the_business_time_zone(
    notifier: NotifierService, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    projection = Projection(session_factory(engine))
    user, chat = await linked(engine, telegram)
    day_start = BusinessClock(ZONE).day_start()
    now = datetime.now(UTC)
    deal = Deal(assignee_id=user)
    await projection.apply(deal.received(day_start - timedelta(hours=2), "yesterday's question", first=True))
    await projection.apply(deal.sent(day_start - timedelta(minutes=1), "yesterday", user, response_seconds=5000))
    for seconds in (60, 600, 180):  # today: the median is 3 min
        await projection.apply(deal.sent(day_start + timedelta(seconds=1), "today", user, response_seconds=seconds))
    await projection.apply(deal.sent(now, "by someone else", next_id(), response_seconds=1))
    waiting = Deal(assignee_id=user)
    await projection.apply(waiting.received(now - timedelta(minutes=3), "hello?", first=True))
    closed = Deal(assignee_id=user, status="lost")
    await projection.apply(closed.created(now - timedelta(hours=1)))

    await types(bus, telegram, chat, "/stats")
    (answer,) = await said(telegram, chat, 1)
    assert answer == (
        f"📊 Your day (today, {ZONE})\n"
        "Replies sent: 3\n"
        "Median response time: 3 min\n"
        "Open deals assigned to you: 2\n"
        "Awaiting your reply now: 1"
    )
