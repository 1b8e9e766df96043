"""A customer's name learnt after their first message (``crm.contact.updated``), against the
Telegram fake with the real aiogram client: the new lead announced as "New customer" is
edited in place to the name, keeping its buttons, exactly once whatever the redeliveries,
and ``/deals`` and later notifications show it; an older name never replaces a newer one;
a notification held by quiet hours (and a mute) goes out with the name; only chats that
may see the deal are edited; and the edit meets Telegram's refusals like any send."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.contracts import (
    ContactDeal,
    ContactRef,
    ContactUpdated,
    ContactUpdatedData,
    DealHotLead,
    HotLeadData,
)
from jggl_common.db import autocommit, session_factory
from jggl_sandbox.telegram_fake import TelegramFakeServer
from notifier.bot.deals import render_stats
from notifier.notification_texts import OPEN_IN_CRM, REPLY, TAKE, renamed
from notifier.process import NotifierService
from notifier.projection import MyFigures, Projection
from notifier.renames import ContactRenames
from notifier.store import Store

from .conftest import Bus, StartNotifier, eventually, rows
from .deal_events import Deal
from .test_event_notifications import linked
from .test_linking import answers, user_types

CONSUMER = "notifier-contacts"


def unnamed_deal(assignee_id: int | None = None) -> Deal:
    """A deal whose customer crm knows only by their platform id (no profile read yet)."""
    deal = Deal(assignee_id=assignee_id)
    deal.name = deal.contact.external_id
    return deal


def contact_updated(deal: Deal, name: str, at: datetime, *others: Deal) -> ContactUpdated:
    """crm read the customer's profile (or someone renamed them) at ``at``: their open deals."""
    old = deal.name
    deal.name = name
    return ContactUpdated(
        producer="crm",
        occurred_at=at,
        data=ContactUpdatedData(
            contact=ContactRef(id=deal.id, platform=deal.platform, external_id=f"psid-{deal.id}", display_name=name),
            changes={"display_name": (old, name)},
            open_deals=[ContactDeal(id=d.id, assignee_id=d.assignee_id) for d in (deal, *others)],
        ),
    )


def edits(telegram: TelegramFakeServer, chat: int | None = None) -> list[Any]:
    """The editMessageText calls Telegram accepted (to ``chat``)."""
    return [
        call
        for call in telegram.fake.calls("editMessageText")
        if call.status == 200 and (chat is None or int(call.params["chat_id"]) == chat)
    ]


def shown(telegram: TelegramFakeServer, chat: int) -> list[dict[str, Any]]:
    """The bot's messages in the chat as the user sees them now."""
    return [message for message in telegram.fake.messages(chat) if message["from"].get("is_bot")]


async def notified(telegram: TelegramFakeServer, chat: int, count: int = 1) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        found = shown(telegram, chat)
        return found if len(found) >= count else None

    return list(await eventually(check))


async def recorded_sent(engine: AsyncEngine, chat: int, count: int = 1) -> None:
    """The chat's ``count`` notifications are recorded sent (after Telegram showed them)."""

    async def check() -> bool:
        found = await rows(engine, "SELECT status FROM notifications WHERE chat_id = $1", chat)
        return [row["status"] for row in found] == ["sent"] * count

    await eventually(check)


async def showing(telegram: TelegramFakeServer, chat: int, name: str) -> dict[str, Any]:
    """The chat's first bot message once its text names ``name``."""

    async def check() -> dict[str, Any] | None:
        found = shown(telegram, chat)
        return found[0] if found and name in found[0]["text"] else None

    return dict(await eventually(check))


async def consumed(bus: Bus, delivered: int) -> None:
    """The contacts consumer took ``delivered`` messages and has none left unacknowledged."""

    async def check() -> bool:
        info = await bus.nc.jetstream().consumer_info("CRM", CONSUMER)
        return bool(info.delivered.consumer_seq >= delivered and info.num_pending == 0 and info.num_ack_pending == 0)

    await eventually(check)


def renames_of(service: NotifierService, engine: AsyncEngine) -> ContactRenames:
    """The contacts consumer's handler, to hand it an event again (a redelivery)."""
    return ContactRenames(service.store, Projection(session_factory(engine)), service.updates.current_bot)


# ---------------------------------------------------------------------------- the text


def test_the_name_line_is_replaced_once_and_escaped() -> None:
    text = "🆕 <b>New lead</b>\n<b>New customer</b> · Instagram\nStage: new\n\nNew customer here &lt;b&gt;"
    assert renamed(text, "New customer", "Anna <Shop> & Co") == (
        "🆕 <b>New lead</b>\n<b>Anna &lt;Shop&gt; &amp; Co</b> · Instagram\nStage: new\n\nNew customer here &lt;b&gt;"
    )
    assert renamed(text, "Someone else", "Anna") is None


def test_a_wait_under_a_minute_is_escaped_in_stats() -> None:
    figures = MyFigures(replies=1, median_response_seconds=30.0, open_deals=1, awaiting_reply=0)
    assert "Median response time: &lt;1 min\n" in render_stats(figures, "UTC")


# ---------------------------------------------------------------------------- against the fake


async def test_the_new_customer_of_a_new_lead_gets_their_name_in_the_same_message_once(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    service = await start_notifier()
    user, chat = await linked(engine, telegram)
    deal = unnamed_deal(assignee_id=user)
    now = datetime.now(UTC)
    await bus.publish(
        deal.received(now - timedelta(seconds=2), "Hi! Is the green backpack still available?", first=True)
    )
    (before,) = await notified(telegram, chat)
    assert before["text"].splitlines()[:2] == ["🆕 New lead", "New customer · Messenger"]
    assert [button["text"] for button in before["reply_markup"]["inline_keyboard"][0]] == [OPEN_IN_CRM, REPLY]

    update = contact_updated(deal, "Anna Schmidt", now)
    await bus.publish(update)
    after = await showing(telegram, chat, "Anna Schmidt")
    assert after["message_id"] == before["message_id"]
    assert after["text"] == before["text"].replace("New customer · ", "Anna Schmidt · ", 1)
    assert after["reply_markup"] == before["reply_markup"]
    assert "Hi! Is the green backpack still available?" in after["text"]
    assert len(edits(telegram, chat)) == 1

    # The same event delivered twice (published again without its message id), and handed
    # to the handler again: nothing more is edited.
    await bus.nc.jetstream().publish(update.subject, update.model_dump_json().encode())
    await consumed(bus, 2)
    await renames_of(service, engine).handle(update)
    assert len(edits(telegram, chat)) == 1
    assert len(telegram.fake.calls("editMessageText")) == 1

    async def awaiting_reply() -> bool:
        known = await Projection(session_factory(engine)).deal(deal.id)
        return known is not None and known.last_customer_at is not None

    await eventually(awaiting_reply)
    await user_types(bus, telegram, chat, "/deals")
    listed = (await answers(telegram, chat, 2))[1]
    assert listed.splitlines()[2:4] == [
        "1. Anna Schmidt · Messenger · new",
        "⏱ waiting <1 min (since their last message)",
    ]
    # A later notification whose event still carried the old contact shows the newest name.
    hot = DealHotLead(
        producer="crm",
        occurred_at=now - timedelta(seconds=1),
        data=HotLeadData(
            deal=unnamed_deal(assignee_id=user).snapshot().model_copy(update={"id": deal.id}),
            summary="Wants the green backpack today",
            intent="purchase",
            provider="heuristic",
            analysis_version=1,
        ),
    )
    await bus.publish(hot)
    hot_message = (await notified(telegram, chat, 3))[2]
    assert hot_message["text"].splitlines()[:2] == ["🔥 Hot lead", "Anna Schmidt · Messenger"]


async def test_an_older_name_arriving_after_a_newer_one_changes_nothing(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    user, chat = await linked(engine, telegram)
    deal = unnamed_deal(assignee_id=user)
    now = datetime.now(UTC)
    await bus.publish(deal.received(now - timedelta(seconds=5), "Hello", first=True))
    await notified(telegram, chat)

    newer = contact_updated(deal, "Anna K. Schmidt", now)
    older = contact_updated(deal, "Anna", now - timedelta(seconds=2))
    await bus.publish(newer)
    await showing(telegram, chat, "Anna K. Schmidt")
    await bus.publish(older)
    await consumed(bus, 2)
    (message,) = shown(telegram, chat)
    assert message["text"].splitlines()[1] == "Anna K. Schmidt · Messenger"
    assert len(edits(telegram, chat)) == 1
    known = await Projection(session_factory(engine)).deal(deal.id)
    assert known is not None
    assert known.contact_name == "Anna K. Schmidt"

    # A deal event from before the newest name (it carries an older contact) keeps it too.
    await bus.publish(deal.updated(now - timedelta(seconds=4), stage="qualified"))

    async def restaged() -> bool:
        view = await Projection(session_factory(engine)).deal(deal.id)
        return view is not None and view.stage == "qualified"

    await eventually(restaged)
    known = await Projection(session_factory(engine)).deal(deal.id)
    assert known is not None
    assert known.contact_name == "Anna K. Schmidt"


async def test_a_notification_held_by_quiet_hours_and_mute_is_sent_with_the_name_learnt_meanwhile(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    service = await start_notifier(quiet_hours_sweep_seconds=0.1)
    store = Store(session_factory(engine))
    user, chat = await linked(engine, telegram)
    now = datetime.now(UTC)
    await store.set_quiet_hours(user, (now - timedelta(hours=1)).time(), (now + timedelta(hours=1)).time())
    deal = unnamed_deal(assignee_id=user)
    await bus.publish(deal.received(now - timedelta(seconds=1), "Still open tomorrow?", first=True))

    async def deferred() -> bool:
        found = await rows(engine, "SELECT status FROM notifications WHERE chat_id = $1", chat)
        return [row["status"] for row in found] == ["deferred"]

    await eventually(deferred)
    await bus.publish(contact_updated(deal, "Bruno Weiss", now))
    await consumed(bus, 1)
    assert shown(telegram, chat) == []

    await store.set_muted(user, True)  # and the user muted the bot meanwhile
    await store.set_quiet_hours(user, None, None)  # the quiet hours end
    assert await store.reschedule_deferred(user, datetime.now(UTC)) == 1
    assert await service.notifiers.deferred.sweep() == 0  # a muted user's wait for /unmute
    assert shown(telegram, chat) == []
    await store.set_muted(user, False)
    (message,) = await notified(telegram, chat)
    assert message["text"].splitlines()[:2] == ["🆕 New lead", "Bruno Weiss · Messenger"]
    assert [button["text"] for button in message["reply_markup"]["inline_keyboard"][0]] == [OPEN_IN_CRM, REPLY]
    assert edits(telegram) == []

    async def recorded() -> list[dict[str, Any]]:
        return await rows(engine, "SELECT contact_name FROM notifications WHERE chat_id = $1 AND status = 'sent'", chat)

    assert await eventually(recorded) == [{"contact_name": "Bruno Weiss"}]


async def test_only_who_may_see_the_deal_now_and_only_recent_messages_are_corrected(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    assignee, assignee_chat = await linked(engine, telegram)
    _, other_chat = await linked(engine, telegram)
    _, admin_chat = await linked(engine, telegram, role="admin")
    deal = unnamed_deal()  # unassigned: every linked chat hears of it
    old = unnamed_deal(assignee_id=assignee)
    now = datetime.now(UTC)
    await bus.publish(
        deal.received(now - timedelta(seconds=3), "Hello", first=True),
        old.received(now - timedelta(seconds=3), "Hello again", first=True),
    )
    for chat in (assignee_chat, other_chat, admin_chat):
        await recorded_sent(engine, chat, 2 if chat == assignee_chat else 1)
    async with autocommit(session_factory(engine)) as db:  # sent two days ago: Telegram no longer edits it
        await db.execute("UPDATE notifications SET sent_at = sent_at - interval '49 hours' WHERE deal_id = $1", old.id)

    deal.assignee_id = assignee  # someone took it meanwhile
    await bus.publish(contact_updated(deal, "Clara Nowak", now, old))
    await consumed(bus, 1)
    names = {
        chat: [m["text"].splitlines()[1] for m in shown(telegram, chat)]
        for chat in (assignee_chat, other_chat, admin_chat)
    }
    assert sorted(names[assignee_chat]) == ["Clara Nowak · Messenger", "New customer · Messenger"]
    assert names[other_chat] == ["New customer · Messenger"]  # no longer theirs to see
    assert names[admin_chat] == ["Clara Nowak · Messenger"]
    assert len(edits(telegram)) == 2
    (kept,) = [m for m in shown(telegram, assignee_chat) if "Clara" in m["text"]]
    assert [button["text"] for button in kept["reply_markup"]["inline_keyboard"][0]] == [OPEN_IN_CRM, TAKE, REPLY]


async def test_an_edit_meets_the_same_failures_as_a_send(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    service = await start_notifier(telegram_max_retry_after=0)  # a 429 fails at once: the event comes again
    throttled_user, throttled = await linked(engine, telegram)
    blocked_user, blocked = await linked(engine, telegram)
    gone_user, gone = await linked(engine, telegram)
    deals = {
        chat: unnamed_deal(assignee_id=user)
        for user, chat in ((throttled_user, throttled), (blocked_user, blocked), (gone_user, gone))
    }
    now = datetime.now(UTC)
    await bus.publish(*(deal.received(now - timedelta(seconds=2), "Hi", first=True) for deal in deals.values()))
    for chat in deals:
        await recorded_sent(engine, chat)
    telegram.fake.fail_next(2, retry_after=1, chat_id=throttled, method="editMessageText")
    telegram.fake.block(blocked)
    (message,) = shown(telegram, gone)
    async with autocommit(session_factory(engine)) as db:  # a message Telegram no longer has
        await db.execute(
            "UPDATE notifications SET telegram_message_id = telegram_message_id + 1000 WHERE chat_id = $1", gone
        )

    updates = {chat: contact_updated(deal, f"Name {chat}", now) for chat, deal in deals.items()}
    await bus.publish(*updates.values())
    await showing(telegram, throttled, f"Name {throttled}")
    await consumed(bus, 3)
    assert len(edits(telegram, throttled)) == 1
    assert len([call for call in telegram.fake.calls("editMessageText") if call.status == 429]) == 2

    assert await rows(engine, "SELECT blocked_at IS NOT NULL AS b FROM links WHERE chat_id = $1", blocked) == [
        {"b": True}
    ]
    (refused,) = await rows(engine, "SELECT text, error, contact_name FROM notifications WHERE chat_id = $1", gone)
    assert refused["text"] is None
    assert "message to edit not found" in refused["error"]
    assert refused["contact_name"] == "New customer"
    assert shown(telegram, gone)[0]["text"] == message["text"]

    # Handed the events again: the chat that blocked the bot and the refused message are left alone.
    calls = len(telegram.fake.calls("editMessageText"))
    renames = renames_of(service, engine)
    for update in updates.values():
        await renames.handle(update)
    assert len(telegram.fake.calls("editMessageText")) == calls


async def test_a_message_already_showing_the_name_is_recorded_as_such(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    service = await start_notifier()
    user, chat = await linked(engine, telegram)
    deal = unnamed_deal(assignee_id=user)
    now = datetime.now(UTC)
    await bus.publish(deal.received(now - timedelta(seconds=2), "Hi", first=True))
    await notified(telegram, chat)
    update = contact_updated(deal, "Dora Lind", now)
    await bus.publish(update)
    await showing(telegram, chat, "Dora Lind")
    await consumed(bus, 1)
    # As if the edit went through but its record did not (the process died in between).
    async with autocommit(session_factory(engine)) as db:
        await db.execute(
            "UPDATE notifications SET contact_name = 'New customer', contact_at = $2,"
            " text = replace(text, 'Dora Lind', 'New customer') WHERE chat_id = $1",
            chat,
            now - timedelta(seconds=2),
        )

    await renames_of(service, engine).handle(update)
    (refused,) = [call for call in telegram.fake.calls("editMessageText") if call.status != 200]
    assert "message is not modified" in (refused.description or "")
    (row,) = await rows(engine, "SELECT contact_name, text FROM notifications WHERE chat_id = $1", chat)
    assert row["contact_name"] == "Dora Lind"
    assert "Dora Lind" in row["text"]
    assert len(edits(telegram, chat)) == 1
