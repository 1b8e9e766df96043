"""Statements run on the driver connection belong to the session's transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.db import driver_connection, session_factory, session_scope


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

    with pytest.raises(RuntimeError):
        async with session_scope(sessions) as session:
            await (await driver_connection(session)).execute("INSERT INTO items VALUES ('rolled back', NULL)")
            raise RuntimeError("the unit of work fails")

    async with sessions() as session:
        await (await driver_connection(session)).execute("INSERT INTO items VALUES ('first', NULL)")
        await session.commit()
        # A second transaction on the same session gets the connection again.
        await (await driver_connection(session)).execute("INSERT INTO items VALUES ('second', NULL)")
        await session.rollback()

    assert await _names(schema_engine) == ["first", "kept", "kept too"]
