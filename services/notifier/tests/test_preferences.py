"""``/mute``, ``/unmute``, ``/notify`` and ``/quiet`` typed in the bot (through the Telegram
fake and ingest's update events), and what they change in the notifications a manager
gets: nothing while muted but the essential ones, nothing of a kind switched off."""

from __future__ import annotations

from typing import get_type_hints

from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_sandbox.telegram_fake import TelegramFakeServer
from notifier.bot import preference_texts as say
from notifier.bot import texts
from notifier.preferences import ESSENTIAL_KINDS, KIND_OFF_REASON, MUTED_REASON, kinds_for
from notifier.subscribers import Notifiers

from .conftest import Bus, StartNotifier, eventually, next_id, rows, update_received
from .test_event_notifications import linked, message_failed, settled
from .test_linking import answers, telegram_text, user_types
from .test_reminders import sla_breached, task_due


def test_every_kind_a_user_can_switch_is_a_notifier_s_and_has_a_label() -> None:
    sent = {cls.kind for cls in get_type_hints(Notifiers).values()}
    switchable = set(kinds_for("admin"))
    assert switchable <= sent
    assert switchable | ESSENTIAL_KINDS | {"deferred"} == sent
    assert set(say.KIND_LABELS) == switchable
    assert set(kinds_for("manager")) == switchable - {"channel_needs_reauth", "channel_health"}


async def reason(engine: AsyncEngine, event_id: str) -> str | None:
    (row,) = await rows(engine, "SELECT error FROM notifications WHERE event_id = $1", event_id)
    return row["error"]  # type: ignore[no-any-return]


async def test_an_unlinked_chat_is_told_how_to_link(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer
) -> None:
    await start_notifier()
    chat = next_id()
    for number, command in enumerate(("/mute", "/unmute", "/quiet 22-8", "/notify"), start=1):
        await user_types(bus, telegram, chat, command)
        assert (await answers(telegram, chat, number))[-1] == telegram_text(texts.INSTRUCTIONS)


async def test_muted_nothing_is_sent_but_the_essential_until_unmuted(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    user, chat = await linked(engine, telegram)
    await user_types(bus, telegram, chat, "/mute")
    assert await answers(telegram, chat) == [say.MUTED]

    muted = task_due(assignee_id=user, deal_assignee_id=None)
    own_reply = message_failed(author=user, assignee=None)
    others_reply = message_failed(author=None, assignee=user)
    await bus.publish(muted, own_reply, others_reply)
    assert await settled(engine, muted.id, 1) == {chat: "skipped"}
    assert await reason(engine, muted.id) == MUTED_REASON
    assert await settled(engine, others_reply.id, 1) == {chat: "skipped"}
    assert await settled(engine, own_reply.id, 1) == {chat: "sent"}  # essential: they wrote it
    assert len(telegram.fake.sent(chat)) == 2

    await user_types(bus, telegram, chat, "/unmute")
    assert (await answers(telegram, chat, 3))[2] == "🔔 Notifications resumed."
    again = task_due(assignee_id=user, deal_assignee_id=None)
    await bus.publish(again)
    assert await settled(engine, again.id, 1) == {chat: "sent"}
    assert telegram.fake.sent(chat)[3].plain_text.startswith("📌 Task due")


async def test_a_kind_switched_off_is_skipped_and_on_again_sent(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    user, chat = await linked(engine, telegram)
    await user_types(bus, telegram, chat, "/notify")
    await answers(telegram, chat)
    (menu,) = telegram.fake.sent(chat)
    assert [row[0]["text"] for row in menu.reply_markup["inline_keyboard"]] == [  # type: ignore[index]
        "✅ New leads",
        "✅ New messages",
        "✅ Hot leads",
        "✅ Replies not delivered",
        "✅ Overdue replies (SLA)",
        "✅ Tasks due",
        "✅ Daily digest",
    ]

    await bus.publish(update_received(telegram.fake.press_button(chat, "pref:task_due")))

    async def answered() -> list[dict[str, object]]:
        return telegram.fake.callback_answers()

    (answer,) = await eventually(answered)
    assert answer["text"] == "Tasks due: off"
    shown = next(m for m in telegram.fake.messages(chat) if m["message_id"] == menu.message_id)
    assert shown["reply_markup"]["inline_keyboard"][5][0]["text"] == "🚫 Tasks due"
    assert len(telegram.fake.sent(chat)) == 1  # edited in place, nothing new

    off = task_due(assignee_id=user, deal_assignee_id=None)
    still_on = sla_breached(assignee_id=user)
    await bus.publish(off, still_on)
    assert await settled(engine, off.id, 1) == {chat: "skipped"}
    assert await reason(engine, off.id) == KIND_OFF_REASON
    assert await settled(engine, still_on.id, 1) == {chat: "sent"}

    await bus.publish(update_received(telegram.fake.press_button(chat, "pref:task_due")))
    await eventually(lambda: _answers_at_least(telegram, 2))
    assert telegram.fake.callback_answers()[1]["text"] == "Tasks due: on"
    on_again = task_due(assignee_id=user, deal_assignee_id=None)
    await bus.publish(on_again)
    assert await settled(engine, on_again.id, 1) == {chat: "sent"}


async def _answers_at_least(telegram: TelegramFakeServer, count: int) -> bool:
    return len(telegram.fake.callback_answers()) >= count


async def test_admins_also_switch_channel_alerts(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    _, chat = await linked(engine, telegram, role="admin")
    await user_types(bus, telegram, chat, "/notify")
    await answers(telegram, chat)
    (menu,) = telegram.fake.sent(chat)
    keyboard = menu.reply_markup["inline_keyboard"]  # type: ignore[index]
    assert keyboard[-2:] == [
        [{"text": "✅ Channels to reconnect", "callback_data": "pref:channel_needs_reauth"}],
        [{"text": "✅ Channel health", "callback_data": "pref:channel_health"}],
    ]


async def test_quiet_hours_are_set_shown_and_switched_off_and_bad_input_explained(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    user, chat = await linked(engine, telegram)

    await user_types(bus, telegram, chat, "/quiet")
    assert (await answers(telegram, chat))[-1] == "Quiet hours are off. Set them with /quiet 22:00-08:00 (UTC time)."

    await user_types(bus, telegram, chat, "/quiet tonight")
    assert (await answers(telegram, chat, 2))[-1] == (
        "❌ That is not quiet hours (expected two times of day, from-until).\n"
        "Send them as from-until on a 24-hour clock (UTC time), for example /quiet 22:00-08:00; "
        "/quiet off switches them off."
    )
    await user_types(bus, telegram, chat, "/quiet 25:00-08:00")
    assert "(25:00 is not a time of day)" in (await answers(telegram, chat, 3))[-1]

    await user_types(bus, telegram, chat, "/quiet 23:30-23:31")
    assert (await answers(telegram, chat, 4))[-1].startswith("🌙 Quiet hours: 23:30–23:31 (UTC time).")
    (prefs,) = await rows(engine, "SELECT quiet_start, quiet_end FROM preferences WHERE user_id = $1", user)
    assert (str(prefs["quiet_start"]), str(prefs["quiet_end"])) == ("23:30:00", "23:31:00")

    await user_types(bus, telegram, chat, "/quiet")
    assert (await answers(telegram, chat, 5))[-1].startswith("🌙 Quiet hours: 23:30–23:31 (UTC time).")

    await user_types(bus, telegram, chat, "/quiet off")
    assert (await answers(telegram, chat, 6))[-1] == "☀️ Quiet hours off: notifications arrive as they happen."
    (prefs,) = await rows(engine, "SELECT quiet_start, quiet_end FROM preferences WHERE user_id = $1", user)
    assert prefs == {"quiet_start": None, "quiet_end": None}
