"""The scheduler's reminders as crm publishes them (an overdue reply and its escalation, a
task due, a daily digest), against the Telegram fake: each to the right chats once, text
escaped, times in the business time zone; and the delivery-time metric."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.contracts import (
    ContactRef,
    DailyDigest,
    DailyDigestData,
    DealSnapshot,
    DigestDeal,
    SlaBreachData,
    SlaBreached,
    TaskDue,
    TaskDueData,
)
from jggl_sandbox.telegram_fake import TelegramFakeServer
from notifier.reminder_texts import duration, render_daily_digest, render_sla_breach, render_task_due

from .conftest import APP_URL, Bus, StartNotifier, next_id
from .test_event_notifications import NASTY, linked, settled

UTC_ZONE = ZoneInfo("UTC")


def deal(*, assignee_id: int | None, name: str = "Ann Customer", stage: str = "new") -> DealSnapshot:
    ref = next_id()
    return DealSnapshot(
        id=ref,
        conversation_id=ref,
        channel_id=1,
        platform="instagram",
        stage=stage,
        status="open",
        assignee_id=assignee_id,
        created_at=datetime.now(UTC) - timedelta(hours=3),
        contact=ContactRef(id=ref, platform="instagram", external_id=f"igsid-{ref}", display_name=name),
    )


def sla_breached(
    *,
    assignee_id: int | None,
    level: str = "breach",
    name: str = "Ann Customer",
    last_text: str | None = None,
    waiting_since: datetime | None = None,
) -> SlaBreached:
    return SlaBreached(
        producer="crm",
        data=SlaBreachData(
            deal=deal(assignee_id=assignee_id, name=name),
            level=level,
            waiting_since=waiting_since or datetime.now(UTC) - timedelta(minutes=47),
            waited_minutes=47 if level == "breach" else 95,
            sla_minutes=30,
            last_text=last_text,
        ),
    )


def task_due(*, assignee_id: int | None, deal_assignee_id: int | None, title: str = "Call back") -> TaskDue:
    return TaskDue(
        producer="crm",
        data=TaskDueData(
            task_id=next_id(),
            title=title,
            due_at=datetime.now(UTC),
            assignee_id=assignee_id,
            deal=deal(assignee_id=deal_assignee_id),
        ),
    )


def daily_digest(user_id: int, *, waiting: list[DigestDeal] | None = None) -> DailyDigest:
    return DailyDigest(
        producer="crm",
        data=DailyDigestData(
            user_id=user_id,
            day=date(2026, 12, 7),
            timezone="UTC",
            open_deals=12,
            awaiting_reply=3,
            sla_breaches=1,
            tasks_due_today=2,
            replies_yesterday=14,
            median_response_seconds_yesterday=262,
            longest_waiting=waiting or [],
        ),
    )


# ---------------------------------------------------------------------------- texts


def test_durations_read_as_people_say_them() -> None:
    assert [duration(s) for s in (0, 42, 60, 262, 3600, 3900, 86_400, 93_600, -5)] == [
        "0 s",
        "42 s",
        "1 min",
        "4 min",
        "1 h",
        "1 h 5 min",
        "1 d",
        "1 d 2 h",
        "0 s",
    ]


def test_the_digest_lists_the_five_longest_waiting_with_their_wait() -> None:
    now = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    waiting = [
        DigestDeal(
            deal_id=100 + n,
            display_name=NASTY if n == 0 else f"Customer {n}",
            platform="messenger",
            stage="<new>",
            waiting_since=now - timedelta(hours=7 - n, minutes=5),
        )
        for n in range(7)
    ]
    text, markup = render_daily_digest(daily_digest(1, waiting=waiting).data, APP_URL, now)
    assert text.splitlines() == [
        "📊 <b>Your day, Mon 7 Dec</b>",
        "Open deals: 12",
        "Awaiting a reply: 3 (past the SLA: 1)",
        "Tasks due today: 2",
        "Replies yesterday: 14, median response 4 min",
        "",
        "<b>Waiting longest</b>",
        "1. <b>&lt;b&gt;Tom &amp; Jerry&lt;/b&gt; 🐱</b> · Messenger · &lt;new&gt;: 7 h 5 min",
        "2. <b>Customer 1</b> · Messenger · &lt;new&gt;: 6 h 5 min",
        "3. <b>Customer 2</b> · Messenger · &lt;new&gt;: 5 h 5 min",
        "4. <b>Customer 3</b> · Messenger · &lt;new&gt;: 4 h 5 min",
        "5. <b>Customer 4</b> · Messenger · &lt;new&gt;: 3 h 5 min",
    ]
    assert markup is not None
    assert [(row[0].text, row[0].url) for row in markup.inline_keyboard] == [
        (f"1. {NASTY}", f"{APP_URL}/deals/100"),
        *((f"{n + 1}. Customer {n}", f"{APP_URL}/deals/{100 + n}") for n in range(1, 5)),
    ]


def test_a_quiet_digest_has_no_list_and_no_buttons() -> None:
    data = daily_digest(1).data.model_copy(update={"replies_yesterday": 0, "median_response_seconds_yesterday": None})
    text, markup = render_daily_digest(data, APP_URL, datetime.now(UTC))
    assert text.endswith("Replies yesterday: none")
    assert markup is None


def test_times_are_shown_in_the_business_time_zone() -> None:
    # 03:00 UTC is noon in Tokyo: 47 minutes later is the same day there (no date shown).
    event = sla_breached(assignee_id=1, waiting_since=datetime(2026, 12, 7, 3, 0, tzinfo=UTC))
    since = event.data.waiting_since
    text, _ = render_sla_breach(event.data, APP_URL, ZoneInfo("Asia/Tokyo"), since + timedelta(minutes=47))
    assert f"since {since.astimezone(ZoneInfo('Asia/Tokyo')):%H:%M}" in text
    yesterday = since + timedelta(days=1)
    text, _ = render_sla_breach(event.data, APP_URL, UTC_ZONE, yesterday)
    assert f"since {since.day} {since:%b %H:%M}" in text


# ---------------------------------------------------------------------------- against the fake


async def test_a_breach_reaches_the_assignee_once(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    await start_notifier()
    assignee, chat = await linked(engine, telegram)
    _, other = await linked(engine, telegram)
    event = sla_breached(assignee_id=assignee, name=NASTY, last_text="Hello? <anyone> & all")
    await bus.publish(event)
    await bus.publish(event)
    assert await settled(engine, event.id, 1) == {chat: "sent"}
    (message,) = telegram.fake.sent(chat)
    assert message.plain_text.splitlines() == [
        "⏰ Reply overdue",
        f"{NASTY} · Instagram",
        "Stage: new",
        f"Waiting 47 min for a reply (SLA 30 min), since {event.data.waiting_since:%H:%M}",
        "",
        "Last message: Hello? <anyone> & all",
    ]
    _, markup = render_sla_breach(event.data, APP_URL, UTC_ZONE, event.occurred_at)
    assert message.reply_markup == markup.model_dump(mode="json", exclude_none=True)
    assert telegram.fake.sent(other) == []


async def test_a_breach_of_an_unassigned_deal_reaches_every_linked_chat(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    chats = [(await linked(engine, telegram))[1] for _ in range(2)]
    event = sla_breached(assignee_id=None)
    await bus.publish(event)
    assert await settled(engine, event.id, 2) == dict.fromkeys(chats, "sent")


async def test_an_escalation_reaches_the_admins_but_not_the_assignee_twice(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    _, admin_chat = await linked(engine, telegram, role="admin")
    assigned_admin, assigned_admin_chat = await linked(engine, telegram, role="admin")
    manager, manager_chat = await linked(engine, telegram)

    of_a_manager = sla_breached(assignee_id=manager, level="escalation")
    of_an_admin = sla_breached(assignee_id=assigned_admin, level="escalation")
    await bus.publish(of_a_manager, of_an_admin)

    assert await settled(engine, of_a_manager.id, 2) == {admin_chat: "sent", assigned_admin_chat: "sent"}
    assert await settled(engine, of_an_admin.id, 1) == {admin_chat: "sent"}
    assert telegram.fake.sent(manager_chat) == []
    (first, _) = telegram.fake.sent(admin_chat)
    assert first.plain_text.startswith("🚨 Reply overdue: escalated\n")
    assert "Waiting 1 h 35 min for a reply, more than twice the SLA (30 min)" in first.plain_text


async def test_a_task_due_reaches_its_assignee_else_the_deal_s(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    doer, doer_chat = await linked(engine, telegram)
    owner, owner_chat = await linked(engine, telegram)
    own_task = task_due(assignee_id=doer, deal_assignee_id=owner, title="<Send> the invoice & call")
    deal_task = task_due(assignee_id=None, deal_assignee_id=owner)
    await bus.publish(own_task, deal_task)

    assert await settled(engine, own_task.id, 1) == {doer_chat: "sent"}
    assert await settled(engine, deal_task.id, 1) == {owner_chat: "sent"}
    (message,) = telegram.fake.sent(doer_chat)
    assert message.plain_text.splitlines() == [
        "📌 Task due",
        "<Send> the invoice & call",
        f"Due {own_task.data.due_at:%H:%M}",
        "",
        "Ann Customer · Instagram",
        "Stage: new",
    ]
    _, markup = render_task_due(own_task.data, APP_URL, UTC_ZONE, own_task.occurred_at)
    assert message.reply_markup == markup.model_dump(mode="json", exclude_none=True)


async def test_a_digest_reaches_its_manager(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    user, chat = await linked(engine, telegram)
    _, other = await linked(engine, telegram)
    waiting = DigestDeal(
        deal_id=next_id(),
        display_name="Ann",
        platform="instagram",
        stage="new",
        waiting_since=datetime.now(UTC) - timedelta(minutes=90),
    )
    event = daily_digest(user, waiting=[waiting])
    await bus.publish(event)
    assert await settled(engine, event.id, 1) == {chat: "sent"}
    (message,) = telegram.fake.sent(chat)
    assert message.plain_text.splitlines()[-1] == "1. Ann · Instagram · new: 1 h 30 min"
    assert message.reply_markup == {
        "inline_keyboard": [[{"text": "1. Ann", "url": f"{APP_URL}/deals/{waiting.deal_id}"}]]
    }
    assert telegram.fake.sent(other) == []


async def test_the_delivery_time_is_observed_per_kind_when_sent(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    def observed() -> tuple[float, float]:
        labels = {"kind": "task_due"}
        count = REGISTRY.get_sample_value("jggl_notifier_delivery_seconds_count", labels) or 0.0
        slow = REGISTRY.get_sample_value("jggl_notifier_delivery_seconds_bucket", {**labels, "le": "60.0"}) or 0.0
        return count, slow

    await start_notifier()
    user, _ = await linked(engine, telegram)
    before = observed()
    late = task_due(assignee_id=user, deal_assignee_id=None).model_copy(
        update={"occurred_at": datetime.now(UTC) - timedelta(minutes=2)}
    )
    prompt = task_due(assignee_id=user, deal_assignee_id=None)
    await bus.publish(late, prompt)
    await settled(engine, late.id, 1)
    await settled(engine, prompt.id, 1)
    count, within_a_minute = observed()
    assert count == before[0] + 2
    assert within_a_minute == before[1] + 1  # the one two minutes late is in +Inf only
