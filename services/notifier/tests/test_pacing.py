"""Delivery rules against the Telegram fake: sends paced to the per-chat limit (no 429 from
the fake's rate limiter), a 429's ``retry_after`` waited out and the send repeated once,
and a chat that blocked the bot tried once, then skipped until it sends ``/start`` again."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_sandbox.telegram_fake import TelegramFakeServer
from notifier.notifications import BLOCKED_REASON
from notifier.pacing import Pacer
from notifier.store import Link
from notifier.telegram import RETRY_AFTERS

from .conftest import Bus, StartNotifier, eventually, new_lead, rows, update_received
from .test_notifications import linked, settled


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_chat_gets_its_burst_then_one_slot_per_interval() -> None:
    clock = Clock()
    pacer = Pacer(1.0, 0, per_chat_burst=3, clock=clock)
    assert [pacer.reserve(1) for _ in range(5)] == [0.0, 0.0, 0.0, 1.0, 2.0]
    assert pacer.reserve(2) == 0.0  # another chat has its own bucket
    clock.now += 10  # idle long enough: the burst is back
    assert [pacer.reserve(1) for _ in range(4)] == [0.0, 0.0, 0.0, 1.0]


def test_the_bot_wide_budget_spaces_every_chat() -> None:
    clock = Clock()
    pacer = Pacer(1.0, 10.0, global_burst=1, clock=clock)
    waits = [pacer.reserve(chat) for chat in range(5)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_idle_chats_are_forgotten() -> None:
    clock = Clock()
    pacer = Pacer(1.0, 0, per_chat_burst=1, clock=clock)
    for chat in range(1024):
        pacer.reserve(chat)
    clock.now += 2
    pacer.reserve("busy")
    pacer.reserve("busy")
    pacer.reserve(5000)  # the table is full: the idle chats go
    assert len(pacer) == 2
    assert pacer.reserve("busy") > 0  # an active chat keeps its place


def pacing_metrics() -> dict[str, float]:
    def value(name: str, **labels: str) -> float:
        found = REGISTRY.get_sample_value(name, labels)
        assert found is not None, f"{name}{labels} is not registered"
        return found

    return {
        "chat": value("jggl_notifier_pacing_waiting", scope="chat"),
        "global": value("jggl_notifier_pacing_waiting", scope="global"),
        "longest": value("jggl_notifier_pacing_longest_chat_queue"),
        "count": value("jggl_notifier_pacing_wait_seconds_count"),
        "sum": value("jggl_notifier_pacing_wait_seconds_sum"),
    }


async def test_the_gauges_count_sends_waiting_by_limit_and_the_longest_chat_queue() -> None:
    before = pacing_metrics()
    assert before["chat"] == before["global"] == before["longest"] == 0
    # one chat limited to 10/s with no burst: 4 sends, 3 of them wait for the chat's slot
    per_chat = Pacer(10.0, 0, per_chat_burst=1)
    # the bot limited to 10/s: one send to each of 3 chats, 2 wait for the bot's slot
    bot_wide = Pacer(0, 10.0, global_burst=1)
    waits = [
        asyncio.create_task(coroutine)
        for coroutine in (
            *(per_chat.wait("flooded") for _ in range(4)),
            *(bot_wide.wait(chat) for chat in (1, 2, 3)),
        )
    ]
    await asyncio.sleep(0.02)  # every send has reserved its slot; the first of each went at once

    during = pacing_metrics()
    assert (during["chat"], during["global"], during["longest"]) == (3, 2, 3)
    await asyncio.gather(*waits)

    after = pacing_metrics()
    assert (after["chat"], after["global"], after["longest"]) == (0, 0, 0)
    assert after["count"] - before["count"] == 7
    # waited: 0.1 + 0.2 + 0.3 for the chat, 0.1 + 0.2 for the bot
    assert after["sum"] - before["sum"] == pytest.approx(0.9, abs=0.05)


async def test_a_send_waits_for_its_chat_then_for_the_bot_and_a_cancelled_one_leaves_no_trace() -> None:
    pacer = Pacer(2.0, 2.0, per_chat_burst=1, global_burst=1)
    assert pacer.reserve("busy") == 0.0  # the chat's and the bot's next slots: in 0.5 s
    assert pacer.reserve("other") == pytest.approx(0.5, abs=0.01)  # takes the bot's, next in 1 s
    task = asyncio.create_task(pacer.wait("busy"))  # 0.5 s for the chat, then 0.5 s for the bot

    def state() -> tuple[int, int, int]:
        return pacer.waiting("chat"), pacer.waiting("global"), pacer.longest_queue()

    await asyncio.sleep(0.25)
    assert state() == (1, 0, 1)
    await asyncio.sleep(0.5)
    assert state() == (0, 1, 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert state() == (0, 0, 0)


async def test_200_notifications_for_one_chat_are_spaced_to_the_per_chat_limit(
    start_notifier: StartNotifier, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    rate = 25.0
    # the fake limits one chat to the same rate, with a burst of 10 (ours is 3): room for
    # the jitter of a busy machine, while 200 unpaced sends would be 429s at once
    telegram.fake.set_rate_limits(
        per_chat_per_second=rate, per_chat_burst=10, global_per_second=1000, global_burst=1000
    )
    service = await start_notifier(telegram_per_chat_per_second=rate, telegram_global_per_second=1000)
    user, chat = await linked(engine, telegram)
    notifier = service.notifiers.new_messages

    started = time.monotonic()
    await asyncio.gather(
        *(notifier.deliver(f"pace-{chat}-{n}", [Link(user, chat, "M", "manager")], f"n{n}", None) for n in range(200))
    )
    elapsed = time.monotonic() - started

    calls = telegram.fake.calls("sendMessage")
    assert [c.status for c in calls] == [200] * 200  # not one 429
    times = sorted(m.at for m in telegram.fake.sent(chat))
    assert len(times) == 200
    # after a burst of 3, one message per 1/rate: any 10 in a row span at least 7 intervals
    gaps = [later - earlier for earlier, later in zip(times, times[10:], strict=False)]
    assert min(gaps) >= 7 / rate - 0.08, min(gaps)
    assert times[-1] - times[0] >= 197 / rate - 0.05
    assert elapsed < 197 / rate + 3.0  # paced, not slower
    (count,) = await rows(engine, "SELECT count(*) AS n FROM notifications WHERE status = 'sent'")
    assert count == {"n": 200}


async def test_a_429_with_retry_after_3_is_resent_after_3_seconds_once(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    _, chat = await linked(engine, telegram)
    before = RETRY_AFTERS._value.get()
    telegram.fake.fail_next(1, retry_after=3, chat_id=chat)
    event = new_lead()
    await bus.publish(event)
    assert await settled(engine, event.id, 1) == {chat: "sent"}

    calls = telegram.fake.calls("sendMessage")
    assert [call.status for call in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 3.0
    assert len(telegram.fake.sent(chat)) == 1
    assert RETRY_AFTERS._value.get() == before + 1
    (row,) = await rows(engine, "SELECT attempts, error FROM notifications")
    assert row == {"attempts": 1, "error": None}


async def test_a_blocked_chat_is_tried_once_then_skipped_until_start(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    user, chat = await linked(engine, telegram)
    telegram.fake.block(chat)

    first = new_lead(assignee_id=user)
    await bus.publish(first)
    assert await settled(engine, first.id, 1) == {chat: "failed"}
    (link,) = await rows(engine, "SELECT blocked_at FROM links WHERE chat_id = $1", chat)
    assert link["blocked_at"] is not None

    later = [new_lead(assignee_id=user) for _ in range(3)]
    await bus.publish(*later)
    for event in later:
        assert await settled(engine, event.id, 1) == {chat: "skipped"}
    skipped = await rows(engine, "SELECT error, attempts FROM notifications WHERE status = 'skipped'")
    assert skipped == [{"error": BLOCKED_REASON, "attempts": 0}] * 3
    to_chat = [c for c in telegram.fake.calls("sendMessage") if str(c.params.get("chat_id")) == str(chat)]
    assert [c.status for c in to_chat] == [403]  # one attempt, then no call at all

    # the user unblocks the bot and sends /start: notified again
    telegram.fake.unblock(chat)
    await bus.publish(update_received(telegram.fake.user_sends(chat, "/start")))

    async def cleared() -> bool:
        found = await rows(engine, "SELECT blocked_at FROM links WHERE chat_id = $1", chat)
        return found == [{"blocked_at": None}]

    await eventually(cleared)
    again = new_lead(assignee_id=user)
    await bus.publish(again)
    assert await settled(engine, again.id, 1) == {chat: "sent"}
