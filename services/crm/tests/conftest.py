"""Fixtures shared by crm's tests: a migrated schema of the test's own on the real server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm.migrate import upgrade
from jggl_common.db import session_factory


@pytest_asyncio.fixture
async def crm_engine(schema_engine: AsyncEngine, pg_schema: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh schema migrated to head."""
    await upgrade(schema_engine, pg_schema)
    yield schema_engine


@pytest_asyncio.fixture
async def sessions(crm_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Session factory over the migrated test schema."""
    return session_factory(crm_engine)
