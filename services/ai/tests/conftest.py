"""Fixtures of ai's tests: a migrated schema of the test's own, a private JetStream server,
the sandbox's Gemini fake, and ai processes built the way ``python -m ai`` builds them."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from ai.config import AiSettings
from ai.migrate import upgrade
from ai.process import AiService, build
from jggl_common.bus import EventPublisher, RetryPolicy
from jggl_common.contracts import (
    ContactRef,
    Envelope,
    MessageReceived,
    MessageReceivedData,
    MessageSent,
    MessageSentData,
)
from jggl_common.db import autocommit, session_factory
from jggl_common.streams import ensure_streams
from jggl_common.testing import TEST_DATABASE_URL, start_nats_server
from jggl_sandbox.gemini_fake import GeminiFakeServer

APP_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
FAST_RETRIES = RetryPolicy(max_deliveries=3, backoff=(0.05, 0.1, 0.2))
_ids = itertools.count(int(time.time() * 1000) % 10_000_000 * 100)


def next_id() -> int:
    """An id no other test of this process uses (conversations, messages, deals)."""
    return next(_ids)


@pytest_asyncio.fixture
async def ai_engine(schema_engine: AsyncEngine, pg_schema: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh schema migrated to head."""
    await upgrade(schema_engine, pg_schema)
    yield schema_engine


class Bus:
    """A private JetStream server with the system's streams, and a publisher like crm's."""

    def __init__(self, url: str, nc: Any) -> None:
        self.url = url
        self.nc = nc
        self.js = nc.jetstream()
        self.publisher = EventPublisher(nc)

    async def publish(self, events: list[Envelope]) -> None:
        await self.publisher.publish_many((event.subject, event) for event in events)

    async def ai_events(self, kind: str = "completed") -> list[dict[str, Any]]:
        """Every ``ai.analysis.<kind>`` event stored in the AI stream so far (payloads)."""
        import json

        found: list[dict[str, Any]] = []
        info = await self.js.stream_info("AI")
        if not info.state.messages:
            return found
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await self.js.get_msg("AI", seq)
            if msg.subject == f"ai.analysis.{kind}":
                found.append(json.loads(msg.data))
        return found


@pytest_asyncio.fixture
async def bus(tmp_path: Path) -> AsyncIterator[Bus]:
    proc, port = start_nats_server(tmp_path / "jetstream")
    url = f"nats://127.0.0.1:{port}"
    nc = await nats.connect(url)
    try:
        await ensure_streams(nc.jetstream())
        yield Bus(url, nc)
    finally:
        await nc.close()
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def gemini() -> Iterator[GeminiFakeServer]:
    server = GeminiFakeServer(api_keys={"test-key"}).start()
    try:
        yield server
    finally:
        server.stop()


def ai_settings(pg_schema: str, bus: Bus, gemini: GeminiFakeServer | None, **overrides: Any) -> AiSettings:
    values: dict[str, Any] = {
        "app_key": APP_KEY,
        "nats_url": bus.url,
        "app_url": "http://localhost:8000",
        "database_url": TEST_DATABASE_URL,
        "db_schema": pg_schema,
        "gemini_api_key": "test-key" if gemini else "",
        "gemini_base_url": gemini.url if gemini else "",
        "gemini_timeout_seconds": 2.0,
        "ai_debounce_seconds": 0.3,
        "ai_requests_per_minute": 6000,
        "ai_concurrency": 4,
        "ai_breaker_failures": 3,
        "ai_breaker_cooldown_seconds": 1.0,
        "ai_retry_max_seconds": 3.0,
        "settings_bucket": f"SETTINGS_{pg_schema}",
    }
    values.update(overrides)
    return AiSettings(_env_file=None, **values)


StartAi = Callable[..., Awaitable[AiService]]


@pytest_asyncio.fixture
async def start_ai(
    ai_engine: AsyncEngine, pg_schema: str, bus: Bus, gemini: GeminiFakeServer
) -> AsyncIterator[StartAi]:
    """Start ai processes (replicas share the durable consumer); all stopped at the end."""
    started: list[AiService] = []

    async def start(*, with_gemini: bool = True, **overrides: Any) -> AiService:
        settings = ai_settings(pg_schema, bus, gemini if with_gemini else None, **overrides)
        service = await build(settings, engine=ai_engine, policy=FAST_RETRIES)
        await service.start()
        started.append(service)
        return service

    try:
        yield start
    finally:
        for service in started:
            await service.stop()


def contact(conversation: int) -> ContactRef:
    return ContactRef(id=conversation, platform="messenger", external_id=f"psid-{conversation}", display_name="Ann")


def received(
    conversation: int, deal: int, text: str | None, at: datetime, *, message_id: int | None = None
) -> MessageReceived:
    message_id = message_id or next_id()
    return MessageReceived(
        id=f"received-{message_id}",
        producer="crm",
        data=MessageReceivedData(
            message_id=message_id,
            mid=f"m_{message_id}",
            deal_id=deal,
            conversation_id=conversation,
            kind="text" if text is not None else "image",
            text=text,
            attachments=[] if text is not None else [{"type": "image", "url": "https://x/y.jpg"}],
            sent_at=at,
            is_first_message=False,
            deal_stage="new",
            contact=contact(conversation),
        ),
    )


def sent(conversation: int, deal: int, text: str, at: datetime, *, echo: bool = False) -> MessageSent:
    message_id = next_id()
    return MessageSent(
        id=f"sent-{message_id}",
        producer="crm",
        data=MessageSentData(
            message_id=message_id,
            mid=f"m_{message_id}",
            deal_id=deal,
            conversation_id=conversation,
            kind="text",
            text=text,
            sent_at=at,
            messaging_type=None if echo else "RESPONSE",
            author_user_id=None if echo else 7,
            author_label="Meta inbox" if echo else None,
            response_seconds=60,
            deal_stage="new",
            contact=contact(conversation),
        ),
    )


def now() -> datetime:
    return datetime.now(UTC)


def minutes_ago(minutes: float) -> datetime:
    return now() - timedelta(minutes=minutes)


async def rows(engine: AsyncEngine, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with autocommit(session_factory(engine)) as db:
        return [dict(row) for row in await db.fetch(sql, *args)]


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 15.0, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"not reached within {timeout}s; last seen: {last!r}")
