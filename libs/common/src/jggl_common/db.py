"""Async PostgreSQL engine and session helpers.

Each service owns one schema, named after it. The engine pins ``search_path`` to that
schema, so models and migrations are written without schema names and the tests can give
each test a schema of its own on the real server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

__all__ = ["async_url", "create_engine", "ensure_schema", "session_factory", "session_scope"]


def async_url(url: str) -> str:
    """``postgres://`` / ``postgresql://`` URLs rewritten for the asyncpg driver."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("DATABASE_URL must start with postgresql:// or postgres://")


def create_engine(url: str, schema: str, *, pool_size: int = 10, **kwargs: Any) -> AsyncEngine:
    """An asyncpg engine whose connections use ``schema`` (then ``public``)."""
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args={"server_settings": {"search_path": f"{schema},public", "application_name": schema}},
        **kwargs,
    )


async def ensure_schema(engine: AsyncEngine, schema: str) -> None:
    """Create ``schema`` if it does not exist."""
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def session_scope(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One unit of work: commits when the block ends normally, rolls back otherwise.

    Entry points (a request, a message) own the transaction; code below them never commits.
    """
    async with factory() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
