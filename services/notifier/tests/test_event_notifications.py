"""The notifications that follow the new lead, against the Telegram fake: a new message on
a deal, a hot lead, a failed reply and a channel to reconnect, each reaching the right
chats exactly once (the event published twice, two notifiers), customer text as typed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.contracts import (
    ChannelNeedsReauth,
    ChannelNeedsReauthData,
    ContactRef,
    DealHotLead,
    DealSnapshot,
    HotLeadData,
    MessageFailed,
    MessageFailedData,
    MessageReceived,
    MessageReceivedData,
)
from jggl_common.db import autocommit, session_factory
from jggl_sandbox.telegram_fake import TelegramFakeServer

from .conftest import APP_URL, Bus, StartNotifier, eventually, next_id, rows

NASTY = "<b>Tom & Jerry</b> 🐱"


async def linked(engine: AsyncEngine, telegram: TelegramFakeServer, *, role: str = "manager") -> tuple[int, int]:
    """A user of ``role`` with a linked chat; (user id, chat id)."""
    user, chat = next_id(), next_id()
    telegram.fake.add_chat(chat, first_name=f"{role} {user}")
    async with autocommit(session_factory(engine)) as db:
        await db.execute(
            "INSERT INTO links (user_id, chat_id, name, role, linked_at) VALUES ($1, $2, $3, $4, $5)",
            user,
            chat,
            f"{role} {user}",
            role,
            datetime.now(UTC),
        )
    return user, chat


async def settled(engine: AsyncEngine, event_id: str, chats: int) -> dict[int, str]:
    """The (chat → status) of an event once ``chats`` notifications are no longer pending
    (an unlink's goodbye is logged "failed" with no attempt yet before it is first sent)."""

    async def check() -> dict[int, str] | None:
        found = await rows(engine, "SELECT chat_id, status, attempts FROM notifications WHERE event_id = $1", event_id)
        if any(row["status"] == "pending" or (row["status"] == "failed" and row["attempts"] == 0) for row in found):
            return None
        statuses = {row["chat_id"]: row["status"] for row in found}
        return statuses if len(statuses) == chats else None

    return dict(await eventually(check))


def contact(name: str = "Ann Customer") -> ContactRef:
    ref = next_id()
    return ContactRef(id=ref, platform="messenger", external_id=f"psid-{ref}", display_name=name)


def message_received(
    *, assignee_id: int | None, text: str | None = "Is it still available?", first: bool = False, **extra: Any
) -> MessageReceived:
    deal = next_id()
    return MessageReceived(
        producer="crm",
        data=MessageReceivedData(
            message_id=next_id(),
            mid=f"m.{next_id()}",
            deal_id=deal,
            conversation_id=deal,
            kind=extra.pop("kind", "text"),
            text=text,
            sent_at=datetime.now(UTC),
            is_first_message=first,
            deal_stage="qualified",
            assignee_id=assignee_id,
            contact=extra.pop("contact", contact()),
            **extra,
        ),
    )


def hot_lead(
    *, assignee_id: int | None, summary: str = "Wants two, today", next_action: str | None = None
) -> DealHotLead:
    deal = next_id()
    return DealHotLead(
        producer="crm",
        data=HotLeadData(
            deal=DealSnapshot(
                id=deal,
                conversation_id=deal,
                channel_id=1,
                platform="instagram",
                stage="new",
                status="open",
                assignee_id=assignee_id,
                created_at=datetime.now(UTC),
                contact=contact(),
            ),
            summary=summary,
            intent="purchase",
            next_action=next_action,
            provider="heuristic",
            analysis_version=1,
        ),
    )


def message_failed(*, author: int | None, assignee: int | None, **extra: Any) -> MessageFailed:
    deal = next_id()
    values: dict[str, Any] = {
        "message_id": next_id(),
        "deal_id": deal,
        "conversation_id": deal,
        "kind": "text",
        "text": "Here is the price",
        "author_user_id": author,
        "reason": "window_closed",
        "error_message": "outside the 24-hour window",
        "attempts": 0,
        "failed_at": datetime.now(UTC),
        "deal_stage": "new",
        "assignee_id": assignee,
        "contact": contact(),
    }
    return MessageFailed(producer="crm", data=MessageFailedData(**(values | extra)))


def needs_reauth() -> ChannelNeedsReauth:
    return ChannelNeedsReauth(
        producer="crm",
        data=ChannelNeedsReauthData(
            channel_id=next_id(),
            platform="messenger",
            external_id="page-1",
            channel_name="Shop & Co",
            error_code=190,
            error_subcode=463,
            error_message="Error validating access token: Session has expired",
        ),
    )


async def test_a_new_message_reaches_the_assignee_exactly_once_as_typed(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    first = await start_notifier()
    await start_notifier()  # a second replica on the same durable consumers
    assignee, chat = await linked(engine, telegram)
    _, other = await linked(engine, telegram)
    event = message_received(assignee_id=assignee, text=NASTY, contact=contact(NASTY))

    await bus.publish(event)
    await bus.publish(event)
    assert await settled(engine, event.id, 1) == {chat: "sent"}
    await first.notifiers.new_messages.handle(event)  # a redelivery reaching the handler

    (message,) = telegram.fake.sent(chat)
    assert message.plain_text == f"💬 New message\n{NASTY} · Messenger\nStage: qualified\n\n{NASTY}"
    deal = event.data.deal_id
    assert message.reply_markup == {  # assigned: no "Take"
        "inline_keyboard": [
            [
                {"text": "Open in CRM", "url": f"{APP_URL}/deals/{deal}"},
                {"text": "Reply", "callback_data": f"reply:{deal}"},
            ]
        ]
    }
    assert telegram.fake.sent(other) == []
    (row,) = await rows(engine, "SELECT kind, attempts FROM notifications WHERE event_id = $1", event.id)
    assert row == {"kind": "new_message", "attempts": 1}


async def test_an_unassigned_deal_s_message_reaches_every_linked_manager(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    managers = [(await linked(engine, telegram))[1] for _ in range(2)]
    _, admin = await linked(engine, telegram, role="admin")
    event = message_received(assignee_id=None, text=None, kind="image", attachments=[{"type": "image"}])
    await bus.publish(event)
    await bus.publish(event)
    # Like a new lead: every linked chat, managers included (the admin is one more).
    assert await settled(engine, event.id, 3) == dict.fromkeys([*managers, admin], "sent")
    for chat in managers:
        (message,) = telegram.fake.sent(chat)
        assert message.plain_text.endswith("\n\n[image]")


async def test_a_deal_s_first_message_is_the_new_lead(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    assignee, chat = await linked(engine, telegram)
    opening = message_received(assignee_id=assignee, first=True)
    later = message_received(assignee_id=assignee)
    await bus.publish(opening, later)
    assert await settled(engine, later.id, 1) == {chat: "sent"}
    assert await settled(engine, opening.id, 1) == {chat: "sent"}
    await asyncio.sleep(0.3)
    kinds = await rows(engine, "SELECT event_id, kind FROM notifications ORDER BY event_id")
    assert {row["event_id"]: row["kind"] for row in kinds} == {opening.id: "new_lead", later.id: "new_message"}
    assert sorted(m.plain_text.split("\n")[0] for m in telegram.fake.sent(chat)) == ["🆕 New lead", "💬 New message"]


async def test_a_hot_lead_reaches_the_assignee_with_the_summary_escaped(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    await start_notifier()
    assignee, chat = await linked(engine, telegram)
    _, other = await linked(engine, telegram)
    event = hot_lead(assignee_id=assignee, summary="Wants <2> & now", next_action="Call <b>today</b>")
    await bus.publish(event)
    await bus.publish(event)
    assert await settled(engine, event.id, 1) == {chat: "sent"}
    (message,) = telegram.fake.sent(chat)
    assert "🔥 Hot lead\n" in message.plain_text
    assert "Summary: Wants <2> & now" in message.plain_text
    assert "Next: Call <b>today</b>" in message.plain_text
    assert telegram.fake.sent(other) == []


async def test_an_unassigned_hot_lead_reaches_every_linked_user(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    chats = [(await linked(engine, telegram))[1], (await linked(engine, telegram, role="admin"))[1]]
    event = hot_lead(assignee_id=None)
    await bus.publish(event)
    assert await settled(engine, event.id, 2) == dict.fromkeys(chats, "sent")
    assert all(len(telegram.fake.sent(chat)) == 1 for chat in chats)


async def test_a_failed_reply_reaches_its_author_once(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    await start_notifier()
    author, author_chat = await linked(engine, telegram)
    assignee, assignee_chat = await linked(engine, telegram)
    event = message_failed(author=author, assignee=assignee, text="Price: <10$ & free")
    await bus.publish(event)
    await bus.publish(event)
    assert await settled(engine, event.id, 1) == {author_chat: "sent"}
    (message,) = telegram.fake.sent(author_chat)
    assert message.plain_text.startswith("⚠️ Reply not delivered\nAnn Customer · Messenger")
    assert "Reply: Price: <10$ & free\n" in message.plain_text
    assert "24-hour window" in message.plain_text
    assert telegram.fake.sent(assignee_chat) == []


async def test_a_failed_reply_of_an_unlinked_author_reaches_the_assignee(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    assignee, chat = await linked(engine, telegram)
    event = message_failed(
        author=next_id(), assignee=assignee, reason="meta_error", error_code=551, error_message="User <unavailable>"
    )
    await bus.publish(event)
    assert await settled(engine, event.id, 1) == {chat: "sent"}
    (message,) = telegram.fake.sent(chat)
    assert "Why: Meta refused it (code 551): User <unavailable>" in message.plain_text


async def test_a_channel_to_reconnect_reaches_every_linked_admin_only(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    await start_notifier()
    admins = [(await linked(engine, telegram, role="admin"))[1] for _ in range(2)]
    _, manager = await linked(engine, telegram)
    event = needs_reauth()
    await bus.publish(event)
    await bus.publish(event)
    assert await settled(engine, event.id, 2) == dict.fromkeys(admins, "sent")
    for chat in admins:
        (message,) = telegram.fake.sent(chat)
        assert "Channel needs reconnecting\nShop & Co · Messenger" in message.plain_text
        assert "(code 190): Error validating access token" in message.plain_text
    assert telegram.fake.sent(manager) == []
