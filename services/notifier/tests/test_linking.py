"""Linking a manager's Telegram by the one-time code crm handed out: ``/start CODE`` fed
through ingest's ``ingest.telegram.update`` to the bot, answered through the Telegram fake."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.contracts import link_code_hash
from jggl_common.db import session_factory
from jggl_sandbox.telegram_fake import TelegramFakeServer
from notifier.bot import texts
from notifier.store import Store

from .conftest import Bus, StartNotifier, eventually, link_requested, next_id, rows, update_received


async def code_known(engine: AsyncEngine, code: str) -> None:
    await eventually(lambda: rows(engine, "SELECT 1 FROM link_codes WHERE code_hash = $1", link_code_hash(code)))


async def user_types(bus: Bus, telegram: TelegramFakeServer, chat: int, text: str) -> dict[str, Any]:
    """The user types ``text``; ingest stores the webhook update; returns the update."""
    update = telegram.fake.user_sends(chat, text, first_name="Mia")
    await bus.publish(update_received(update))
    return update


async def answers(telegram: TelegramFakeServer, chat: int, count: int = 1) -> list[str]:
    async def check() -> list[str] | None:
        sent = [m.plain_text for m in telegram.fake.sent(chat)]
        return sent if len(sent) >= count else None

    return list(await eventually(check))


async def test_start_with_the_code_links_the_chat(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    user, chat = next_id(), next_id()
    await bus.publish(link_requested(user, "ABC123", name="Mia <Manager>"))
    await code_known(engine, "ABC123")

    await user_types(bus, telegram, chat, "/start ABC123")

    (answer,) = await answers(telegram, chat)
    assert answer.startswith("✅ Linked, Mia <Manager>!")
    (link,) = await rows(engine, "SELECT user_id, chat_id, name, role FROM links")
    assert link == {"user_id": user, "chat_id": chat, "name": "Mia <Manager>", "role": "manager"}
    (code,) = await rows(engine, "SELECT used_at FROM link_codes")
    assert code["used_at"] is not None


async def test_a_code_typed_in_lower_case_works(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    user, chat = next_id(), next_id()
    await bus.publish(link_requested(user, "XYZ789"))
    await code_known(engine, "XYZ789")
    await user_types(bus, telegram, chat, "/start xyz789")
    (answer,) = await answers(telegram, chat)
    assert answer.startswith("✅ Linked")


async def test_wrong_used_and_expired_codes_are_refused(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    user, other_user = next_id(), next_id()
    chat, intruder, late = next_id(), next_id(), next_id()
    await bus.publish(link_requested(user, "GOOD01"), link_requested(other_user, "OLD001", expires_in=-1))
    await code_known(engine, "GOOD01")
    await code_known(engine, "OLD001")

    await user_types(bus, telegram, chat, "/start WRONG1")
    assert await answers(telegram, chat) == [texts.UNKNOWN_CODE]

    await user_types(bus, telegram, chat, "/start GOOD01")
    await answers(telegram, chat, 2)
    await user_types(bus, telegram, intruder, "/start GOOD01")
    assert await answers(telegram, intruder) == [texts.USED_CODE]

    await user_types(bus, telegram, late, "/start OLD001")
    assert await answers(telegram, late) == [texts.EXPIRED_CODE]

    assert await rows(engine, "SELECT user_id, chat_id FROM links") == [{"user_id": user, "chat_id": chat}]


async def test_an_update_stored_twice_is_answered_once(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    """The same update stored twice by ingest (two envelopes) is handled once, by update_id."""
    await start_notifier()
    user, chat = next_id(), next_id()
    await bus.publish(link_requested(user, "TWICE1"))
    await code_known(engine, "TWICE1")
    update = await user_types(bus, telegram, chat, "/start TWICE1")
    await answers(telegram, chat)
    await bus.publish(update_received(update))
    await user_types(bus, telegram, chat, "/help")  # handled after the repeat (one chat, in order)
    assert (await answers(telegram, chat, 2))[1] == telegram_text(texts.HELP)
    assert len(telegram.fake.sent(chat)) == 2
    assert await rows(engine, "SELECT user_id, chat_id FROM links") == [{"user_id": user, "chat_id": chat}]


async def test_a_start_handled_again_keeps_the_link(engine: AsyncEngine) -> None:
    """Even past the update dedupe, a code used by this very chat is not refused as reused."""
    store = Store(session_factory(engine))
    user, chat = next_id(), next_id()
    await store.remember_code(link_requested(user, "AGAIN1").data)
    assert (await store.link(link_code_hash("AGAIN1"), chat)).outcome == "linked"
    assert (await store.link(link_code_hash("AGAIN1"), chat)).outcome == "already_linked"
    assert (await store.link(link_code_hash("AGAIN1"), next_id())).outcome == "used"


async def test_stop_unlinks_and_unlinked_chats_get_the_instructions(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    user, chat = next_id(), next_id()
    await user_types(bus, telegram, chat, "hello?")
    assert await answers(telegram, chat) == [telegram_text(texts.INSTRUCTIONS)]

    await bus.publish(link_requested(user, "STOP01"))
    await code_known(engine, "STOP01")
    await user_types(bus, telegram, chat, "/start STOP01")
    await answers(telegram, chat, 2)
    await user_types(bus, telegram, chat, "/help")
    assert (await answers(telegram, chat, 3))[2] == telegram_text(texts.HELP)

    await user_types(bus, telegram, chat, "/stop")
    assert (await answers(telegram, chat, 4))[3] == texts.UNLINKED
    assert await rows(engine, "SELECT * FROM links") == []

    await user_types(bus, telegram, chat, "/stop")
    assert (await answers(telegram, chat, 5))[4] == texts.NOT_LINKED
    await user_types(bus, telegram, chat, "anything")
    assert (await answers(telegram, chat, 6))[5] == telegram_text(texts.INSTRUCTIONS)


async def test_linking_from_another_chat_moves_the_link(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    user, first_chat, second_chat = next_id(), next_id(), next_id()
    await bus.publish(link_requested(user, "FIRST1"))
    await code_known(engine, "FIRST1")
    await user_types(bus, telegram, first_chat, "/start FIRST1")
    await answers(telegram, first_chat)

    await bus.publish(link_requested(user, "SECND1"))
    await code_known(engine, "SECND1")
    await user_types(bus, telegram, second_chat, "/start SECND1")
    await answers(telegram, second_chat)

    assert await rows(engine, "SELECT user_id, chat_id FROM links") == [{"user_id": user, "chat_id": second_chat}]


def telegram_text(html_text: str) -> str:
    """What the user sees of one of the bot's HTML texts (the tags this module uses)."""
    for tag in ("<b>", "</b>", "<code>", "</code>"):
        html_text = html_text.replace(tag, "")
    return html_text
