"""Statements run on the driver connection belong to the session's transaction."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.db import autocommit, create_engine, driver_connection, session_factory, session_scope
from jggl_common.testing import TEST_DATABASE_URL


async def _names(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return [row[0] for row in await conn.execute(text("SELECT name FROM items ORDER BY name"))]


async def test_driver_statements_commit_and_roll_back_with_the_session(schema_engine: AsyncEngine) -> None:
    async with schema_engine.begin() as conn:
        await conn.execute(text("CREATE TABLE items (name text PRIMARY KEY, data jsonb)"))
    sessions = session_factory(schema_engine)

    # The driver's statement comes first: the transaction must already be SQLAlchemy's.
    async with session_scope(sessions) as session:
        db = await driver_connection(session)
        await db.execute("INSERT INTO items VALUES ($1, $2)", "kept", '{"a": 1}')
        await session.execute(text("INSERT INTO items VALUES ('kept too', NULL)"))
        assert await driver_connection(session) is db
        assert await db.fetchval("SELECT data FROM items WHERE name = 'kept'") == {"a": 1}

    async def failing_unit() -> None:
        async with session_scope(sessions) as session:
            await (await driver_connection(session)).execute("INSERT INTO items VALUES ('rolled back', NULL)")
            raise RuntimeError("the unit of work fails")

    with pytest.raises(RuntimeError):
        await failing_unit()

    async with sessions() as session:
        await (await driver_connection(session)).execute("INSERT INTO items VALUES ('first', NULL)")
        await session.commit()
        # A second transaction on the same session gets the connection again.
        await (await driver_connection(session)).execute("INSERT INTO items VALUES ('second', NULL)")
        await session.rollback()

    assert await _names(schema_engine) == ["first", "kept", "kept too"]


async def test_connections_the_server_closed_are_replaced_at_checkout(
    schema_engine: AsyncEngine, pg_schema: str
) -> None:
    sessions = session_factory(schema_engine)
    # Fill the pool with a few idle connections.
    held = [sessions() for _ in range(3)]
    for session in held:
        await session.execute(text("SELECT 1"))
    for session in held:
        await session.close()

    async with schema_engine.connect() as conn:
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar()
    # An admin (or a restart) ends every connection of this engine's pool.
    other = create_engine(TEST_DATABASE_URL, pg_schema, pool_size=1)
    try:
        async with other.connect() as admin:
            ended = (
                await admin.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                        " WHERE application_name = :schema AND pid <> pg_backend_pid()"
                    ),
                    {"schema": pg_schema},
                )
            ).scalar()
    finally:
        await other.dispose()
    assert ended is not None
    assert ended >= 1
    await asyncio.sleep(0.2)  # the driver sees the sockets close

    for _ in range(5):
        async with session_scope(sessions) as session:
            assert (await session.execute(text("SELECT pg_backend_pid()"))).scalar() != pid


async def test_autocommit_statements_are_committed_one_by_one(schema_engine: AsyncEngine) -> None:
    async with schema_engine.begin() as conn:
        await conn.execute(text("CREATE TABLE items (name text PRIMARY KEY, data jsonb)"))
    sessions = session_factory(schema_engine)

    async with autocommit(sessions) as db:
        await db.execute("INSERT INTO items VALUES ('one', NULL)")
        assert await _names(schema_engine) == ["one"]  # seen by another connection already
        with pytest.raises(asyncpg.UniqueViolationError):
            await db.execute("INSERT INTO items VALUES ('one', NULL)")
        await db.execute("INSERT INTO items VALUES ('two', NULL)")  # the failure rolled back nothing else

    assert await _names(schema_engine) == ["one", "two"]
