"""The crm process: the managers' API, the inbound consumer and the background work,
in one event loop, started and stopped together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from typing import Any

import uvicorn
from fastapi import FastAPI
from redis.asyncio import Redis

from crm.api import create_app
from crm.audit import register_system_log
from crm.config import CrmSettings
from crm.graph import GraphClient
from crm.live.server import Server as LiveServer
from crm.profiles import ProfileEnricher
from crm.settings import settings_sync_lifespan
from crm.worker import register_analyses, register_inbound, register_jobs, register_outbound, run_profile_sweeper
from jggl_common.bus import ServiceBus
from jggl_common.db import create_engine, session_factory
from jggl_common.logs import get_logger
from jggl_common.outbox import Outbox
from jggl_common.runtime import freeze_startup_heap

log = get_logger(__name__)


async def serve(settings: CrmSettings) -> None:
    """Run crm until SIGINT/SIGTERM; in-flight requests and messages finish first."""
    engine = create_engine(settings.database_url, settings.db_schema, pool_size=settings.db_pool_size)
    sessions = session_factory(engine)
    bus = ServiceBus(settings.nats_url, "crm")
    await bus.connect(replicas=settings.nats_stream_replicas)
    outbox = Outbox(sessions, bus.publisher, retention=timedelta(hours=settings.outbox_retention_hours))
    graph = GraphClient.from_settings(settings)
    enricher = ProfileEnricher(sessions, outbox, settings, graph)
    register_inbound(bus, sessions, outbox, settings, graph, enricher=enricher)
    # Per-page send rate limits are shared by the replicas through Redis.
    redis = Redis.from_url(settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
    register_outbound(bus, sessions, outbox, settings, graph, redis=redis)
    # The AI service's analyses fill the deals' AI fields.
    register_analyses(bus, outbox)
    # The scheduler's ticks: SLA check, due tasks, digest, channel health, Meta backfill; /api/jobs.
    register_jobs(bus, sessions, outbox, settings, graph=graph)
    # Dead letters of every service land in the admin's system log.
    register_system_log(bus, sessions)

    @asynccontextmanager
    async def workers(app: FastAPI) -> AsyncIterator[None]:
        await bus.broker.start()
        background: list[asyncio.Task[Any]] = [
            # The outbox and the inbound leftovers are pruned by the daily retention.crm job.
            asyncio.create_task(outbox.relay(prune=False), name="outbox-relay"),
            asyncio.create_task(
                run_profile_sweeper(sessions, outbox, settings, graph, enricher=enricher), name="profiles"
            ),
        ]
        frozen = freeze_startup_heap()
        log.info("crm consumers started", frozen_objects=frozen)
        try:
            yield
        finally:
            # Stop taking messages first; those in flight finish and are acknowledged.
            await bus.stop()
            for task in background:
                task.cancel()
            for task in background:
                with suppress(asyncio.CancelledError):
                    await task
            await graph.aclose()
            await redis.aclose()

    app = create_app(
        settings,
        engine=engine,
        outbox=outbox,
        lifespan_extras=[workers, settings_sync_lifespan()],
        nats=bus.broker.connection,
    )
    live = app.state.crm.live
    # Open event streams end as soon as shutdown begins, so they do not hold it up.
    server = LiveServer(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=10,
            # The app resolves client addresses itself (jggl_common.forwarded, FORWARDED_ALLOW_IPS).
            proxy_headers=False,
        ),
        before_shutdown=live.close,
    )
    try:
        await server.serve()
    finally:
        await engine.dispose()
