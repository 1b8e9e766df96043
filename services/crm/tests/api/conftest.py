"""The crm API in-process over a fresh migrated schema, the machine's Redis and httpx.

Redis is shared with other tests and earlier runs: every test uses e-mails of its own
and a client address of its own, so login counters never collide.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm.api import create_app
from crm.config import CrmSettings
from crm.models import User
from crm.web.state import CrmState

from ..support import API_REDIS_URL, crm_settings, random_address


def api_settings(schema: str, **overrides: Any) -> CrmSettings:
    """:func:`crm_settings` as this suite's tests want them."""
    return crm_settings(schema, **{"login_attempts_per_15_min": 5, **overrides})


@dataclass
class Api:
    """An HTTP client on the app plus ways to act as a given user."""

    app: FastAPI
    client: httpx.AsyncClient
    sessions: async_sessionmaker[AsyncSession]

    @property
    def state(self) -> CrmState:
        """The app's state (tokens, limiter...)."""
        state: CrmState = self.app.state.crm
        return state

    def headers(self, user: User) -> dict[str, str]:
        """An ``Authorization`` header for ``user``."""
        assert user.id is not None
        return {"Authorization": f"Bearer {self.state.tokens.issue(user.id, user.password_hash)}"}


@pytest.fixture
def settings(pg_schema: str) -> CrmSettings:
    """API settings on this test's schema."""
    return api_settings(pg_schema)


@pytest_asyncio.fixture
async def redis() -> AsyncIterator[Redis]:
    """The machine's Redis, database 14."""
    client = Redis.from_url(API_REDIS_URL)
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def api(
    settings: CrmSettings,
    crm_engine: AsyncEngine,
    redis: Redis,
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[Api]:
    """The app, started, with a client that calls it in-process."""
    app = create_app(settings, engine=crm_engine, redis=redis)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(random_address(), 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://crm.test", timeout=30) as client:
            yield Api(app=app, client=client, sessions=sessions)
