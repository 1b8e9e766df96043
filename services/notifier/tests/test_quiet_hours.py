"""Quiet hours: the policy and its clock arithmetic as pure functions (midnight spans, DST
nights), then against the Telegram fake: a notification in quiet hours waits and is sent
once when they end, by one of two sweeping replicas, in order; nothing is lost when the
user changes the hours or mutes meanwhile."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.contracts import TaskDue
from jggl_common.db import session_factory
from jggl_sandbox.telegram_fake import TelegramFakeServer
from notifier.notifications import UNLINKED_REASON
from notifier.preferences import (
    KIND_OFF_REASON,
    MUTED_REASON,
    Defer,
    Preferences,
    QuietHoursError,
    Send,
    Skip,
    decide,
    parse_quiet_hours,
    quiet_until,
)
from notifier.reminder_texts import render_task_due
from notifier.store import Store

from .conftest import APP_URL, Bus, StartNotifier, eventually, rows
from .test_event_notifications import linked
from .test_linking import answers, user_types
from .test_reminders import task_due

BERLIN = ZoneInfo("Europe/Berlin")
UTC_ZONE = ZoneInfo("UTC")


def berlin(year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, fold: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN, fold=fold).astimezone(UTC)


# ---------------------------------------------------------------------------- pure


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (berlin(2026, 12, 7, 21, 59), None),
        (berlin(2026, 12, 7, 22, 0), berlin(2026, 12, 8, 8, 0)),
        (berlin(2026, 12, 7, 23, 30), berlin(2026, 12, 8, 8, 0)),
        (berlin(2026, 12, 8, 0, 0), berlin(2026, 12, 8, 8, 0)),
        (berlin(2026, 12, 8, 7, 59), berlin(2026, 12, 8, 8, 0)),
        (berlin(2026, 12, 8, 8, 0), None),
        (berlin(2026, 12, 8, 12, 0), None),
    ],
)
def test_quiet_hours_spanning_midnight(now: datetime, expected: datetime | None) -> None:
    assert quiet_until(now, time(22), time(8), BERLIN) == expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (berlin(2026, 12, 7, 12, 59), None),
        (berlin(2026, 12, 7, 13, 0), berlin(2026, 12, 7, 14, 30)),
        (berlin(2026, 12, 7, 14, 29), berlin(2026, 12, 7, 14, 30)),
        (berlin(2026, 12, 7, 14, 30), None),
    ],
)
def test_quiet_hours_within_a_day(now: datetime, expected: datetime | None) -> None:
    assert quiet_until(now, time(13), time(14, 30), BERLIN) == expected


def test_the_zone_decides_what_22_00_means() -> None:
    now = datetime(2026, 12, 7, 21, 30, tzinfo=UTC)  # 22:30 in Berlin, 21:30 in UTC
    assert quiet_until(now, time(22), time(8), BERLIN) == berlin(2026, 12, 8, 8, 0)
    assert quiet_until(now, time(22), time(8), UTC_ZONE) is None


def test_a_spring_forward_night_is_an_hour_shorter() -> None:
    # Berlin 2026-03-29: 02:00 CET becomes 03:00 CEST.
    now = berlin(2026, 3, 28, 23, 0)
    until = quiet_until(now, time(22), time(8), BERLIN)
    assert until == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)  # 08:00 CEST
    assert until - now == timedelta(hours=8)


def test_a_fall_back_night_is_an_hour_longer() -> None:
    # Berlin 2026-10-25: 03:00 CEST becomes 02:00 CET.
    now = berlin(2026, 10, 24, 23, 0)
    until = quiet_until(now, time(22), time(8), BERLIN)
    assert until == datetime(2026, 10, 25, 7, 0, tzinfo=UTC)  # 08:00 CET
    assert until - now == timedelta(hours=10)


def test_an_end_in_the_repeated_hour_is_its_second_showing_once_the_first_has_passed() -> None:
    start, end = time(1), time(2, 30)
    first_pass = berlin(2026, 10, 25, 2, 10)  # CEST
    assert quiet_until(first_pass, start, end, BERLIN) == berlin(2026, 10, 25, 2, 30)
    second_pass = berlin(2026, 10, 25, 2, 10, fold=1)  # CET, after 02:30 CEST went by
    assert quiet_until(second_pass, start, end, BERLIN) == berlin(2026, 10, 25, 2, 30, fold=1)


def test_an_end_in_the_skipped_hour_is_read_with_the_offset_before_the_change() -> None:
    until = quiet_until(berlin(2026, 3, 29, 1, 0), time(0), time(2, 30), BERLIN)
    assert until == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST, the clock never shows 02:30


def test_equal_start_and_end_is_never_quiet() -> None:
    assert quiet_until(berlin(2026, 12, 7, 22, 0), time(22), time(22), BERLIN) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("22:00-08:00", (time(22), time(8))),
        (" 22-8 ", (time(22), time(8))),
        ("7:30–9", (time(7, 30), time(9))),
        ("13:00 - 24:00", (time(13), time(0))),
    ],
)
def test_quiet_hours_are_parsed(text: str, expected: tuple[time, time]) -> None:
    assert parse_quiet_hours(text) == expected


@pytest.mark.parametrize("text", ["", "tonight", "22:00", "25:00-08:00", "22:61-08:00", "8-8", "22:00-08:00-09:00"])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(QuietHoursError):
        parse_quiet_hours(text)


def test_the_policy() -> None:
    now = berlin(2026, 12, 7, 23, 0)
    quiet = Preferences(quiet_start=time(22), quiet_end=time(8))
    assert decide(Preferences(), "new_lead", now, BERLIN) == Send()
    assert decide(Preferences(muted=True), "new_lead", now, BERLIN) == Skip(MUTED_REASON)
    assert decide(Preferences(muted_kinds=frozenset({"new_lead"})), "new_lead", now, BERLIN) == Skip(KIND_OFF_REASON)
    assert decide(Preferences(muted_kinds=frozenset({"new_lead"})), "task_due", now, BERLIN) == Send()
    assert decide(quiet, "new_lead", now, BERLIN) == Defer(berlin(2026, 12, 8, 8, 0))
    assert decide(Preferences(muted=True), "unlinked", now, BERLIN) == Send()
    assert decide(Preferences(muted=True), "action_answer", now, BERLIN) == Send()
    assert decide(Preferences(muted=True), "reply_failed", now, BERLIN, essential=True) == Send()
    assert decide(quiet, "reply_failed", now, BERLIN, essential=True) == Send()


# ---------------------------------------------------------------------------- against the fake


async def quiet_for(store: Store, user: int, seconds: float) -> datetime:
    """Quiet hours (the business zone is UTC here) from an hour ago until ``seconds`` from
    now; their end."""
    now = datetime.now(UTC)
    end = now + timedelta(seconds=seconds)
    await store.set_quiet_hours(user, (now - timedelta(hours=1)).time(), end.time())
    return end


async def notifications_of(engine: AsyncEngine, chat: int) -> list[dict[str, Any]]:
    return await rows(
        engine,
        "SELECT event_id, status, not_before, markup FROM notifications WHERE chat_id = $1 ORDER BY id",
        chat,
    )


async def held(engine: AsyncEngine, chat: int, count: int) -> list[dict[str, Any]]:
    """The chat's ``count`` notifications, once all are deferred."""

    async def check() -> list[dict[str, Any]] | None:
        found = await notifications_of(engine, chat)
        return found if len(found) == count and all(row["status"] == "deferred" for row in found) else None

    return list(await eventually(check))


async def all_sent(engine: AsyncEngine, chat: int, count: int) -> None:
    async def check() -> bool:
        return [row["status"] for row in await notifications_of(engine, chat)] == ["sent"] * count

    await eventually(check)


async def test_notifications_in_quiet_hours_wait_and_are_sent_once_in_order_when_they_end(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    first = await start_notifier(quiet_hours_sweep_seconds=0.1)
    await start_notifier(quiet_hours_sweep_seconds=0.1)  # a second replica sweeping too
    store = Store(session_factory(engine))
    user, chat = await linked(engine, telegram)
    end = await quiet_for(store, user, 3)
    events = {
        event.id: event
        for event in (task_due(assignee_id=user, deal_assignee_id=None, title=f"Task {n}") for n in range(4))
    }
    await bus.publish(*events.values())

    waiting = await held(engine, chat, 4)
    assert telegram.fake.sent(chat) == []
    assert {row["not_before"] for row in waiting} == {end}
    titles = [events[row["event_id"]].data.title for row in waiting]  # the order they came in
    _, markup = render_task_due(events[waiting[0]["event_id"]].data, APP_URL, ZoneInfo("UTC"), datetime.now(UTC))
    assert waiting[0]["markup"] == markup.model_dump(mode="json", exclude_none=True)

    await all_sent(engine, chat, 4)
    sent = telegram.fake.sent(chat)
    assert [message.plain_text.splitlines()[1] for message in sent] == titles
    assert all(message.at >= end.timestamp() for message in sent)
    assert sent[0].reply_markup == waiting[0]["markup"]
    for event in events.values():  # handled again (a redelivery): nothing more
        await first.notifiers.tasks_due.handle(event)
    assert len(telegram.fake.sent(chat)) == 4


async def test_quiet_hours_switched_off_let_what_waits_follow_at_once(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier(quiet_hours_sweep_seconds=0.1)
    store = Store(session_factory(engine))
    user, chat = await linked(engine, telegram)
    await quiet_for(store, user, 3600)
    events = [task_due(assignee_id=user, deal_assignee_id=None) for _ in range(2)]
    await bus.publish(*events)
    await held(engine, chat, 2)

    await user_types(bus, telegram, chat, "/quiet off")
    await all_sent(engine, chat, 2)
    shown = await answers(telegram, chat, 3)  # the answer and the two, in whatever order they raced
    assert "☀️ Quiet hours off: notifications arrive as they happen.\n2 waiting notifications will follow now." in shown
    assert sum(text.startswith("📌 Task due") for text in shown) == 2


async def test_what_waits_for_a_muted_user_follows_the_unmute(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    notifier = await start_notifier(quiet_hours_sweep_seconds=0.1)
    store = Store(session_factory(engine))
    user, chat = await linked(engine, telegram)
    end = await quiet_for(store, user, 2)
    event = task_due(assignee_id=user, deal_assignee_id=None)
    await bus.publish(event)
    await held(engine, chat, 1)
    await user_types(bus, telegram, chat, "/mute")
    await answers(telegram, chat)

    async def quiet_hours_over() -> bool:
        return datetime.now(UTC) > end

    await eventually(quiet_hours_over)
    assert await notifier.notifiers.deferred.sweep() == 0  # a muted user's are not taken
    assert [row["status"] for row in await notifications_of(engine, chat)] == ["deferred"]

    await user_types(bus, telegram, chat, "/unmute")
    await all_sent(engine, chat, 1)
    shown = (await answers(telegram, chat, 3))[1:]  # the answer and the task, in whatever order they raced
    assert "🔔 Notifications resumed.\n1 waiting notification will follow now." in shown
    assert sum(text.startswith("📌 Task due") for text in shown) == 1


async def test_held_notifications_meet_the_same_failures_as_the_others(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    notifier = await start_notifier(quiet_hours_sweep_seconds=0.1, telegram_max_retry_after=0)  # a 429 fails at once
    notifier.notifiers.deferred.retry_base_seconds = 0.2
    store = Store(session_factory(engine))
    chats: dict[str, int] = {}
    events: dict[str, TaskDue] = {}
    for name in ("blocked", "throttled", "unlinked"):
        user, chats[name] = await linked(engine, telegram)
        await quiet_for(store, user, 2)
        events[name] = task_due(assignee_id=user, deal_assignee_id=None)
    await bus.publish(*events.values())
    for chat in chats.values():
        await held(engine, chat, 1)
    telegram.fake.block(chats["blocked"])
    telegram.fake.fail_next(2, retry_after=1, chat_id=chats["throttled"])
    await store.unlink_chat(chats["unlinked"])

    async def outcome(chat: int) -> dict[str, Any]:
        """The chat's one notification once it is no longer waiting."""

        async def check() -> dict[str, Any] | None:
            (row,) = await rows(
                engine, "SELECT status, retryable, error, attempts FROM notifications WHERE chat_id = $1", chat
            )
            return row if row["status"] not in ("deferred", "pending") else None

        return dict(await eventually(check))

    blocked, unlinked, throttled = [await outcome(chats[name]) for name in ("blocked", "unlinked", "throttled")]
    assert (blocked["status"], blocked["retryable"]) == ("failed", False)
    assert "blocked" in blocked["error"]
    assert await rows(engine, "SELECT blocked_at IS NOT NULL AS b FROM links WHERE chat_id = $1", chats["blocked"]) == [
        {"b": True}
    ]
    assert (unlinked["status"], unlinked["error"]) == ("skipped", UNLINKED_REASON)
    assert (throttled["status"], throttled["attempts"]) == ("sent", 3)
    assert len(telegram.fake.sent(chats["throttled"])) == 1
    assert telegram.fake.sent(chats["blocked"]) == telegram.fake.sent(chats["unlinked"]) == []
