"""Who hears of a new lead (and an SLA breach) nobody is assigned to, against the Telegram
fake: everyone, the admins, or one manager at a time in turn (``notify.unassigned_leads``).
The turn is fair over many leads and two replicas, carries on after a restart, passes over
a manager who cannot be told now, falls back to the admins (saying so in the log), and the
setting changes at run time."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.contracts import Envelope, TelegramUnlinkRequested, TelegramUnlinkRequestedData
from jggl_common.live_settings import LiveSettings
from jggl_common.testing import TEST_DATABASE_URL
from jggl_sandbox.telegram_fake import TelegramFakeServer
from notifier.config import NotifierSettings
from notifier.process import NotifierService, build
from notifier.unassigned import SETTING

from .conftest import (
    APP_KEY,
    APP_URL,
    FAST_RETRIES,
    TOKEN,
    Bus,
    StartNotifier,
    eventually,
    new_lead,
    rows,
)
from .test_event_notifications import linked
from .test_reminders import sla_breached


@pytest.fixture(autouse=True)
def unpaced(telegram: TelegramFakeServer) -> None:
    """Many notifications to one chat in a moment: the fake's 429s are not what is tested here."""
    telegram.fake.set_rate_limits(False)


async def told(engine: AsyncEngine, event: Envelope, chats: int) -> list[int]:
    """The chats notified of ``event`` (sent), once there are ``chats`` of them, sorted."""

    async def check() -> list[int] | None:
        found = await rows(engine, "SELECT chat_id, status FROM notifications WHERE event_id = $1", event.id)
        sent = sorted(row["chat_id"] for row in found if row["status"] == "sent")
        return sent if len(sent) >= chats else None

    return list(await eventually(check, timeout=20))


async def only_told(engine: AsyncEngine, event: Envelope, chats: int) -> list[int]:
    """Like :func:`told`, then a moment more to see that nobody else is told."""
    found = await told(engine, event, chats)
    await asyncio.sleep(0.3)
    assert await told(engine, event, chats) == found
    return found


@asynccontextmanager
async def replicas(
    engine: AsyncEngine, pg_schema: str, bus: Bus, telegram: TelegramFakeServer, count: int, **overrides: Any
) -> AsyncIterator[list[NotifierService]]:
    """``count`` notifier processes sharing the durable consumers, stopped on leaving (a restart)."""
    settings = NotifierSettings(
        _env_file=None,
        app_key=APP_KEY,
        nats_url=bus.url,
        app_url=APP_URL,
        database_url=TEST_DATABASE_URL,
        db_schema=pg_schema,
        telegram_bot_token=TOKEN,
        telegram_api_url=telegram.url,
        telegram_per_chat_per_second=0,
        **overrides,
    )
    started: list[NotifierService] = []
    try:
        for _ in range(count):
            service = await build(settings, engine=engine, policy=FAST_RETRIES)
            await service.start()
            started.append(service)
        yield started
    finally:
        for service in started:
            await service.stop()


async def test_each_mode_tells_its_chats_and_an_assigned_lead_still_goes_to_its_assignee(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    (manager, manager_chat), (_, other_chat) = await linked(engine, telegram), await linked(engine, telegram)
    _, admin_chat = await linked(engine, telegram, role="admin")
    everyone = sorted([manager_chat, other_chat, admin_chat])

    default = await start_notifier(telegram_per_chat_per_second=0)
    assert default.settings.notify_unassigned_leads == "everyone"
    lead = new_lead()
    await bus.publish(lead)
    assert await only_told(engine, lead, 3) == everyone
    assert "Ann Customer" in telegram.fake.sent(admin_chat)[-1].text

    # The environment's default in a replica of its own; the live setting is unset.
    admins = await start_notifier(telegram_per_chat_per_second=0, notify_unassigned_leads="admins")
    lead, breach = new_lead(), sla_breached(assignee_id=None)
    await admins.notifiers.new_leads.handle(lead)
    await admins.notifiers.sla_breaches.handle(breach)
    assert await only_told(engine, lead, 1) == [admin_chat]
    assert await only_told(engine, breach, 1) == [admin_chat]
    assigned = new_lead(assignee_id=manager)
    await admins.notifiers.new_leads.handle(assigned)
    assert await only_told(engine, assigned, 1) == [manager_chat]

    turns = await start_notifier(telegram_per_chat_per_second=0, notify_unassigned_leads="round_robin")
    first, second = new_lead(), new_lead()
    await turns.notifiers.new_leads.handle(first)
    await turns.notifiers.new_leads.handle(second)
    assert sorted(await only_told(engine, first, 1) + await only_told(engine, second, 1)) == sorted(
        [manager_chat, other_chat]
    )
    breach = sla_breached(assignee_id=None)
    await turns.notifiers.sla_breaches.handle(breach)
    (breach_chat,) = await only_told(engine, breach, 1)
    assert breach_chat in (manager_chat, other_chat)  # a deal no manager had yet: the next turn
    escalation = sla_breached(assignee_id=None, level="escalation")
    await turns.notifiers.sla_breaches.handle(escalation)
    assert await only_told(engine, escalation, 1) == [admin_chat]  # escalations go to the admins as before


async def test_round_robin_is_fair_across_two_replicas_and_carries_on_after_a_restart(
    bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine, pg_schema: str
) -> None:
    managers = sorted([await linked(engine, telegram) for _ in range(3)])
    _, admin_chat = await linked(engine, telegram, role="admin")
    chat_of = dict(managers)

    leads = [new_lead(name=f"Customer {n}") for n in range(10)]
    async with replicas(engine, pg_schema, bus, telegram, 2, notify_unassigned_leads="round_robin") as started:
        await bus.publish(*leads)
        went = {lead.id: await only_told(engine, lead, 1) for lead in leads}
        # Handled again (a redelivery) by the other replica: the same manager, told once, the turn stays.
        await started[1].notifiers.new_leads.handle(leads[0])
        assert await only_told(engine, leads[0], 1) == went[leads[0].id]
    assert all(len(chats) == 1 for chats in went.values())
    per_chat = Counter(chats[0] for chats in went.values())
    assert admin_chat not in per_chat
    # Ten leads, three managers: 4, 3 and 3, by user id; the last turn was the first manager's.
    assert sorted(per_chat.values()) == [3, 3, 4]
    assert per_chat[chat_of[managers[0][0]]] == 4
    (rotation,) = await rows(engine, "SELECT last_user_id, turns FROM rotations WHERE name = 'new_lead'")
    assert rotation == {"last_user_id": managers[0][0], "turns": 10}

    # A new process (both stopped): the turn carries on with the second manager, then the third.
    async with replicas(engine, pg_schema, bus, telegram, 1, notify_unassigned_leads="round_robin"):
        after = [new_lead(), new_lead()]
        for lead in after:
            await bus.publish(lead)
            per_chat.update(await only_told(engine, lead, 1))
    assert [await told(engine, lead, 1) for lead in after] == [[chat_of[managers[1][0]]], [chat_of[managers[2][0]]]]
    assert sorted(per_chat.values()) == [4, 4, 4]
    assert len(telegram.fake.sent(admin_chat)) == 0


async def test_round_robin_passes_over_who_cannot_be_told_and_falls_back_to_the_admins(
    start_notifier: StartNotifier,
    bus: Bus,
    telegram: TelegramFakeServer,
    engine: AsyncEngine,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    service = await start_notifier(telegram_per_chat_per_second=0, notify_unassigned_leads="round_robin")
    store = service.store
    (muted, _), (kind_off, _), (deactivated, _), (_, blocked_chat), (quiet, _) = [
        await linked(engine, telegram) for _ in range(5)
    ]
    (first, first_chat), (second, second_chat) = await linked(engine, telegram), await linked(engine, telegram)
    _, admin_chat = await linked(engine, telegram, role="admin")
    await store.set_muted(muted, True)
    await store.toggle_kind(kind_off, "new_lead")
    await store.mark_blocked(blocked_chat)
    now = datetime.now(UTC)
    await store.set_quiet_hours(quiet, time((now - timedelta(hours=1)).hour), time((now + timedelta(hours=2)).hour))
    await bus.publish(
        TelegramUnlinkRequested(
            producer="crm", data=TelegramUnlinkRequestedData(user_id=deactivated, reason="deactivated")
        )
    )
    await eventually(lambda: _unlinked(engine, deactivated))

    leads = [new_lead() for _ in range(4)]
    for lead in leads:
        await service.notifiers.new_leads.handle(lead)
    assert [await only_told(engine, lead, 1) for lead in leads] == [
        [first_chat],
        [second_chat],
        [first_chat],
        [second_chat],
    ]
    skipped = await rows(engine, "SELECT 1 FROM notifications WHERE kind = 'new_lead' AND status <> 'sent'")
    assert skipped == []  # passed over, not recorded skipped or held

    # Nobody left to take the turn: the admins are told, and the log says why.
    await store.set_muted(first, True)
    await store.toggle_kind(second, "new_lead")
    lead = new_lead()
    await service.notifiers.new_leads.handle(lead)
    assert await only_told(engine, lead, 1) == [admin_chat]
    logs = capsys.readouterr().out + caplog.text
    assert "round robin: no manager can be told now, the admins are" in logs

    # /unmute: back in the turn.
    await store.set_muted(first, False)
    lead = new_lead()
    await service.notifiers.new_leads.handle(lead)
    assert await only_told(engine, lead, 1) == [first_chat]


async def _unlinked(engine: AsyncEngine, user_id: int) -> bool:
    return not await rows(engine, "SELECT 1 FROM links WHERE user_id = $1", user_id)


async def test_the_setting_changes_at_run_time(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    (_, first_chat), (_, second_chat) = await linked(engine, telegram), await linked(engine, telegram)
    _, admin_chat = await linked(engine, telegram, role="admin")
    service = await start_notifier(telegram_per_chat_per_second=0)
    live = LiveSettings(bus.nc, APP_KEY, service.settings.settings_bucket)
    unassigned = service.notifiers.new_leads.unassigned
    assert unassigned is not None

    following = service.clock.live
    assert following is not None

    async def switched(value: str | None) -> None:
        if value is None:
            await live.delete(SETTING)
        else:
            await live.put(SETTING, value, secret=False)
        await eventually(lambda: _is(following.get(SETTING), value))

    await switched("admins")
    lead = new_lead()
    await bus.publish(lead)
    assert await only_told(engine, lead, 1) == [admin_chat]

    await switched("round_robin")
    leads = [new_lead(), new_lead()]
    for lead in leads:
        await bus.publish(lead)
    assert sorted([(await only_told(engine, lead, 1))[0] for lead in leads]) == sorted([first_chat, second_chat])

    await switched("nobody")  # written around crm's check: ignored, the environment's applies
    assert unassigned.mode() == "everyone"
    lead = new_lead()
    await bus.publish(lead)
    assert await only_told(engine, lead, 3) == sorted([first_chat, second_chat, admin_chat])

    await switched(None)  # deleted: back to the environment's default, everyone
    lead = new_lead()
    await bus.publish(lead)
    assert await only_told(engine, lead, 3) == sorted([first_chat, second_chat, admin_chat])


async def _is(value: str | None, expected: str | None) -> bool:
    return value == expected
