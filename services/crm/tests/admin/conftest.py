"""The crm API in-process for the administration tests, with or without the live-settings sync.

Every test gets a schema of its own, a settings bucket of its own (``SETTINGS_T<hex>``,
deleted afterwards) and runs in an empty working directory, so neither the shared
``SETTINGS`` bucket nor a developer's ``.env`` can leak into what it sees.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import pytest_asyncio
from fastapi import FastAPI
from nats.aio.client import Client as NatsClient
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm.api import create_app
from crm.config import CrmSettings
from crm.models import User
from crm.settings import SettingsSync, settings_sync_lifespan
from jggl_common.live_settings import LiveSettings

from ..support import API_REDIS_URL, crm_settings, random_address


def admin_settings(schema: str, **overrides: Any) -> CrmSettings:
    """:func:`crm_settings` as this suite's tests want them."""
    return crm_settings(schema, **{"settings_bucket": "SETTINGS_T" + secrets.token_hex(6).upper(), **overrides})


@dataclass
class Api:
    """An HTTP client on the app, ways to act as a user, and raw database access."""

    app: FastAPI
    client: httpx.AsyncClient
    sessions: async_sessionmaker[AsyncSession]
    settings: CrmSettings
    address: str

    def headers(self, user: User) -> dict[str, str]:
        """An ``Authorization`` header for ``user``."""
        assert user.id is not None
        return {"Authorization": f"Bearer {self.app.state.crm.tokens.issue(user.id, user.password_hash)}"}

    @property
    def sync(self) -> SettingsSync:
        """The app's live-settings sync (only on apps started with one)."""
        sync: SettingsSync = self.app.state.settings_sync
        return sync

    async def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        """Rows of a raw query on the test's schema."""
        async with self.sessions() as session:
            return [dict(row._mapping) for row in await session.execute(text(sql), params)]


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0, what: str = "condition") -> None:
    """Wait until ``check()`` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout}s")
        await asyncio.sleep(0.05)


@pytest.fixture(autouse=True)
def _no_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Environment defaults also come from ./.env: run where there is none.
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def settings(pg_schema: str) -> CrmSettings:
    """Settings on this test's schema with a bucket of its own."""
    return admin_settings(pg_schema)


@pytest_asyncio.fixture
async def redis() -> AsyncIterator[Redis]:
    """The machine's Redis, database 14."""
    client = Redis.from_url(API_REDIS_URL)
    yield client
    await client.aclose()


@asynccontextmanager
async def running_api(
    settings: CrmSettings,
    engine: AsyncEngine,
    redis: Redis,
    sessions: async_sessionmaker[AsyncSession],
    *,
    sync_interval: float | None = None,
) -> AsyncIterator[Api]:
    """The app started (with a live-settings sync every ``sync_interval`` seconds when given)."""
    extras = [settings_sync_lifespan(interval=sync_interval)] if sync_interval is not None else []
    app = create_app(settings, engine=engine, redis=redis, lifespan_extras=extras)
    address = random_address()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://crm.test", timeout=30) as client:
            yield Api(app=app, client=client, sessions=sessions, settings=settings, address=address)


async def delete_bucket(nats_url: str, bucket: str) -> None:
    """Remove a test's settings bucket."""
    nc = await nats.connect(nats_url)
    try:
        with suppress(Exception):
            await nc.jetstream().delete_key_value(bucket)
    finally:
        await nc.close()


@pytest_asyncio.fixture
async def api(
    settings: CrmSettings, crm_engine: AsyncEngine, redis: Redis, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Api]:
    """The app without a live-settings sync (changes are saved, not propagated)."""
    async with running_api(settings, crm_engine, redis, sessions) as started:
        yield started


@pytest_asyncio.fixture
async def synced_api(
    settings: CrmSettings, crm_engine: AsyncEngine, redis: Redis, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Api]:
    """The app with its live-settings sync on the machine's NATS, in this test's own bucket."""
    try:
        async with running_api(settings, crm_engine, redis, sessions, sync_interval=1.0) as started:
            await asyncio.wait_for(started.sync.reconciled.wait(), 15)
            yield started
    finally:
        await delete_bucket(settings.nats_url, settings.settings_bucket)


@pytest_asyncio.fixture
async def reader(settings: CrmSettings) -> AsyncIterator[Callable[[str], Awaitable[LiveSettings]]]:
    """Starts ``LiveSettings`` as another service would: its own connection, the test's bucket."""
    connections: list[NatsClient] = []
    followers: list[LiveSettings] = []

    async def start(nats_url: str = settings.nats_url) -> LiveSettings:
        nc = await nats.connect(nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        connections.append(nc)
        live = LiveSettings(nc, settings.app_key, settings.settings_bucket)
        await live.start()
        followers.append(live)
        return live

    yield start
    for live in followers:
        await live.stop()
    for nc in connections:
        # A test may have stopped the server under this connection.
        with suppress(Exception):
            await asyncio.wait_for(nc.close(), 5)
