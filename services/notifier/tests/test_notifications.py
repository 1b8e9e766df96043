"""New-lead notifications from a deal's first ``crm.message.received``: to the assignee or to every linked
chat, once per event and chat (redeliveries and two notifiers included), escaped, with
the 429s, blocked chats and a missing bot token handled."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.db import autocommit, session_factory
from jggl_sandbox.telegram_fake import TelegramFakeServer

from .conftest import APP_URL, Bus, StartNotifier, eventually, new_lead, next_id, rows


async def linked(engine: AsyncEngine, telegram: TelegramFakeServer, *, name: str = "Manager") -> tuple[int, int]:
    """A manager with a linked chat (the chat has written to the bot); (user id, chat id)."""
    user, chat = next_id(), next_id()
    telegram.fake.add_chat(chat, first_name=name)
    async with autocommit(session_factory(engine)) as db:
        await db.execute(
            "INSERT INTO links (user_id, chat_id, name, role, linked_at) VALUES ($1, $2, $3, 'manager', $4)",
            user,
            chat,
            name,
            datetime.now(UTC),
        )
    return user, chat


async def statuses(engine: AsyncEngine, event_id: str) -> dict[int, str]:
    found = await rows(engine, "SELECT chat_id, status FROM notifications WHERE event_id = $1", event_id)
    return {row["chat_id"]: row["status"] for row in found}


async def settled(engine: AsyncEngine, event_id: str, chats: int) -> dict[int, str]:
    """The statuses once every chat's notification is no longer pending."""

    async def check() -> dict[int, str] | None:
        found = await statuses(engine, event_id)
        done = len(found) == chats and "pending" not in found.values()
        return found if done else None

    return dict(await eventually(check))


async def test_an_unassigned_deal_reaches_every_linked_chat_exactly_once(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    first = await start_notifier()
    await start_notifier()  # a second replica on the same durable consumers
    chats = [(await linked(engine, telegram))[1] for _ in range(3)]
    event = new_lead(name="Ann Customer", stage="new")

    await bus.publish(event)
    await bus.publish(event)  # published again: the same Nats-Msg-Id
    assert await settled(engine, event.id, 3) == dict.fromkeys(chats, "sent")
    await first.new_leads.handle(event)  # a redelivery reaching the handler itself

    for chat in chats:
        (message,) = telegram.fake.sent(chat)
        assert message.plain_text == (
            "🆕 New lead\nAnn Customer · Instagram\nStage: new\n\nHi! Is the green backpack still available?"
        )
        deal = event.data.deal_id
        assert message.reply_markup == {
            "inline_keyboard": [
                [
                    {"text": "Open in CRM", "url": f"{APP_URL}/deals/{deal}"},
                    {"text": "Take", "callback_data": f"take:{deal}"},
                    {"text": "Reply", "callback_data": f"reply:{deal}"},
                ]
            ]
        }
    logged = await rows(engine, "SELECT chat_id, telegram_message_id, attempts, sent_at FROM notifications")
    assert {row["chat_id"]: row["telegram_message_id"] for row in logged} == {
        chat: telegram.fake.sent(chat)[0].message_id for chat in chats
    }
    assert all(row["attempts"] == 1 and row["sent_at"] for row in logged)


async def test_an_assigned_deal_reaches_only_the_assignee(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    assignee, assignee_chat = await linked(engine, telegram)
    _, other_chat = await linked(engine, telegram)
    event = new_lead(assignee_id=assignee)
    await bus.publish(event)
    assert await settled(engine, event.id, 1) == {assignee_chat: "sent"}
    assert len(telegram.fake.sent(assignee_chat)) == 1
    assert telegram.fake.sent(other_chat) == []


async def test_customer_text_arrives_as_typed(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    _, chat = await linked(engine, telegram)
    event = new_lead(name="<b>Tom & Jerry</b> 🐱", stage="<new>", text="Price < 10$ & <i>fast</i>?")
    await bus.publish(event)
    assert await settled(engine, event.id, 1) == {chat: "sent"}
    (message,) = telegram.fake.sent(chat)
    assert "<b>Tom & Jerry</b> 🐱 · Instagram" in message.plain_text
    assert "Stage: <new>" in message.plain_text
    assert message.plain_text.endswith("\n\nPrice < 10$ & <i>fast</i>?")
    assert message.parse_mode == "HTML"


async def test_without_a_bot_token_notifications_are_skipped(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier(token="")
    _, chat = await linked(engine, telegram)
    event = new_lead()
    await bus.publish(event)
    assert await settled(engine, event.id, 1) == {chat: "skipped"}
    assert telegram.fake.calls() == []


async def test_a_429_is_waited_out_and_sent_once(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    _, chat = await linked(engine, telegram)
    telegram.fake.fail_next(1, retry_after=1, chat_id=chat)
    event = new_lead()
    await bus.publish(event)
    assert await settled(engine, event.id, 1) == {chat: "sent"}

    calls = telegram.fake.calls("sendMessage")
    assert [call.status for call in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 1.0
    assert len(telegram.fake.sent(chat)) == 1
    (row,) = await rows(engine, "SELECT attempts, error FROM notifications")
    assert row == {"attempts": 1, "error": None}


async def test_a_failed_send_is_retried_for_that_chat_only(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier(telegram_max_retry_after=0)  # a 429 fails the send at once
    _, failing = await linked(engine, telegram)
    _, fine = await linked(engine, telegram)
    telegram.fake.fail_next(2, retry_after=1, chat_id=failing)
    event = new_lead()
    await bus.publish(event)

    async def both_sent() -> bool:
        return await statuses(engine, event.id) == {failing: "sent", fine: "sent"}

    await eventually(both_sent)
    assert len(telegram.fake.sent(failing)) == 1
    assert len(telegram.fake.sent(fine)) == 1
    attempts = {
        row["chat_id"]: row["attempts"] for row in await rows(engine, "SELECT chat_id, attempts FROM notifications")
    }
    assert attempts == {failing: 3, fine: 1}


async def test_a_chat_that_blocked_the_bot_is_not_retried(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    _, blocked = await linked(engine, telegram)
    _, fine = await linked(engine, telegram)
    telegram.fake.block(blocked)
    event = new_lead()
    await bus.publish(event)
    assert await settled(engine, event.id, 2) == {blocked: "failed", fine: "sent"}
    await asyncio.sleep(0.5)
    to_blocked = [c for c in telegram.fake.calls("sendMessage") if str(c.params.get("chat_id")) == str(blocked)]
    assert [c.status for c in to_blocked] == [403]
    (row,) = await rows(engine, "SELECT error, retryable FROM notifications WHERE chat_id = $1", blocked)
    assert row["retryable"] is False
    assert "blocked" in row["error"]
