"""The deal buttons against the Telegram fake: "Take" and "Reply" become commands to crm on
the bus (once, whatever the redeliveries), and crm's answers reach the chat once: the deal
is yours, the reply was sent, or why crm refused."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.contracts import (
    ALREADY_ASSIGNED_TO_YOU,
    CommandRejected,
    CommandRejectedData,
    MessageFailed,
    MessageFailedData,
)
from jggl_common.db import autocommit, session_factory
from jggl_common.streams import CRM
from jggl_common.testing import stored_events
from jggl_sandbox.telegram_fake import TelegramFakeServer, parse_html
from notifier.bot import texts
from notifier.process import NotifierService

from .conftest import Bus, StartNotifier, eventually, next_id, rows, update_received
from .deal_events import Deal

WINDOW_CLOSED = (
    "The customer last wrote more than 24 hours ago; replies are possible within 24 hours, "
    "or up to 7 days when the human agent tag is enabled in settings."
)


def plain(html_text: str) -> str:
    """What the user sees of one of the bot's HTML texts."""
    return parse_html(html_text)[0]


async def linked(engine: AsyncEngine, telegram: TelegramFakeServer) -> tuple[int, int]:
    """A manager with a linked chat; (user id, chat id)."""
    user, chat = next_id(), next_id()
    telegram.fake.add_chat(chat, first_name="Mia")
    async with autocommit(session_factory(engine)) as db:
        await db.execute(
            "INSERT INTO links (user_id, chat_id, name, role, linked_at) VALUES ($1, $2, 'Mia', 'manager', $3)",
            user,
            chat,
            datetime.now(UTC),
        )
    return user, chat


async def said(telegram: TelegramFakeServer, chat: int, count: int) -> list[str]:
    """The bot's messages to ``chat`` once there are ``count`` (plain text)."""

    async def check() -> list[str] | None:
        sent = [m.plain_text for m in telegram.fake.sent(chat)]
        return sent if len(sent) >= count else None

    return list(await eventually(check))


async def commands(bus: Bus, subject: str, *, at_least: int = 1, idle: float = 0.5) -> list[dict[str, Any]]:
    """The commands stored on ``subject``, once ``at_least`` are there and ``idle`` seconds passed."""
    return await stored_events(bus.nc.jetstream(), subject, at_least=at_least, idle=idle, within=15, stream=CRM.name)


async def press(bus: Bus, telegram: TelegramFakeServer, chat: int, data: str, *, twice: bool = False) -> dict[str, Any]:
    """The user presses a button; ingest stores the update (twice: stored again)."""
    update = telegram.fake.press_button(chat, data)
    await bus.publish(update_received(update))
    if twice:
        await bus.publish(update_received(update))
    return update


async def types(bus: Bus, telegram: TelegramFakeServer, chat: int, text: str) -> dict[str, Any]:
    update = telegram.fake.user_sends(chat, text, first_name="Mia")
    await bus.publish(update_received(update))
    return update


async def callback_answer(telegram: TelegramFakeServer, query_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        return next((a for a in telegram.fake.callback_answers() if a["callback_query_id"] == query_id), None)

    return dict(await eventually(check))


async def action(engine: AsyncEngine, deal: int, status: str | None = None) -> dict[str, Any]:
    """The deal's one action once it has ``status`` (any, when None)."""

    async def check() -> dict[str, Any] | None:
        found = await rows(engine, "SELECT * FROM actions WHERE deal_id = $1", deal)
        return found[0] if len(found) == 1 and status in (None, found[0]["status"]) else None

    return dict(await eventually(check))


def rejected(sent: dict[str, Any], command_type: str, user: int, deal: int, reason: str) -> CommandRejected:
    """crm's refusal (409) of the command the bot sent for ``sent`` (its action row)."""
    return CommandRejected(
        producer="crm",
        data=CommandRejectedData(
            command_id=sent["command_id"],
            command_type=command_type,
            acting_user_id=user,
            deal_id=deal,
            status=409,
            reason=reason,
        ),
    )


@pytest.fixture
async def notifier(start_notifier: StartNotifier, telegram: TelegramFakeServer) -> NotifierService:
    telegram.fake.set_rate_limits(False)
    return await start_notifier(telegram_per_chat_per_second=0)


async def a_lead(bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine, chat: int, deal: Deal) -> None:
    """The deal's first message is announced to ``chat`` and projected."""
    await bus.publish(deal.received(datetime.now(UTC), "Hi, how much?", first=True))
    await said(telegram, chat, 1)
    await eventually(lambda: rows(engine, "SELECT 1 FROM deals WHERE deal_id = $1", deal.id))


async def test_take_publishes_one_assign_command_and_confirms_once(
    notifier: NotifierService, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    user, chat = await linked(engine, telegram)
    deal = Deal()
    await a_lead(bus, telegram, engine, chat, deal)

    update = await press(bus, telegram, chat, f"take:{deal.id}", twice=True)
    query_id = update["callback_query"]["id"]
    assert (await callback_answer(telegram, query_id))["text"] == texts.TAKING
    # The same press handled again past the update dedupe (a crash before it was marked).
    link = await notifier.store.link_of_chat(chat)
    assert link is not None
    await notifier.dispatcher["deal_actions"].take(link, chat, deal.id, query_id)

    (command,) = await commands(bus, "crm.cmd.assign_deal")
    assert command["data"] == {"deal_id": deal.id, "assignee_id": user, "acting_user_id": user}
    row = await action(engine, deal.id)
    assert (row["command_id"], row["kind"], row["user_id"], row["chat_id"], row["status"]) == (
        command["id"],
        "take",
        user,
        chat,
        "pending",
    )

    taken = deal.updated(datetime.now(UTC), assignee_id=user)  # crm applied it
    await bus.publish(taken)
    await action(engine, deal.id, "done")
    await notifier.notifiers.answers.handle(taken)  # redelivered
    assert (await said(telegram, chat, 2))[1] == "✅ The deal is yours: Ann Customer"
    await asyncio.sleep(0.3)
    assert len(telegram.fake.sent(chat)) == 2

    # Pressed again once it is theirs: nothing is asked of crm.
    again = await press(bus, telegram, chat, f"take:{deal.id}")
    await eventually(lambda: rows(engine, "SELECT 1 FROM deals WHERE deal_id = $1 AND assignee_id = $2", deal.id, user))
    assert (await callback_answer(telegram, again["callback_query"]["id"]))["text"] == texts.ALREADY_YOURS
    assert len(await commands(bus, "crm.cmd.assign_deal")) == 1


async def test_reply_sends_the_text_as_a_command_and_confirms_once(
    notifier: NotifierService, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    user, chat = await linked(engine, telegram)
    deal = Deal(name="Ann <Customer>")
    await a_lead(bus, telegram, engine, chat, deal)

    await press(bus, telegram, chat, f"reply:{deal.id}")
    assert (await said(telegram, chat, 2))[1] == "✍️ Write your reply to Ann <Customer> (/cancel to cancel)"
    await types(bus, telegram, chat, "/help")  # a command meanwhile is a command; the draft stays
    assert (await said(telegram, chat, 3))[2] == plain(texts.HELP)
    typed = await types(bus, telegram, chat, "Price: <10$ & free delivery")
    assert (await said(telegram, chat, 4))[3] == texts.SENDING

    (command,) = await commands(bus, "crm.cmd.send_message")
    assert command["data"] == {
        "deal_id": deal.id,
        "acting_user_id": user,
        "text": "Price: <10$ & free delivery",
        "attachments": [],
        "idempotency_key": f"telegram:{chat}:{typed['message']['message_id']}",
    }
    row = await action(engine, deal.id, "pending")
    assert (row["kind"], row["text"]) == ("reply", "Price: <10$ & free delivery")
    assert await rows(engine, "SELECT 1 FROM reply_drafts WHERE chat_id = $1", chat) == []

    sent = deal.sent(datetime.now(UTC), "Price: <10$ & free delivery", user, response_seconds=30)
    await bus.publish(sent)
    await action(engine, deal.id, "done")
    await notifier.notifiers.answers.handle(sent)  # redelivered
    assert (await said(telegram, chat, 5))[4] == "✅ Sent to Ann <Customer>"
    await types(bus, telegram, chat, "this one is not a reply")  # the draft was used up: the help
    assert (await said(telegram, chat, 6))[5] == plain(texts.HELP)
    assert len(await commands(bus, "crm.cmd.send_message")) == 1


async def test_a_refused_take_and_reply_tell_the_reason_once(
    notifier: NotifierService, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    user, chat = await linked(engine, telegram)
    deal = Deal()
    await a_lead(bus, telegram, engine, chat, deal)

    await press(bus, telegram, chat, f"take:{deal.id}")
    take = await action(engine, deal.id)
    refused = rejected(take, "crm.cmd.assign_deal", user, deal.id, "This deal is already assigned to someone else")
    await bus.publish(refused)
    await action(engine, deal.id, "rejected")
    await notifier.notifiers.answers.handle(refused)
    assert (await said(telegram, chat, 2))[1] == (
        "❌ Could not take the deal with Ann Customer.\nWhy: This deal is already assigned to someone else"
    )

    other = Deal(name="Old Customer")
    await bus.publish(other.received(datetime.now(UTC) - timedelta(days=2), "Hello?", first=True))
    await said(telegram, chat, 3)
    await press(bus, telegram, chat, f"reply:{other.id}")
    await said(telegram, chat, 4)
    await types(bus, telegram, chat, "Sorry for the delay!")
    await said(telegram, chat, 5)
    reply = await action(engine, other.id)
    await bus.publish(rejected(reply, "crm.cmd.send_message", user, other.id, WINDOW_CLOSED))
    assert (await said(telegram, chat, 6))[5] == (f"❌ Your reply to Old Customer was not sent.\nWhy: {WINDOW_CLOSED}")
    assert (await action(engine, other.id, "rejected"))["reason"] == WINDOW_CLOSED
    await asyncio.sleep(0.3)
    assert len(telegram.fake.sent(chat)) == 6


async def test_take_of_a_deal_already_yours_is_answered_once(
    notifier: NotifierService, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    user, chat = await linked(engine, telegram)
    deal = Deal()
    await a_lead(bus, telegram, engine, chat, deal)

    # Assigned to the user in the CRM, not yet in the bot's view of the deal: the bot asks crm.
    update = await press(bus, telegram, chat, f"take:{deal.id}")
    assert (await callback_answer(telegram, update["callback_query"]["id"]))["text"] == texts.TAKING
    take = await action(engine, deal.id, "pending")
    # crm changes nothing and answers so (no crm.deal.updated comes).
    answer = rejected(take, "crm.cmd.assign_deal", user, deal.id, ALREADY_ASSIGNED_TO_YOU)
    await bus.publish(answer)
    done = await action(engine, deal.id, "done")
    assert done["reason"] is None
    await notifier.notifiers.answers.handle(answer)  # redelivered
    assert (await said(telegram, chat, 2))[1] == "✅ The deal is already yours: Ann Customer"
    await asyncio.sleep(0.3)
    assert len(telegram.fake.sent(chat)) == 2


async def test_a_reply_meta_refused_is_told_once_by_the_failure_notification(
    notifier: NotifierService, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    user, chat = await linked(engine, telegram)
    deal = Deal()
    await a_lead(bus, telegram, engine, chat, deal)
    await press(bus, telegram, chat, f"reply:{deal.id}")
    await said(telegram, chat, 2)
    await types(bus, telegram, chat, "Here you go")
    await said(telegram, chat, 3)
    await action(engine, deal.id, "pending")

    await bus.publish(
        MessageFailed(
            producer="crm",
            data=MessageFailedData(
                message_id=next_id(),
                deal_id=deal.id,
                conversation_id=deal.id,
                kind="text",
                text="Here you go",
                author_user_id=user,
                reason="meta_error",
                error_code=551,
                error_message="This person isn't available right now.",
                attempts=1,
                failed_at=datetime.now(UTC),
                deal_stage="new",
                contact=deal.contact,
            ),
        )
    )
    assert (await action(engine, deal.id, "failed"))["reason"] == "meta_error: This person isn't available right now."
    (failure,) = (await said(telegram, chat, 4))[3:]
    assert failure.startswith("⚠️ Reply not delivered")
    await asyncio.sleep(0.5)
    assert len(telegram.fake.sent(chat)) == 4


async def test_unlinked_chats_expired_drafts_cancel_and_bad_buttons(
    notifier: NotifierService, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    _, chat = await linked(engine, telegram)
    deal = Deal()
    await a_lead(bus, telegram, engine, chat, deal)

    await types(bus, telegram, chat, "/cancel")
    assert (await said(telegram, chat, 2))[1] == texts.NOTHING_TO_CANCEL
    await press(bus, telegram, chat, f"reply:{deal.id}")
    await said(telegram, chat, 3)
    await types(bus, telegram, chat, "/cancel")
    assert (await said(telegram, chat, 4))[3] == texts.CANCELLED

    await press(bus, telegram, chat, f"reply:{deal.id}")
    await said(telegram, chat, 5)
    async with autocommit(session_factory(engine)) as db:
        await db.execute("UPDATE reply_drafts SET expires_at = now() - interval '1 minute' WHERE chat_id = $1", chat)
    await types(bus, telegram, chat, "Too late?")
    assert (await said(telegram, chat, 6))[5] == plain(texts.draft_expired(15))

    forged = telegram.fake.press_button(chat, f"take:{deal.id}")
    forged["callback_query"]["data"] = "take:not-a-deal"
    await bus.publish(update_received(forged))
    answer = await callback_answer(telegram, forged["callback_query"]["id"])
    assert (answer["text"], answer.get("show_alert")) == (texts.BAD_BUTTON, "true")  # form fields

    async with autocommit(session_factory(engine)) as db:
        await db.execute("DELETE FROM links WHERE chat_id = $1", chat)
    await press(bus, telegram, chat, f"take:{deal.id}")
    assert (await said(telegram, chat, 7))[6] == plain(texts.INSTRUCTIONS)
    assert await rows(engine, "SELECT 1 FROM actions WHERE deal_id = $1", deal.id) == []
    assert await commands(bus, "crm.cmd.>", at_least=0) == []
