"""Async PostgreSQL engine and session helpers.

Each service owns one schema, named after it. The engine pins ``search_path`` to that
schema, so models and migrations are written without schema names and the tests can give
each test a schema of its own on the real server.

A database error never carries the values of a statement (customer text, e-mail
addresses, tokens) into a log line or a dead letter: the engine hides the parameters
(``hide_parameters``), and :func:`_scrub_error` blanks the values PostgreSQL and asyncpg
quote in their own messages (``invalid input syntax for type integer: "…"``, ``invalid input
for query argument $1: '…'``) and drops the driver's error, whose ``DETAIL`` repeats them
(``Key (email)=(…) already exists``), from the exception chain. What is left says what went
wrong and where: the error class, the SQL with ``$n`` placeholders, the constraint's name.
The SQLSTATE stays readable on ``exc.orig.sqlstate``. Code that uses the driver's connection
itself (:func:`driver_connection`, :func:`autocommit`) gets the same: the engine's asyncpg
connections are :class:`ScrubbingConnection`, whose queries raise their errors scrubbed in
place (same class, same SQLSTATE, no ``DETAIL``, quoted values blanked).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar, cast

import asyncpg
from sqlalchemy import event, text
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

__all__ = [
    "ScrubbingConnection",
    "async_url",
    "autocommit",
    "create_engine",
    "delete_oldest",
    "driver_connection",
    "ensure_schema",
    "scrub_driver_error",
    "scrub_message",
    "session_factory",
    "session_scope",
]


def async_url(url: str) -> str:
    """``postgres://`` / ``postgresql://`` URLs rewritten for the asyncpg driver."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("DATABASE_URL must start with postgresql:// or postgres://")


def create_engine(url: str, schema: str, *, pool_size: int = 10, **kwargs: Any) -> AsyncEngine:
    """An asyncpg engine whose connections use ``schema`` (then ``public``).

    ``pool_size`` connections stay open; a burst may open a quarter more, which are closed
    again when returned (a new PostgreSQL connection costs milliseconds: size the pool
    for the steady load).
    """
    kwargs.setdefault("hide_parameters", True)
    engine = create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=max(2, pool_size // 4),
        connect_args={
            "server_settings": {"search_path": f"{schema},public", "application_name": schema},
            "connection_class": ScrubbingConnection,
        },
        **kwargs,
    )
    event.listen(engine.sync_engine, "checkout", _refuse_closed)
    event.listen(engine.sync_engine, "handle_error", _scrub_error)
    return engine


_QUOTED_VALUE = re.compile(r"""(: )(?:"(?:[^"]|"")*"|'(?:[^'\\]|\\.)*')""", re.DOTALL)
_ARGUMENT_VALUE = re.compile(r"(invalid input for query argument \$\d+[^:\n]*): .*")
HIDDEN = "(value hidden)"


def scrub_message(message: str) -> str:
    """``message`` without the values PostgreSQL or asyncpg quote in it."""
    message = _ARGUMENT_VALUE.sub(rf"\1: {HIDDEN}", message)
    return _QUOTED_VALUE.sub(rf"\1{HIDDEN}", message)


def scrub_driver_error(exc: BaseException) -> None:
    """Blank, in place, what an asyncpg error says about a statement's values: its ``DETAIL``
    (``Key (email)=(…)``, ``Failing row contains (…)``), the values quoted in its message and
    the errors chained to it."""
    if getattr(exc, "detail", None) is not None:
        exc.detail = None  # type: ignore[attr-defined]
    if exc.args and isinstance(exc.args[0], str):
        exc.args = (scrub_message(exc.args[0]), *exc.args[1:])
    # A codec's own error (``invalid UUID '…'``) may be the cause: it goes too.
    exc.__cause__ = None
    exc.__suppress_context__ = True


_Result = TypeVar("_Result")


async def _scrubbed(call: Awaitable[_Result]) -> _Result:
    try:
        return await call
    except Exception as exc:
        scrub_driver_error(exc)
        raise


class ScrubbingConnection(asyncpg.Connection):
    """The engine's asyncpg connections: a failing query's error carries no statement values."""

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await _scrubbed(super().execute(*args, **kwargs))

    async def executemany(self, *args: Any, **kwargs: Any) -> Any:
        return await _scrubbed(super().executemany(*args, **kwargs))

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        return await _scrubbed(super().fetch(*args, **kwargs))

    async def fetchval(self, *args: Any, **kwargs: Any) -> Any:
        return await _scrubbed(super().fetchval(*args, **kwargs))

    async def fetchrow(self, *args: Any, **kwargs: Any) -> Any:
        return await _scrubbed(super().fetchrow(*args, **kwargs))

    async def fetchmany(self, *args: Any, **kwargs: Any) -> Any:
        return await _scrubbed(super().fetchmany(*args, **kwargs))

    async def copy_records_to_table(self, *args: Any, **kwargs: Any) -> Any:
        return await _scrubbed(super().copy_records_to_table(*args, **kwargs))


def _scrub_error(context: ExceptionContext) -> None:
    """Engine ``handle_error``: no statement value survives in the error's text or chain."""
    original = context.original_exception
    if original is not None:
        if original.__cause__ is not None:
            scrub_driver_error(original.__cause__)
        if original.args and isinstance(original.args[0], str):
            original.args = (scrub_message(original.args[0]), *original.args[1:])
        # The driver's own error (asyncpg's, with DETAIL) is the cause: cut it off.
        original.__cause__ = None
        original.__suppress_context__ = True
    wrapped = context.sqlalchemy_exception
    if wrapped is not None and wrapped.args and isinstance(wrapped.args[0], str):
        wrapped.args = (scrub_message(wrapped.args[0]), *wrapped.args[1:])


def _refuse_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Pool checkout: a connection the server closed (a restart, an admin's terminate) is
    replaced before use. The driver notices a closed socket on its own, so this costs no
    round trip, unlike ``pool_pre_ping`` (three per checkout with asyncpg)."""
    if record.driver_connection is None or record.driver_connection.is_closed():
        raise DisconnectionError("connection closed by the server")


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


_DRIVER = "jggl.driver_connection"


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under ``session``'s transaction, for hot-path statements.

    A statement run on the driver costs a fraction of the CPU of one built and executed
    through SQLAlchemy (about 70 vs 200-650 µs here), which matters for code that runs
    dozens per message. SQLAlchemy begins its transaction lazily, at its first statement:
    this makes sure it has begun, so the session's commit or rollback covers what runs
    on the driver. JSON parameters go as text (SQLAlchemy's codec); JSON results come
    back decoded.
    """
    transaction = session.sync_session.get_transaction()
    cached = session.info.get(_DRIVER)
    if transaction is not None and cached is not None and cached[0] is transaction:
        return cast(asyncpg.Connection, cached[1])
    conn = await session.connection()
    pooled = await conn.get_raw_connection()
    raw = cast(asyncpg.Connection, pooled.driver_connection)
    if not raw.is_in_transaction():
        # SQLAlchemy's asyncpg adapter begins on its next statement; ask it to begin now
        # (one BEGIN), or, should the adapter not offer that, run a statement through it.
        begin = getattr(pooled.dbapi_connection, "_start_transaction", None)
        if begin is not None:
            await begin()
        else:
            await conn.exec_driver_sql("SELECT 1")
    session.info[_DRIVER] = (session.sync_session.get_transaction(), raw)
    return raw


@asynccontextmanager
async def autocommit(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[asyncpg.Connection]:
    """A pooled asyncpg connection outside any transaction: each statement commits alone.

    For work that is one statement (a status update, say): one round trip instead of
    BEGIN, the statement and COMMIT. Use :func:`session_scope` for anything more.
    """
    async with factory() as session:
        conn = await session.connection()
        raw = cast(asyncpg.Connection, (await conn.get_raw_connection()).driver_connection)
        yield raw


async def delete_oldest(db: asyncpg.Connection, table: str, column: str, before: datetime, batch: int) -> int:
    """Delete, among the ``batch`` oldest rows of ``table`` (by primary key ``id``), those
    whose ``column`` is before ``before``; returns how many.

    For tables that only grow at the end (an outbox, a log): old rows are the first ones,
    so a pass reads at most ``batch`` rows of the primary key and never scans the table.
    A row that never qualifies holds back the ones after it. ``table`` and ``column`` are
    the caller's constants, never input.
    """
    status = await db.execute(
        f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} ORDER BY id LIMIT $2) AND {column} < $1",
        before,
        batch,
    )
    return int(status.rsplit(" ", 1)[-1])
