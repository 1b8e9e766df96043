"""Fixtures of the notifier's tests: a migrated schema of the test's own, a private
JetStream server, the sandbox's Telegram fake (the real aiogram client talks to it), and
notifier processes built the way ``python -m notifier`` builds them."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common import testing
from jggl_common.bus import RetryPolicy
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
from jggl_common.testing import TEST_DATABASE_URL, Replicas, connected_bus
from jggl_sandbox.telegram_fake import TelegramFakeServer
from notifier.config import NotifierSettings
from notifier.migrate import upgrade
from notifier.process import NotifierService, build

APP_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
TOKEN = "123456:test-token"
APP_URL = "https://crm.example.com"
FAST_RETRIES = RetryPolicy(max_deliveries=4, backoff=(0.05, 0.1, 0.2))
# The tests take these from here.
eventually = testing.eventually
next_id = testing.next_id
rows = testing.rows


engine = testing.migrated_engine(upgrade)
"""An engine on the test's fresh schema migrated to head."""


class Bus(testing.Bus):
    """The test's own JetStream server with the system's streams, and a publisher like crm's."""

    async def publish(self, *events: Envelope) -> None:
        await self.publisher.publish_many((event.subject, event) for event in events)


@pytest_asyncio.fixture
async def bus(private_nats: tuple[subprocess.Popen[bytes], int]) -> AsyncIterator[Bus]:
    async with connected_bus(private_nats[1], Bus) as bus:
        yield bus


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
    async with Replicas[NotifierService]() as replicas:

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
            return await replicas.start(await build(settings, engine=engine, policy=FAST_RETRIES))

        yield start


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
