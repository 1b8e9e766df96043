"""Fixtures of ai's tests: a migrated schema of the test's own, a private JetStream server,
the sandbox's Gemini fake, and ai processes built the way ``python -m ai`` builds them."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from ai.config import AiSettings
from ai.migrate import upgrade
from ai.process import AiService, build
from jggl_common import testing
from jggl_common.bus import RetryPolicy
from jggl_common.contracts import ContactRef, Envelope, MessageReceived, MessageSent
from jggl_common.testing import TEST_DATABASE_URL, CrmMessage, Replicas, connected_bus
from jggl_sandbox.gemini_fake import GeminiFakeServer

APP_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
FAST_RETRIES = RetryPolicy(max_deliveries=3, backoff=(0.05, 0.1, 0.2))
# The tests take these from here.
eventually = testing.eventually
next_id = testing.next_id
rows = testing.rows


ai_engine = testing.migrated_engine(upgrade, "ai_engine")
"""An engine on the test's fresh schema migrated to head."""


class Bus(testing.Bus):
    """The test's own JetStream server with the system's streams, and a publisher like crm's."""

    async def publish(self, events: list[Envelope]) -> None:
        await self.publisher.publish_many((event.subject, event) for event in events)

    async def ai_events(self, kind: str = "completed") -> list[dict[str, Any]]:
        """Every ``ai.analysis.<kind>`` event stored in the AI stream so far (payloads)."""
        return [event for _, event in await self.stored("AI", f"ai.analysis.{kind}")]


@pytest_asyncio.fixture
async def bus(private_nats: tuple[subprocess.Popen[bytes], int]) -> AsyncIterator[Bus]:
    async with connected_bus(private_nats[1], Bus) as bus:
        yield bus


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
    async with Replicas[AiService]() as replicas:

        async def start(*, with_gemini: bool = True, **overrides: Any) -> AiService:
            settings = ai_settings(pg_schema, bus, gemini if with_gemini else None, **overrides)
            return await replicas.start(await build(settings, engine=ai_engine, policy=FAST_RETRIES))

        yield start


def contact(conversation: int) -> ContactRef:
    return ContactRef(id=conversation, platform="messenger", external_id=f"psid-{conversation}", display_name="Ann")


def received(
    conversation: int, deal: int, text: str | None, at: datetime, *, message_id: int | None = None
) -> MessageReceived:
    return CrmMessage(message_id or next_id(), deal, conversation, contact(conversation), text, at).received()


def sent(conversation: int, deal: int, text: str, at: datetime, *, echo: bool = False) -> MessageSent:
    return CrmMessage(next_id(), deal, conversation, contact(conversation), text, at).sent(echo=echo)


def now() -> datetime:
    return datetime.now(UTC)


def minutes_ago(minutes: float) -> datetime:
    return now() - timedelta(minutes=minutes)
