"""Transactional outbox: crm's events are stored with the change, then published.

A handler or request calls :func:`stage` inside its unit of work; after the commit the
entry point calls :meth:`Outbox.flush` with what it staged. If NATS is down at that
moment, :meth:`Outbox.relay` (running in the background of every replica) publishes the
leftovers later. Nothing that committed is ever left unannounced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jggl_common.bus import BusUnavailable, EventPublisher
from jggl_common.contracts import Envelope, utcnow
from jggl_common.db import autocommit, delete_oldest, driver_connection
from jggl_common.logs import CORRELATION_HEADER, get_logger

log = get_logger(__name__)

_UNPUBLISHED = "SELECT id, event_id, subject, payload, correlation_id FROM outbox WHERE published_at IS NULL"
_STAGED = "jggl.outbox.staged"


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

    Staging the same event id twice is a no-op, so a redelivered message can stage again.
    The event is also kept on the session for :func:`take_staged`.
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
        await (await driver_connection(session)).execute(
            "INSERT INTO outbox (event_id, subject, payload, correlation_id, created_at)"
            " SELECT *, $5::timestamptz FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])"
            " ON CONFLICT (event_id) DO NOTHING",
            [event.event_id for event in staged],
            [event.subject for event in staged],
            [event.payload for event in staged],
            [event.correlation_id for event in staged],
            utcnow(),
        )
        session.info.setdefault(_STAGED, []).extend(staged)
    return [event.event_id for event in staged]


def take_staged(session: AsyncSession) -> list[Staged]:
    """The events staged on ``session`` since the last call, for :meth:`Outbox.publish`
    once the transaction committed."""
    return list(session.info.pop(_STAGED, []))


class Outbox:
    """Publishes staged events; one per process."""

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

    async def flush_committed(self, event_ids: Sequence[str]) -> None:
        """:meth:`flush` the events a committed unit of work staged; never raises.

        A failure is not the caller's problem: the change is committed and the relay
        publishes what is left behind.
        """
        if not event_ids:
            return
        try:
            await self.flush(event_ids)
        except Exception as exc:
            log.warning("events left to the outbox relay", error=f"{type(exc).__name__}: {exc}")

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

    async def flush(self, event_ids: Sequence[str] | None = None, limit: int = 500) -> int:
        """Publish the given staged events (or the oldest unpublished ones); returns how many."""
        if event_ids is not None and not event_ids:
            return 0
        async with self._sessions() as session:
            db = await driver_connection(session)
            if event_ids is None:
                rows = await db.fetch(_UNPUBLISHED + " ORDER BY id LIMIT $1", limit)
            else:
                rows = await db.fetch(
                    _UNPUBLISHED + " AND event_id = ANY($1::text[]) ORDER BY id LIMIT $2", event_ids, limit
                )
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

    async def relay(self, interval: float = 2.0) -> None:
        """Forever: publish what was committed but not yet published, mark what was, and
        delete what was published longer ago than the retention."""
        try:
            while True:
                await self._relay_once()
                await asyncio.sleep(interval)
        finally:
            with suppress(Exception):
                await asyncio.shield(self.mark_published())

    async def _relay_once(self) -> None:
        try:
            await self.mark_published()
            while await self.flush() > 0:
                pass
            await self.prune()
        except BusUnavailable as exc:
            log.warning("outbox relay waiting for NATS", error=str(exc))
        except Exception as exc:
            log.error("outbox relay failed", error=f"{type(exc).__name__}: {exc}")
