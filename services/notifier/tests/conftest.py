"""Fixtures of the notifier's tests: a migrated schema of the test's own, a private
JetStream server, the sandbox's Telegram fake (the real aiogram client talks to it), and
notifier processes built the way ``python -m notifier`` builds them."""

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

from jggl_common.bus import EventPublisher, RetryPolicy
from jggl_common.contracts import (
    ContactRef,
    Envelope,
    MessageReceived,
    MessageReceivedData,
    TelegramLinkRequested,
    TelegramLinkRequestedData,
    TelegramUpdateData,
    TelegramUpdateReceived,
    link_code_hash,
)
from jggl_common.db import autocommit, session_factory
from jggl_common.streams import ensure_streams
from jggl_common.testing import TEST_DATABASE_URL, start_nats_server
from jggl_sandbox.telegram_fake import TelegramFakeServer
from notifier.config import NotifierSettings
from notifier.migrate import upgrade
from notifier.process import NotifierService, build

APP_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
TOKEN = "123456:test-token"
APP_URL = "https://crm.example.com"
FAST_RETRIES = RetryPolicy(max_deliveries=4, backoff=(0.05, 0.1, 0.2))
_ids = itertools.count(int(time.time() * 1000) % 10_000_000 * 100)


def next_id() -> int:
    """An id no other test of this process uses (users, chats, deals)."""
    return next(_ids)


@pytest_asyncio.fixture
async def engine(schema_engine: AsyncEngine, pg_schema: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh schema migrated to head."""
    await upgrade(schema_engine, pg_schema)
    yield schema_engine


class Bus:
    """A private JetStream server with the system's streams, and a publisher like crm's."""

    def __init__(self, url: str, nc: Any) -> None:
        self.url = url
        self.nc = nc
        self.publisher = EventPublisher(nc)

    async def publish(self, *events: Envelope) -> None:
        await self.publisher.publish_many((event.subject, event) for event in events)


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
def telegram() -> Iterator[TelegramFakeServer]:
    server = TelegramFakeServer(tokens={TOKEN}).start()
    try:
        yield server
    finally:
        server.stop()


StartNotifier = Callable[..., Awaitable[NotifierService]]


@pytest_asyncio.fixture
async def start_notifier(
    engine: AsyncEngine, pg_schema: str, bus: Bus, telegram: TelegramFakeServer
) -> AsyncIterator[StartNotifier]:
    """Start notifier processes (replicas share the durable consumers); all stopped at the end."""
    started: list[NotifierService] = []

    async def start(*, token: str = TOKEN, **overrides: Any) -> NotifierService:
        values: dict[str, Any] = {
            "app_key": APP_KEY,
            "nats_url": bus.url,
            "app_url": APP_URL,
            "database_url": TEST_DATABASE_URL,
            "db_schema": pg_schema,
            "telegram_bot_token": token,
            "telegram_api_url": telegram.url,
        }
        values.update(overrides)
        settings = NotifierSettings(_env_file=None, **values)
        service = await build(settings, engine=engine, policy=FAST_RETRIES)
        await service.start()
        started.append(service)
        return service

    try:
        yield start
    finally:
        for service in started:
            await service.stop()


def link_requested(
    user_id: int, code: str, *, name: str = "Mia Manager", role: str = "manager", expires_in: float = 600
) -> TelegramLinkRequested:
    return TelegramLinkRequested(
        producer="crm",
        data=TelegramLinkRequestedData(
            user_id=user_id,
            name=name,
            email=f"user{user_id}@example.com",
            role=role,
            code_hash=link_code_hash(code),
            expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
        ),
    )


def update_received(update: dict[str, Any]) -> TelegramUpdateReceived:
    """The event ingest stores for a Telegram webhook update."""
    return TelegramUpdateReceived(
        id=f"tg-update-{update['update_id']}-{next_id()}",
        producer="ingest",
        data=TelegramUpdateData(update_id=update["update_id"], update=update),
    )


def new_lead(
    *,
    assignee_id: int | None = None,
    name: str = "Ann Customer",
    stage: str = "new",
    text: str | None = "Hi! Is the green backpack still available?",
) -> MessageReceived:
    """A deal's first customer message: what the new-lead notification announces."""
    deal = next_id()
    return MessageReceived(
        producer="crm",
        data=MessageReceivedData(
            message_id=next_id(),
            mid=f"m.{deal}",
            deal_id=deal,
            conversation_id=deal,
            kind="text",
            text=text,
            sent_at=datetime.now(UTC),
            is_first_message=True,
            deal_stage=stage,
            assignee_id=assignee_id,
            contact=ContactRef(id=deal, platform="instagram", external_id=f"igsid-{deal}", display_name=name),
        ),
    )


async def rows(engine: AsyncEngine, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with autocommit(session_factory(engine)) as db:
        return [dict(row) for row in await db.fetch(sql, *args)]


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"not reached within {timeout}s; last seen: {last!r}")
