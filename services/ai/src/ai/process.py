"""The ai process: the transcript consumer, the analysis dispatcher, the outbox relay and
the operational endpoints, in one event loop, started and stopped together."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ai.analysis.dispatcher import Dispatcher
from ai.analysis.limits import CallLimiter, CircuitBreaker
from ai.analysis.redo import DURABLE as REDO_DURABLE
from ai.analysis.redo import Redo
from ai.analysis.redo import register as register_redo
from ai.analysis.service import Analyser
from ai.config import AiSettings
from ai.knobs import Knobs
from ai.migrate import MIGRATIONS
from ai.retention import DURABLE as RETENTION_DURABLE
from ai.retention import ai_retention
from ai.transcripts import subscribers
from ai.transcripts.service import TranscriptProjection
from jggl_common.bus import RetryPolicy, ServiceBus
from jggl_common.outbox import Outbox
from jggl_common.process import BackgroundService, cancel_tasks, connect, service_app
from jggl_common.retention import register as register_retention

__all__ = ["AiService", "build", "create_app"]


@dataclass
class AiService(BackgroundService):
    """Everything one ai process runs, wired together (tests build several side by side)."""

    settings: AiSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    bus: ServiceBus
    outbox: Outbox
    knobs: Knobs
    analyser: Analyser
    dispatcher: Dispatcher
    projection: TranscriptProjection
    _tasks: list[asyncio.Task[Any]]

    name = "ai"
    migrations = MIGRATIONS

    async def start(self) -> None:
        """Wait for the schema to be migrated, follow the live settings, start consuming
        and analysing (the bus is connected)."""
        live = await self.start_following()
        if live is not None:
            self.knobs.follow(live, lambda: self.knobs.apply_limits(self.analyser.limiter))
        self.knobs.apply_limits(self.analyser.limiter)
        await self.bus.broker.start()
        self._tasks = [
            # The outbox is pruned by the daily retention.ai job.
            asyncio.create_task(self.outbox.relay(prune=False), name="outbox-relay"),
            asyncio.create_task(self.dispatcher.run(), name="analysis-dispatcher"),
        ]

    async def stop(self) -> None:
        """Stop taking messages, let running analyses finish briefly, close everything."""
        await self.bus.stop()
        await cancel_tasks(*self._tasks)
        await self.stop_following()
        await self.knobs.aclose()
        await self.engine.dispose()


async def build(
    settings: AiSettings,
    *,
    engine: AsyncEngine | None = None,
    durable: str = subscribers.DURABLE,
    redo_durable: str = REDO_DURABLE,
    retention_durable: str = RETENTION_DURABLE,
    policy: RetryPolicy | None = None,
) -> AiService:
    """Connect to NATS and wire an ai process (nothing is consumed until :meth:`AiService.start`)."""
    engine, sessions, bus, outbox = await connect("ai", settings, engine)
    knobs = Knobs(settings)
    limiter = CallLimiter(settings.ai_requests_per_minute, settings.ai_concurrency)
    breaker = CircuitBreaker(settings.ai_breaker_failures, settings.ai_breaker_cooldown_seconds)
    analyser = Analyser(sessions, outbox, knobs.gemini, limiter, breaker)
    dispatcher = Dispatcher(sessions, analyser, enabled=knobs.enabled, parallel=knobs.parallel)
    projection = TranscriptProjection(
        sessions, debounce=knobs.debounce, max_new_messages=settings.ai_max_new_messages, on_due=dispatcher.due
    )
    subscribers.register(bus, projection, durable=durable, policy=policy)
    # The scheduler's ai.redo: heuristic or failed analyses go back to Gemini once it is healthy.
    redo = Redo(sessions, outbox, knobs.gemini, knobs.enabled, breaker, dispatcher.due)
    register_redo(bus, redo, durable=redo_durable, policy=policy)
    # The scheduler's retention.ai: old analyses history and published outbox rows.
    register_retention(bus, ai_retention(sessions, outbox, settings), durable=retention_durable, policy=policy)
    return AiService(settings, engine, sessions, bus, outbox, knobs, analyser, dispatcher, projection, [])


def create_app(settings: AiSettings) -> FastAPI:
    """The ai process as an ASGI app: its lifespan runs the service, its routes are the
    operational endpoints."""

    def gemini_enabled(service: AiService) -> bool:
        # No key, or analyses switched off (ai.enabled): Gemini is not used on purpose, so
        # "disabled", not down. Both are live settings: readiness follows them.
        return service.knobs.enabled() and service.knobs.gemini().client is not None

    async def gemini(service: AiService) -> bool:
        # Asks nothing of Google: Gemini is "down" while its circuit breaker is open, i.e.
        # while analyses fall back to the heuristic one. That never makes ai unready.
        return service.analyser.breaker.state != "open"

    return service_app(
        "ai",
        lambda: build(settings),
        started=lambda service: {"gemini": service.knobs.gemini().client is not None},
        optional={"gemini": gemini},
        enabled={"gemini": gemini_enabled},
    )
