"""The scheduler process: the clock loop, the consumers of commands and outcomes, the
outbox relay and the operational endpoints, in one event loop, started and stopped together."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.bus import RetryPolicy, ServiceBus
from jggl_common.live_settings import LiveSettings
from jggl_common.logs import get_logger
from jggl_common.outbox import Outbox
from jggl_common.process import BackgroundService, cancel_tasks, connect, service_app
from scheduler.config import SchedulerSettings
from scheduler.jobs import subscribers
from scheduler.jobs.definitions import JobDefinition, builtin_jobs
from scheduler.jobs.service import Scheduler
from scheduler.migrate import MIGRATIONS

__all__ = ["BusinessTimezone", "SchedulerService", "build", "create_app"]

log = get_logger(__name__)


class BusinessTimezone:
    """The business time zone: the live ``business.timezone`` when set and known, else
    ``BUSINESS_TIMEZONE``."""

    def __init__(self, default: str) -> None:
        self._default = default
        self.live: LiveSettings | None = None
        self._refused: str | None = None

    def __call__(self) -> str:
        name = (self.live.get("business.timezone") or "").strip() if self.live is not None else ""
        if not name:
            return self._default
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            if self._refused != name:  # once per bad value, not once a second
                log.error("unknown business.timezone ignored", timezone=name, using=self._default)
                self._refused = name
            return self._default
        return name


@dataclass
class SchedulerService(BackgroundService):
    """Everything one scheduler process runs, wired together (tests build several side by side)."""

    settings: SchedulerSettings
    engine: AsyncEngine
    bus: ServiceBus
    outbox: Outbox
    scheduler: Scheduler
    business_timezone: BusinessTimezone
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    name = "scheduler"
    migrations = MIGRATIONS

    async def start(self) -> None:
        """Wait for the schema to be migrated, follow the live settings, write the job
        definitions, start consuming and keeping time (the bus is connected)."""
        self.business_timezone.live = await self.start_following()
        await self.scheduler.seed()
        await self.bus.broker.start()
        self._tasks = [
            asyncio.create_task(self.outbox.relay(), name="outbox-relay"),
            asyncio.create_task(self.scheduler.run(self.settings.scheduler_loop_seconds), name="scheduler-clock"),
        ]

    async def stop(self) -> None:
        """Stop keeping time and taking messages, close everything (a second call does
        nothing). A slot this replica has not fired is fired by another one, or by this one
        when it is back."""
        if not self._tasks:
            return
        relay, clock = self._tasks
        self._tasks = []
        # No new fires, then let in-flight commands and outcomes finish, then the relay
        # marks what they published.
        await cancel_tasks(clock)
        await self.bus.stop()
        await cancel_tasks(relay)
        await self.stop_following()
        await self.engine.dispose()


async def build(
    settings: SchedulerSettings,
    *,
    engine: AsyncEngine | None = None,
    jobs: Sequence[JobDefinition] | None = None,
    policy: RetryPolicy | None = None,
) -> SchedulerService:
    """Connect to NATS and wire a scheduler process (nothing runs until :meth:`SchedulerService.start`)."""
    engine, _, bus, outbox = await connect("scheduler", settings, engine)
    business_timezone = BusinessTimezone(settings.business_timezone)
    scheduler = Scheduler(
        outbox,
        builtin_jobs(settings.daily_digest_at) if jobs is None else jobs,
        business_timezone,
        history=timedelta(days=settings.scheduler_history_days),
    )
    subscribers.register(bus, scheduler, policy=policy)
    return SchedulerService(settings, engine, bus, outbox, scheduler, business_timezone)


def create_app(settings: SchedulerSettings) -> FastAPI:
    """The scheduler process as an ASGI app: its lifespan runs the service, its routes are
    the operational endpoints. Ticks are stored in PostgreSQL and sent through NATS: both
    are needed, nothing is optional."""
    return service_app(
        "scheduler", lambda: build(settings), started=lambda service: {"jobs": sorted(service.scheduler.jobs)}
    )
