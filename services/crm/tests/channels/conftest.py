"""crm with its scheduler consumers on a JetStream server of the test's own, the API in
process, and the sandbox's Graph fake standing in for Meta (crm's real httpx client talks
to it): what the channel health job and the channels API need."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import pytest_asyncio
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm.api import create_app
from crm.config import CrmSettings
from crm.models import Channel, User
from crm.worker import register_jobs
from jggl_common.bus import EventPublisher, RetryPolicy, ServiceBus
from jggl_common.contracts import SchedulerTick, SchedulerTickData, tick_id, tick_subject, utcnow
from jggl_common.db import session_scope
from jggl_common.outbox import Outbox
from jggl_common.streams import SCHEDULER, ensure_streams
from jggl_common.testing import start_nats_server, stored_events, wait_consumers_idle
from jggl_sandbox.graph_fake import GraphFakeServer

from ..api.factories import create_user
from ..support import API_REDIS_URL, crm_settings, random_address

APP_SECRET = "channel-health-app-secret"
DEFAULT_TOKEN = "default-page-token"


@dataclass
class World:
    app: FastAPI
    client: httpx.AsyncClient
    sessions: async_sessionmaker[AsyncSession]
    outbox: Outbox
    settings: CrmSettings
    js: Any
    publisher: EventPublisher
    graph: GraphFakeServer
    admin: User

    def headers(self, user: User | None = None) -> dict[str, str]:
        user = user or self.admin
        assert user.id is not None
        return {"Authorization": f"Bearer {self.app.state.crm.tokens.issue(user.id, user.password_hash)}"}

    async def add_channel(
        self, *, name: str = "Shop & Co", platform: str = "messenger", last_webhook_at: datetime | None = None
    ) -> Channel:
        """A connected page that heard from Meta just now (unless told otherwise)."""
        async with session_scope(self.sessions) as session:
            channel = Channel(
                platform=platform,
                external_id=str(10**15 + secrets.randbits(40)),
                name=name,
                last_webhook_at=last_webhook_at or utcnow(),
            )
            session.add(channel)
            await session.flush()
        return channel

    async def tick(self, slot: int) -> dict[str, Any]:
        """Fire ``channel_health`` for ``slot`` as the scheduler does; crm's report of it."""
        at = utcnow()
        event = SchedulerTick(
            id=tick_id("channel_health", f"t{slot}"),
            producer="scheduler",
            data=SchedulerTickData(job="channel_health", slot=f"t{slot}", scheduled_for=at, fired_at=at),
        )
        await self.publisher.publish(event, tick_subject("channel_health"))
        await self.settled()
        reports = await self.events("crm.job.finished")
        [report] = [r for r in reports if r["data"]["slot"] == f"t{slot}"]
        return dict(report["data"])

    async def events(self, subject: str, *, idle: float = 0.3) -> list[dict[str, Any]]:
        return await stored_events(self.js, subject, idle=idle)

    async def settled(self) -> None:
        """Wait until crm's tick consumers acknowledged every tick (their work is committed)."""
        await wait_consumers_idle(self.js, SCHEDULER.name, "crm-tick-")

    async def channel(self, channel_id: int | None) -> dict[str, Any]:
        """The channel as ``GET /api/channels`` shows it to an admin."""
        listed = await self.client.get("/api/channels", headers=self.headers())
        assert listed.status_code == 200, listed.text
        [found] = [item for item in listed.json()["items"] if item["id"] == channel_id]
        return dict(found)

    async def system_log(self) -> list[dict[str, Any]]:
        """The channel health rows of ``GET /api/system-log``, oldest first."""
        page = await self.client.get("/api/system-log", params={"kind": "channel_health"}, headers=self.headers())
        assert page.status_code == 200, page.text
        return list(reversed(page.json()["items"]))

    async def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        async with self.sessions() as session:
            return [dict(row._mapping) for row in await session.execute(text(sql), params)]

    async def execute(self, sql: str, **params: Any) -> None:
        """Change rows behind the API's back (what a webhook or Meta would have done)."""
        async with self.sessions() as session, session.begin():
            await session.execute(text(sql), params)


@pytest.fixture(autouse=True)
def _no_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings defaults also come from ./.env and the environment: the test's own only.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("META_APP_SECRET", APP_SECRET)


@pytest.fixture
def graph() -> Iterator[GraphFakeServer]:
    with GraphFakeServer() as server:
        server.fake.app_secret = APP_SECRET
        yield server


@pytest_asyncio.fixture
async def world(
    tmp_path: Path,
    pg_schema: str,
    crm_engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    graph: GraphFakeServer,
) -> AsyncIterator[World]:
    proc, port = start_nats_server(tmp_path / "jetstream")
    url = f"nats://127.0.0.1:{port}"
    nc = await nats.connect(url)
    await ensure_streams(nc.jetstream())
    bus = ServiceBus(url, "crmtest" + secrets.token_hex(3))
    await bus.broker.connect()
    outbox = Outbox(sessions, bus.publisher)
    settings = crm_settings(
        pg_schema,
        nats_url=url,
        meta_graph_url=graph.url,
        meta_app_id=str(graph.fake.app_id),
        meta_access_token=DEFAULT_TOKEN,
    )
    register_jobs(bus, sessions, outbox, settings, policy=RetryPolicy(max_deliveries=2, backoff=(0.1,)))
    await bus.broker.start()
    redis = Redis.from_url(API_REDIS_URL)
    app = create_app(settings, engine=crm_engine, redis=redis, outbox=outbox)
    async with session_scope(sessions) as session:
        admin = await create_user(session, role="admin")
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=(random_address(), 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://crm.test", timeout=30) as client:
                yield World(app, client, sessions, outbox, settings, nc.jetstream(), EventPublisher(nc), graph, admin)
    finally:
        await bus.broker.stop()
        await nc.close()
        await redis.aclose()
        proc.terminate()
        proc.wait(10)
