"""The transactional outbox every service that writes and announces uses.

An event is stored in the ``outbox`` table of the service's own schema in the same
transaction as the change it announces (:func:`stage`), and published right after the
commit, from memory. If NATS is down at that moment, :meth:`Outbox.relay` (running in the
background of every replica) publishes what is left later. Nothing that committed is ever
left unannounced, and nothing that rolled back is ever announced.

There is one way to publish after a commit: a unit of work,

    async with outbox.transaction() as session:
        ...change rows...
        await stage(session, event)
    # committed, then published

or, where the entry point commits the session itself (a FastAPI request),
``await session.commit()`` followed by ``await outbox.committed(session)``.

Each service's migrations create the table with :func:`outbox_columns` (the same columns
everywhere); the event id is unique, so staging a redelivered message's event again is a
no-op, and ``Nats-Msg-Id`` = the event id makes a second publish harmless.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .bus import BusUnavailable, EventPublisher
from .contracts import Envelope, utcnow
from .db import autocommit, delete_oldest, driver_connection, session_scope
from .logs import CORRELATION_HEADER, get_logger

__all__ = ["Outbox", "Staged", "outbox_columns", "stage", "stage_all", "take_staged"]

log = get_logger(__name__)

_UNPUBLISHED = "SELECT id, event_id, subject, payload, correlation_id FROM outbox WHERE published_at IS NULL"
_STAGED = "jggl.outbox.staged"


def outbox_columns() -> list[sa.schema.SchemaItem]:
    """The columns and index of a service's ``outbox`` table, for its migration
    (``op.create_table("outbox", *outbox_columns())``) or its metadata."""
    return [
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("event_id", sa.String(100), nullable=False, unique=True),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("correlation_id", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Index("ix_outbox_unpublished", "id", postgresql_where=sa.text("published_at IS NULL")),
    ]


@dataclass(frozen=True, slots=True)
class Staged:
    """An event staged in a transaction, kept in memory to publish once it commits."""

    event_id: str
    subject: str
    payload: str
    correlation_id: str | None

    def message(self) -> tuple[str, bytes, dict[str, str]]:
        """Subject, payload and headers as JetStream gets them."""
        headers = {"Nats-Msg-Id": self.event_id}
        if self.correlation_id:
            headers[CORRELATION_HEADER] = self.correlation_id
        return self.subject, self.payload.encode(), headers


async def stage(session: AsyncSession, envelope: Envelope, subject: str | None = None) -> str:
    """Record ``envelope`` for publication when the transaction commits; returns its id.

    Staging an event id already stored is a no-op (nothing is published again), so a
    redelivered message can stage again.
    """
    (event_id,) = await stage_all(session, [(envelope, subject)])
    return event_id


async def stage_all(session: AsyncSession, envelopes: Sequence[tuple[Envelope, str | None]]) -> list[str]:
    """:func:`stage` for several ``(envelope, subject or None)`` at once, in one statement."""
    staged = [
        Staged(envelope.id, subject or envelope.subject, envelope.model_dump_json(), envelope.correlation_id)
        for envelope, subject in envelopes
    ]
    if staged:
        # Only what this statement stored is published after the commit: an event staged
        # again (a redelivery, an echo that already announced a reply) went out before.
        stored = await (await driver_connection(session)).fetch(
            "INSERT INTO outbox (event_id, subject, payload, correlation_id, created_at)"
            " SELECT *, $5::timestamptz FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])"
            " ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
            [event.event_id for event in staged],
            [event.subject for event in staged],
            [event.payload for event in staged],
            [event.correlation_id for event in staged],
            utcnow(),
        )
        new = {row["event_id"] for row in stored}
        session.info.setdefault(_STAGED, []).extend(event for event in staged if event.event_id in new)
    return [event.event_id for event in staged]


def take_staged(session: AsyncSession) -> list[Staged]:
    """The events staged on ``session`` since the last call (and forgets them)."""
    return list(session.info.pop(_STAGED, []))


class Outbox:
    """Commits units of work and publishes what they staged; one per process."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        publisher: EventPublisher,
        *,
        retention: timedelta = timedelta(days=1),
    ) -> None:
        self._sessions = sessions
        self._publisher = publisher
        self._retention = retention
        self._unmarked: list[str] = []

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits when the block ends normally (rolls back otherwise),
        then publishes the events staged in it. Publishing never raises: the change is
        committed and the relay publishes what could not be."""
        async with session_scope(self._sessions) as session:
            yield session
        await self.publish(take_staged(session))

    async def committed(self, session: AsyncSession) -> None:
        """Publish what ``session`` staged, after its caller committed it; never raises."""
        await self.publish(take_staged(session))

    async def publish(self, events: Sequence[Staged]) -> None:
        """Publish events whose transaction committed, straight from memory; never raises.

        Their rows are marked published later, in batches, by the relay; a row left
        unmarked (the process stopped first) is published again, and JetStream's
        duplicate window drops the repeat. If publishing fails, the committed rows are
        the relay's to publish.
        """
        if not events:
            return
        try:
            await self._publisher.publish_raw(event.message() for event in events)
        except Exception as exc:
            log.warning("events left to the outbox relay", error=f"{type(exc).__name__}: {exc}")
            return
        self._unmarked.extend(event.event_id for event in events)

    async def mark_published(self) -> int:
        """Record as published what :meth:`publish` sent; returns how many rows."""
        ids, self._unmarked = self._unmarked, []
        if not ids:
            return 0
        try:
            async with autocommit(self._sessions) as db:
                await db.execute(
                    "UPDATE outbox SET published_at = $2 WHERE event_id = ANY($1::text[]) AND published_at IS NULL",
                    ids,
                    utcnow(),
                )
        except BaseException:
            self._unmarked[:0] = ids
            raise
        return len(ids)

    async def flush(self, limit: int = 500) -> int:
        """Publish the oldest events committed but not yet published; returns how many."""
        async with self._sessions() as session:
            db = await driver_connection(session)
            rows = await db.fetch(_UNPUBLISHED + " ORDER BY id LIMIT $1", limit)
            if not rows:
                return 0
            await self._publisher.publish_raw(
                Staged(row["event_id"], row["subject"], row["payload"], row["correlation_id"]).message() for row in rows
            )
            await db.execute(
                "UPDATE outbox SET published_at = $2 WHERE id = ANY($1::bigint[])",
                [row["id"] for row in rows],
                utcnow(),
            )
            await session.commit()
            return len(rows)

    async def prune(self, batch: int = 5000) -> int:
        """Delete rows published longer ago than the retention; returns how many.

        A published row is needed only while JetStream's duplicate window could still
        matter; keeping them a day leaves room to look at recent events.
        """
        async with autocommit(self._sessions) as db:
            return await delete_oldest(db, "outbox", "published_at", utcnow() - self._retention, batch)

    async def relay(self, interval: float = 2.0, *, prune: bool = True) -> None:
        """Forever: publish what was committed but not yet published, mark what was, and
        (with ``prune``) delete what was published longer ago than the retention. A service
        whose daily retention job prunes its outbox (``jggl_common.retention``) passes
        ``prune=False``."""
        try:
            while True:
                await self.relay_once(prune=prune)
                await asyncio.sleep(interval)
        finally:
            with suppress(Exception):
                await asyncio.shield(self.mark_published())

    async def relay_once(self, *, prune: bool = True) -> None:
        """One pass of :meth:`relay`; failures are logged, never raised."""
        try:
            await self.mark_published()
            while await self.flush() > 0:
                pass
            if prune:
                await self.prune()
        except BusUnavailable as exc:
            log.warning("outbox relay waiting for NATS", error=str(exc))
        except Exception as exc:
            log.error("outbox relay failed", error=f"{type(exc).__name__}: {exc}")
