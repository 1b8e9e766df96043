"""The notifier process: its consumers, the outbox relay and the operational endpoints, in
one event loop, started and stopped together."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from aiogram import Bot, Dispatcher
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.bus import RetryPolicy, ServiceBus
from jggl_common.logs import get_logger
from jggl_common.outbox import Outbox
from jggl_common.process import BackgroundService, cancel_tasks, connect, service_app
from jggl_common.retention import register as register_retention
from notifier import subscribers
from notifier.actions import ActionAnswers, DealActions
from notifier.bot import make_dispatcher
from notifier.business_time import BusinessClock
from notifier.channel_alerts import ChannelHealthNotifier
from notifier.config import NotifierSettings
from notifier.migrate import MIGRATIONS
from notifier.notifications import (
    DeferredNotifier,
    HotLeadNotifier,
    NewLeadNotifier,
    NewMessageNotifier,
    ReauthNotifier,
    ReplyFailedNotifier,
    UnlinkNotifier,
)
from notifier.projection import Projection
from notifier.reminders import DailyDigestNotifier, SlaBreachNotifier, TaskDueNotifier
from notifier.retention import DURABLE as RETENTION_DURABLE
from notifier.retention import notifier_retention
from notifier.store import Store
from notifier.telegram import make_bot
from notifier.unassigned import UnassignedRecipients
from notifier.updates import UpdateModes

__all__ = ["NotifierService", "build", "create_app"]

log = get_logger(__name__)

TELEGRAM_READINESS_SECONDS = 30.0
"""How often ``/readyz`` asks Telegram ``getMe`` (between, it repeats the last answer)."""

_SWEEP_DRAIN_SECONDS = 10.0
"""At stop, how long the sweep under way may take to finish (then it is cancelled; what
it was sending stays leased and is sent again later)."""


@dataclass
class NotifierService(BackgroundService):
    """Everything one notifier process runs, wired together (tests build several side by side)."""

    settings: NotifierSettings
    engine: AsyncEngine
    bus: ServiceBus
    outbox: Outbox
    store: Store
    bot: Bot | None
    dispatcher: Dispatcher
    notifiers: subscribers.Notifiers
    updates: UpdateModes
    clock: BusinessClock
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _sweeper: asyncio.Task[None] | None = None

    name = "notifier"
    migrations = MIGRATIONS

    @property
    def new_leads(self) -> NewLeadNotifier:
        return self.notifiers.new_leads

    async def start(self) -> None:
        """Wait for the schema to be migrated, then start consuming (the bus is connected)."""
        if self.bot is None:
            log.warning("no TELEGRAM_BOT_TOKEN: notifications are recorded as skipped, updates ignored")
        live = await self.start_following()
        if live is not None:
            self.clock.live = live
        await self.updates.start(live)
        await self.bus.broker.start()
        # The outbox is pruned by the daily retention.notifier job.
        self._tasks = [asyncio.create_task(self.outbox.relay(prune=False), name="outbox-relay")]
        sweeping = self.notifiers.deferred.run(self.settings.quiet_hours_sweep_seconds)
        self._sweeper = asyncio.create_task(sweeping, name="deferred-notifications")

    async def stop(self) -> None:
        """Stop taking messages, finish what is in flight, close everything."""
        await self.bus.stop()
        if self._sweeper is not None:  # the sweep under way finishes first, within reason
            self.notifiers.deferred.stop()
            with suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._sweeper, _SWEEP_DRAIN_SECONDS)
        await cancel_tasks(*self._tasks)
        await self.updates.stop()
        await self.stop_following()
        if self.bot is not None:
            await self.bot.session.close()
        await self.engine.dispose()


async def build(
    settings: NotifierSettings,
    *,
    engine: AsyncEngine | None = None,
    durable_prefix: str = "",
    policy: RetryPolicy | None = None,
) -> NotifierService:
    """Connect to NATS and wire a notifier process (nothing is consumed until
    :meth:`NotifierService.start`)."""
    engine, sessions, bus, outbox = await connect("notifier", settings, engine)
    store = Store(sessions)
    clock = BusinessClock(settings.business_timezone)
    bot = make_bot(settings)
    dispatcher = make_dispatcher(store, clock)
    projection = Projection(sessions)
    # The deal buttons and commands (bot.actions, bot.deals) read these from the dispatcher.
    dispatcher["projection"] = projection
    dispatcher["deal_actions"] = DealActions(sessions, outbox, projection)
    dispatcher["app_url"] = settings.app_url
    unassigned = UnassignedRecipients(store, clock, settings.notify_unassigned_leads)
    notifiers = subscribers.Notifiers(
        new_leads=NewLeadNotifier(
            store, bot, settings.app_url, projection=projection, clock=clock, unassigned=unassigned
        ),
        new_messages=NewMessageNotifier(
            store, bot, settings.app_url, projection=projection, clock=clock, unassigned=unassigned
        ),
        hot_leads=HotLeadNotifier(store, bot, settings.app_url, clock=clock, unassigned=unassigned),
        failed_replies=ReplyFailedNotifier(store, bot, settings.app_url, clock=clock),
        reauth=ReauthNotifier(store, bot, settings.app_url, clock=clock),
        channel_health=ChannelHealthNotifier(store, bot, settings.app_url, clock=clock),
        unlinks=UnlinkNotifier(store, bot, settings.app_url, clock=clock),
        answers=ActionAnswers(store, bot, settings.app_url, clock=clock),
        sla_breaches=SlaBreachNotifier(store, bot, settings.app_url, clock=clock, unassigned=unassigned),
        tasks_due=TaskDueNotifier(store, bot, settings.app_url, clock=clock, unassigned=unassigned),
        digests=DailyDigestNotifier(store, bot, settings.app_url, clock=clock),
        deferred=DeferredNotifier(store, bot, settings.app_url, clock=clock),
    )

    def use_bot(new: Bot | None) -> None:  # the live token's bot sends the notifications too
        for notifier in (
            notifiers.new_leads,
            notifiers.new_messages,
            notifiers.hot_leads,
            notifiers.failed_replies,
            notifiers.reauth,
            notifiers.channel_health,
            notifiers.unlinks,
            notifiers.answers,
            notifiers.sla_breaches,
            notifiers.tasks_due,
            notifiers.digests,
            notifiers.deferred,
        ):
            notifier.bot = new

    updates = UpdateModes(settings, engine, store, dispatcher, on_bot=use_bot)
    subscribers.register(
        bus,
        store,
        bot,
        dispatcher,
        notifiers,
        prefix=durable_prefix,
        policy=policy,
        current_bot=updates.current_bot,
        projection=projection,
    )
    # The scheduler's retention.notifier: the notification log, handled updates, codes, actions, drafts, outbox.
    retention = notifier_retention(sessions, outbox, settings)
    register_retention(bus, retention, durable=durable_prefix + RETENTION_DURABLE, policy=policy)
    return NotifierService(settings, engine, bus, outbox, store, bot, dispatcher, notifiers, updates, clock)


def create_app(
    settings: NotifierSettings, *, telegram_readiness_seconds: float = TELEGRAM_READINESS_SECONDS
) -> FastAPI:
    """The notifier process as an ASGI app: its lifespan runs the service, its routes are
    the operational endpoints (``/readyz`` asks Telegram ``getMe`` at most every
    ``telegram_readiness_seconds``)."""

    def has_token(service: NotifierService) -> bool:
        return bool(service.updates.token())

    async def get_me(service: NotifierService) -> bool:
        bot = service.updates.current_bot()  # None with a token aiogram refused: down
        return bot is not None and bool(await bot.get_me())

    # Telegram is optional: while it cannot be reached notifications wait or are recorded
    # as skipped, and the notifier keeps consuming. Without a bot token (TELEGRAM_BOT_TOKEN
    # or the live telegram.bot_token) it is "disabled": a deployment without Telegram.
    # getMe is asked at most every telegram_readiness_seconds, whatever the probe rate.
    return service_app(
        "notifier",
        lambda: build(settings),
        started=lambda service: {"bot": service.bot is not None},
        optional={"telegram": get_me},
        enabled={"telegram": has_token},
        asked_every={"telegram": telegram_readiness_seconds},
    )
