"""crm consuming the AI service's results, for real: the consumer on a JetStream server of
the test's own (its streams hold this test's events only, and no earlier test's analysis
can reach this test's deals, whose ids repeat from schema to schema), the API in-process
over the test's schema, and read-backs of what managers see and what crm announced.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
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

from crm.analyses import AnalysisService
from crm.analyses.subscribers import DURABLE
from crm.api import create_app
from crm.models import Deal, User
from crm.worker import register_analyses
from jggl_common.bus import EventPublisher, RetryPolicy, ServiceBus
from jggl_common.contracts import (
    AnalysisCompleted,
    AnalysisCompletedData,
    AnalysisFailed,
    AnalysisFailedData,
    AnalysisResult,
    ManagerNotes,
    utcnow,
)
from jggl_common.db import session_scope
from jggl_common.outbox import Outbox
from jggl_common.streams import AI, ensure_streams
from jggl_common.testing import start_nats_server, stored_events

from ..api.factories import create_deal, create_user
from ..support import API_REDIS_URL, crm_settings, random_address

NOTES = ManagerNotes(
    speed="Answered within two minutes.",
    politeness="Polite and warm.",
    needs_discovery="Asked about size and budget.",
    next_step="Offered to reserve the item.",
)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0, what: str = "condition") -> None:
    """Wait until ``check()`` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout}s")
        await asyncio.sleep(0.05)


def analysis(
    deal: Deal,
    *,
    version: int = 1,
    provider: str = "gemini",
    analysis_id: int | None = None,
    summary: str = "The customer wants the red jacket in size M and asks about delivery.",
    intent: str = "purchase",
    temperature: str = "warm",
    score: int | None = 7,
    next_action: str = "Confirm the size and send the delivery options.",
    language: str = "en",
    analyzed_at: datetime | None = None,
) -> AnalysisCompleted:
    """``ai.analysis.completed`` about ``deal`` as the AI service publishes it."""
    assert deal.id is not None
    return AnalysisCompleted(
        producer="ai",
        data=AnalysisCompletedData(
            analysis_id=analysis_id if analysis_id is not None else version * 10 + (provider == "gemini"),
            conversation_id=deal.conversation_id,
            deal_id=deal.id,
            version=version,
            provider=provider,
            model="gemini-2.5-flash" if provider == "gemini" else None,
            result=AnalysisResult(
                summary=summary,
                intent=intent,
                temperature=temperature,
                manager_score=score,
                manager_notes=NOTES,
                next_action=next_action,
                language=language,
            ),
            analyzed_at=analyzed_at or utcnow(),
        ),
    )


def failure(deal: Deal, *, will_retry: bool, analysis_id: int = 99, attempts: int = 5) -> AnalysisFailed:
    """``ai.analysis.failed`` about ``deal``."""
    assert deal.id is not None
    return AnalysisFailed(
        producer="ai",
        data=AnalysisFailedData(
            analysis_id=analysis_id,
            conversation_id=deal.conversation_id,
            deal_id=deal.id,
            version=3,
            provider="gemini",
            model="gemini-2.5-flash",
            error="503 UNAVAILABLE: the model is overloaded",
            attempts=attempts,
            will_retry=will_retry,
            failed_at=utcnow(),
        ),
    )


@dataclass
class Crm:
    """crm with its AI consumer running, and the world around it."""

    app: FastAPI
    client: httpx.AsyncClient
    sessions: async_sessionmaker[AsyncSession]
    service: AnalysisService
    publisher: EventPublisher
    js: Any
    admin: User
    published: int = field(default=0)

    # ------------------------------------------------------------ world setup

    async def user(self, role: str = "manager", name: str | None = None) -> User:
        async with session_scope(self.sessions) as session:
            return await create_user(session, role=role, name=name)

    async def deal(self, **fields: Any) -> Deal:
        async with session_scope(self.sessions) as session:
            return await create_deal(session, **fields)

    def headers(self, user: User | None = None) -> dict[str, str]:
        user = user or self.admin
        assert user.id is not None
        return {"Authorization": f"Bearer {self.app.state.crm.tokens.issue(user.id, user.password_hash)}"}

    # ------------------------------------------------------------------ acting

    async def publish(self, *envelopes: AnalysisCompleted | AnalysisFailed) -> None:
        """Publish as the AI service does, one after the other."""
        for envelope in envelopes:
            ack = await self.publisher.publish(envelope)
            self.published = max(self.published, int(ack.seq or 0))

    async def settled(self) -> None:
        """Wait until the consumer has acknowledged everything published so far (so what
        it did is committed and announced)."""

        async def done() -> bool:
            info = await self.js.consumer_info(AI.name, DURABLE)
            return bool(info.ack_floor.stream_seq >= self.published and info.num_ack_pending == 0)

        await eventually(done, what="the AI consumer caught up")

    # ----------------------------------------------------------------- reading

    async def get(self, path: str, user: User | None = None, params: dict[str, Any] | None = None) -> Any:
        response = await self.client.get(path, params=params or {}, headers=self.headers(user))
        assert response.status_code == 200, response.text
        return response.json()

    async def deal_json(self, deal: Deal) -> dict[str, Any]:
        found: dict[str, Any] = await self.get(f"/api/deals/{deal.id}")
        return found

    async def activities(self, deal: Deal, kind: str = "ai_analysis") -> list[dict[str, Any]]:
        items = (await self.get(f"/api/deals/{deal.id}/activities"))["items"]
        return [item for item in items if item["kind"] == kind]

    async def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        async with self.sessions() as session:
            return [dict(row._mapping) for row in await session.execute(text(sql), params)]

    async def events(self, subject: str, *, idle: float = 0.3) -> list[dict[str, Any]]:
        """Payloads stored on ``subject`` in this test's JetStream, oldest first (call after
        :meth:`settled`: events are published before the consumer acknowledges)."""
        return await stored_events(self.js, subject, idle=idle)

    async def about(self, subject: str, deal: Deal) -> list[dict[str, Any]]:
        """The events on ``subject`` about ``deal``."""
        return [event for event in await self.events(subject) if event["data"]["deal"]["id"] == deal.id]


@pytest.fixture(autouse=True)
def _no_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Environment defaults also come from ./.env: run where there is none.
    monkeypatch.chdir(tmp_path)


@pytest_asyncio.fixture
async def nats_url(tmp_path: Path) -> AsyncIterator[str]:
    """A JetStream server of the test's own."""
    proc, port = start_nats_server(tmp_path / "jetstream")
    url = f"nats://127.0.0.1:{port}"
    try:
        nc = await nats.connect(url)
        await ensure_streams(nc.jetstream())
        await nc.close()
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest_asyncio.fixture
async def crm(
    pg_schema: str, crm_engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], nats_url: str
) -> AsyncIterator[Crm]:
    settings = crm_settings(pg_schema, nats_url=nats_url)
    bus = ServiceBus(nats_url, "crmtest" + secrets.token_hex(3))
    await bus.broker.connect()
    outbox = Outbox(sessions, bus.publisher)
    service = register_analyses(bus, outbox, policy=RetryPolicy(max_deliveries=3, backoff=(0.1,)))
    await bus.broker.start()
    redis = Redis.from_url(API_REDIS_URL)
    app = create_app(settings, engine=crm_engine, redis=redis)
    nc = await nats.connect(nats_url)
    async with session_scope(sessions) as session:
        admin = await create_user(session, role="admin", name="Zoe Admin")
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=(random_address(), 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://crm.test", timeout=30) as client:
                yield Crm(
                    app=app,
                    client=client,
                    sessions=sessions,
                    service=service,
                    publisher=EventPublisher(nc),
                    js=nc.jetstream(),
                    admin=admin,
                )
    finally:
        await bus.broker.stop()
        await nc.close()
        await redis.aclose()
