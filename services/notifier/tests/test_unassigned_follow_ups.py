"""Under ``notify.unassigned_leads = round_robin`` an unassigned deal stays with the manager
its new lead went to: the customer's next messages, hot leads, tasks due and the overdue
reply reach that manager and nobody else (their preferences applied as usual), on any
replica; when that manager can no longer be reached the next turn takes the deal over;
once assigned, the assignee hears of it. The other modes keep telling every linked chat."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.contracts import (
    DealHotLead,
    Envelope,
    HotLeadData,
    SlaBreachData,
    SlaBreached,
    TaskDue,
    TaskDueData,
    TelegramUnlinkRequested,
    TelegramUnlinkRequestedData,
)
from jggl_sandbox.telegram_fake import TelegramFakeServer

from .conftest import Bus, StartNotifier, eventually, next_id, rows
from .deal_events import Deal
from .test_event_notifications import linked, settled
from .test_unassigned_leads import _unlinked, only_told, replicas

ROUND_ROBIN = {"telegram_per_chat_per_second": 0, "notify_unassigned_leads": "round_robin"}


@pytest.fixture(autouse=True)
def unpaced(telegram: TelegramFakeServer) -> None:
    """Many notifications to one chat in a moment: the fake's 429s are not what is tested here."""
    telegram.fake.set_rate_limits(False)


def hot(deal: Deal) -> DealHotLead:
    data = HotLeadData(
        deal=deal.snapshot(), summary="Wants two, today", intent="purchase", provider="heuristic", analysis_version=1
    )
    return DealHotLead(producer="crm", data=data)


def task(deal: Deal) -> TaskDue:
    """A task of the deal with no assignee of its own."""
    data = TaskDueData(task_id=next_id(), title="Call back", due_at=datetime.now(UTC), deal=deal.snapshot())
    return TaskDue(producer="crm", data=data)


def breach(deal: Deal) -> SlaBreached:
    data = SlaBreachData(
        deal=deal.snapshot(),
        level="breach",
        waiting_since=datetime.now(UTC) - timedelta(minutes=47),
        waited_minutes=47,
        sla_minutes=30,
    )
    return SlaBreached(producer="crm", data=data)


async def test_a_deal_s_later_notifications_reach_only_the_manager_its_lead_went_to(
    start_notifier: StartNotifier, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    (first, first_chat), (second, second_chat) = await linked(engine, telegram), await linked(engine, telegram)
    _, admin_chat = await linked(engine, telegram, role="admin")
    service = await start_notifier(**ROUND_ROBIN)
    notifiers, store, now = service.notifiers, service.store, datetime.now(UTC)

    mine, theirs = Deal(name="Ann Customer"), Deal(name="Bob Buyer")
    for deal in (mine, theirs):
        await notifiers.new_leads.handle(deal.received(now, "Hi!", first=True))
    message, their_message = mine.received(now, "Is it still there?"), theirs.received(now, "Hello?")
    await notifiers.new_messages.handle(message)
    await notifiers.new_messages.handle(their_message)
    assert await only_told(engine, message, 1) == [first_chat]
    assert await only_told(engine, their_message, 1) == [second_chat]
    alert, due, overdue = hot(mine), task(mine), breach(mine)
    await notifiers.hot_leads.handle(alert)
    await notifiers.tasks_due.handle(due)
    await notifiers.sla_breaches.handle(overdue)
    for event in (alert, due, overdue):
        assert await only_told(engine, event, 1) == [first_chat]
    texts = [message.text for message in telegram.fake.sent(first_chat)]
    assert len(texts) == 5
    assert all("Ann Customer" in text for text in texts)
    assert "Is it still there?" in texts[1]
    assert "Call back" in texts[3]
    assert [message.text for message in telegram.fake.sent(second_chat)][-1].count("Bob Buyer") == 1
    assert len(telegram.fake.sent(second_chat)) == 2
    assert telegram.fake.sent(admin_chat) == []

    # The manager's preferences apply to their deal as to any: nobody else is told instead.
    await store.toggle_kind(first, "new_message")
    off = mine.received(now, "Hello??")
    await notifiers.new_messages.handle(off)
    assert await settled(engine, off.id, 1) == {first_chat: "skipped"}
    await store.set_muted(first, True)
    muted = hot(mine)
    await notifiers.hot_leads.handle(muted)
    assert await settled(engine, muted.id, 1) == {first_chat: "skipped"}
    await store.set_muted(first, False)
    await store.set_quiet_hours(first, time((now - timedelta(hours=1)).hour), time((now + timedelta(hours=2)).hour))
    quiet = task(mine)
    await notifiers.tasks_due.handle(quiet)
    assert await settled(engine, quiet.id, 1) == {first_chat: "deferred"}
    assert len(telegram.fake.sent(second_chat)) == 2

    # Assigned: the assignee hears of it, whoever the lead went to.
    mine.assignee_id = second
    assigned = mine.received(now, "Anyone?")
    await notifiers.new_messages.handle(assigned)
    assert await only_told(engine, assigned, 1) == [second_chat]
    (turns,) = await rows(engine, "SELECT turns FROM rotations WHERE name = 'new_lead'")
    assert turns == {"turns": 2}


async def test_the_other_modes_still_tell_every_linked_chat_of_a_new_message(
    start_notifier: StartNotifier, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    chats = sorted(
        [(await linked(engine, telegram))[1] for _ in range(2)] + [(await linked(engine, telegram, role="admin"))[1]]
    )
    service = await start_notifier(telegram_per_chat_per_second=0, notify_unassigned_leads="admins")
    deal, now = Deal(), datetime.now(UTC)
    await service.notifiers.new_leads.handle(deal.received(now, "Hi!", first=True))
    message, alert = deal.received(now, "Still there?"), hot(deal)
    await service.notifiers.new_messages.handle(message)
    await service.notifiers.hot_leads.handle(alert)
    assert await only_told(engine, message, 3) == chats
    assert await only_told(engine, alert, 3) == chats
    assert await rows(engine, "SELECT deal_id FROM deals WHERE offered_to IS NOT NULL") == []


async def test_two_replicas_keep_each_deal_with_the_manager_its_lead_went_to(
    bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine, pg_schema: str
) -> None:
    managers = sorted([await linked(engine, telegram) for _ in range(3)])
    _, admin_chat = await linked(engine, telegram, role="admin")
    deals, now = [Deal(name=f"Customer {n}") for n in range(6)], datetime.now(UTC)

    async with replicas(engine, pg_schema, bus, telegram, 2, notify_unassigned_leads="round_robin") as started:
        leads = [deal.received(now, "Hi!", first=True) for deal in deals]
        await bus.publish(*leads)
        went = {deal.id: (await only_told(engine, lead, 1))[0] for deal, lead in zip(deals, leads, strict=True)}
        messages = [deal.received(now + timedelta(seconds=1), "More?") for deal in deals]
        alerts = [hot(deal) for deal in deals]
        await bus.publish(*messages, *alerts)
        follow_ups: list[Envelope] = [*messages, *alerts]
        for deal, event in zip(deals + deals, follow_ups, strict=True):
            assert await only_told(engine, event, 1) == [went[deal.id]]
        # Handled again on the other replica (a redelivery): the same manager, told once.
        await started[1].notifiers.new_messages.handle(messages[0])
        assert await only_told(engine, messages[0], 1) == [went[deals[0].id]]

        # A deal's lead and its hot lead at once on the two replicas: one manager for both.
        fresh = Deal()
        lead, alert = fresh.received(now, "Hi!", first=True), hot(fresh)
        await asyncio.gather(started[0].notifiers.new_leads.handle(lead), started[1].notifiers.hot_leads.handle(alert))
        assert await only_told(engine, lead, 1) == await only_told(engine, alert, 1)

    per_chat = Counter(went.values())  # six deals, three managers, in turn
    assert sorted(per_chat) == sorted(chat for _, chat in managers)
    assert sorted(per_chat.values()) == [2, 2, 2]
    assert telegram.fake.sent(admin_chat) == []
    (rotation,) = await rows(engine, "SELECT turns FROM rotations WHERE name = 'new_lead'")
    assert rotation == {"turns": 7}


async def test_when_the_deal_s_manager_cannot_be_reached_the_next_turn_takes_it_over_for_good(
    start_notifier: StartNotifier,
    bus: Bus,
    telegram: TelegramFakeServer,
    engine: AsyncEngine,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    (first, first_chat), (_, second_chat), (third, third_chat) = [await linked(engine, telegram) for _ in range(3)]
    _, admin_chat = await linked(engine, telegram, role="admin")
    service = await start_notifier(**ROUND_ROBIN)
    notifiers, store, deal, now = service.notifiers, service.store, Deal(), datetime.now(UTC)
    lead = deal.received(now, "Hi!", first=True)
    await notifiers.new_leads.handle(lead)
    assert await only_told(engine, lead, 1) == [first_chat]

    # Deactivated: crm unlinks the manager; the deal's next message takes the next turn, and stays.
    await bus.publish(
        TelegramUnlinkRequested(producer="crm", data=TelegramUnlinkRequestedData(user_id=first, reason="deactivated"))
    )
    await eventually(lambda: _unlinked(engine, first))
    taken, kept = deal.received(now, "Hello?"), deal.received(now, "Anyone?")
    await notifiers.new_messages.handle(taken)
    await notifiers.new_messages.handle(kept)
    assert await only_told(engine, taken, 1) == [second_chat]
    assert await only_told(engine, kept, 1) == [second_chat]
    assert "round robin: the deal passes to the next manager" in capsys.readouterr().out + caplog.text

    # That chat blocks the bot: the third manager takes the deal over.
    await store.mark_blocked(second_chat)
    alert, due = hot(deal), task(deal)
    await notifiers.hot_leads.handle(alert)
    await notifiers.tasks_due.handle(due)
    assert await only_told(engine, alert, 1) == [third_chat]
    assert await only_told(engine, due, 1) == [third_chat]

    # Nobody left to reach: the admins, and the deal stays the third manager's for when they return.
    await store.mark_blocked(third_chat)
    nobody = deal.received(now, "Hello???")
    await notifiers.new_messages.handle(nobody)
    assert await only_told(engine, nobody, 1) == [admin_chat]
    await store.clear_blocked(third_chat)
    back = deal.received(now, "Ok, still here")
    await notifiers.new_messages.handle(back)
    assert await only_told(engine, back, 1) == [third_chat]
    assert await rows(engine, "SELECT offered_to FROM deals WHERE deal_id = $1", deal.id) == [{"offered_to": third}]
    assert [len(telegram.fake.sent(chat)) for chat in (second_chat, third_chat)] == [2, 3]
