"""crm's ``crm.telegram.unlink_requested`` (the user unlinked, an admin did, or the account
was deactivated): the link and unused codes go, the chat hears it once, then nothing more."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.contracts import TelegramUnlinkRequested, TelegramUnlinkRequestedData
from jggl_sandbox.telegram_fake import TelegramFakeServer

from .conftest import Bus, StartNotifier, eventually, link_requested, new_lead, next_id, rows
from .test_event_notifications import linked, settled
from .test_linking import code_known


def unlink_requested(user_id: int, reason: str = "deactivated", actor: int | None = 1) -> TelegramUnlinkRequested:
    return TelegramUnlinkRequested(
        producer="crm",
        data=TelegramUnlinkRequestedData(user_id=user_id, reason=reason, actor_user_id=actor),
    )


async def test_a_deactivated_manager_is_unlinked_told_once_and_hears_nothing_more(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    first = await start_notifier()
    await start_notifier()  # a second replica on the same durable consumers
    user, chat = await linked(engine, telegram)
    other, other_chat = await linked(engine, telegram)
    await bus.publish(link_requested(user, "UNUSED"), link_requested(other, "KEEPME"))
    await code_known(engine, "UNUSED")
    await code_known(engine, "KEEPME")

    event = unlink_requested(user)
    await bus.publish(event)
    await bus.publish(event)
    assert await settled(engine, event.id, 1) == {chat: "sent"}
    await first.notifiers.unlinks.handle(event)  # a redelivery reaching the handler

    (message,) = telegram.fake.sent(chat)
    assert message.plain_text == (
        "🔕 This chat is no longer linked to the CRM (your CRM account was deactivated).\n"
        "You will receive no more notifications here; a new link code from the CRM links it again."
    )
    assert await rows(engine, "SELECT user_id FROM links") == [{"user_id": other}]
    assert await rows(engine, "SELECT user_id FROM link_codes") == [{"user_id": other}]
    (row,) = await rows(engine, "SELECT kind, status, attempts FROM notifications WHERE event_id = $1", event.id)
    assert row == {"kind": "unlinked", "status": "sent", "attempts": 1}

    # An unassigned new lead goes to every linked chat: no longer to this one.
    lead = new_lead()
    await bus.publish(lead)
    assert await settled(engine, lead.id, 1) == {other_chat: "sent"}
    await asyncio.sleep(0.2)
    assert len(telegram.fake.sent(chat)) == 1


async def test_unlinking_someone_not_linked_only_drops_their_codes(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    service = await start_notifier()
    user = next_id()
    await bus.publish(link_requested(user, "NOTYET"))
    await code_known(engine, "NOTYET")

    event = unlink_requested(user, "self", user)
    await bus.publish(event)
    await eventually(lambda: _no_codes(engine))
    await service.notifiers.unlinks.handle(event)
    assert await rows(engine, "SELECT * FROM notifications") == []
    assert telegram.fake.sent() == []


async def _no_codes(engine: AsyncEngine) -> bool:
    return await rows(engine, "SELECT 1 FROM link_codes") == []


async def test_the_unlink_of_a_chat_that_blocked_the_bot_is_recorded_skipped(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    user, chat = await linked(engine, telegram)
    await rows(engine, "UPDATE links SET blocked_at = now() WHERE user_id = $1 RETURNING user_id", user)

    event = unlink_requested(user, "admin")
    await bus.publish(event)
    assert await settled(engine, event.id, 1) == {chat: "skipped"}
    assert await rows(engine, "SELECT * FROM links") == []
    assert telegram.fake.sent(chat) == []
