"""Transactional outbox: crm's events are stored with the change, then published.

A handler or request calls :func:`stage` inside its unit of work; after the commit the
entry point calls :meth:`Outbox.flush` with what it staged. If NATS is down at that
moment, :meth:`Outbox.relay` (running in the background of every replica) publishes the
leftovers later. Nothing that committed is ever left unannounced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from jggl_common.bus import BusUnavailable, EventPublisher
from jggl_common.contracts import Envelope, utcnow
from jggl_common.logs import get_logger

from .models import OutboxEvent

log = get_logger(__name__)


async def stage(session: AsyncSession, envelope: Envelope, subject: str | None = None) -> str:
    """Record ``envelope`` for publication when the transaction commits; returns its id.

    Staging the same event id twice is a no-op, so a redelivered message can stage again.
    """
    await session.execute(
        insert(OutboxEvent)
        .values(
            event_id=envelope.id,
            subject=subject or envelope.subject,
            payload=envelope.model_dump_json(),
            correlation_id=envelope.correlation_id,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["event_id"])
    )
    return envelope.id


class Outbox:
    """Publishes staged events; one per process."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], publisher: EventPublisher) -> None:
        self._sessions = sessions
        self._publisher = publisher

    async def flush(self, event_ids: Sequence[str] | None = None, limit: int = 500) -> int:
        """Publish the given staged events (or the oldest unpublished ones); returns how many."""
        async with self._sessions() as session:
            query = select(OutboxEvent).where(col(OutboxEvent.published_at).is_(None))
            if event_ids is not None:
                if not event_ids:
                    return 0
                query = query.where(col(OutboxEvent.event_id).in_(event_ids))
            rows = (await session.execute(query.order_by(col(OutboxEvent.id)).limit(limit))).scalars().all()
            if not rows:
                return 0
            await self._publisher.publish_raw(
                (
                    row.subject,
                    row.payload.encode(),
                    {
                        "Nats-Msg-Id": row.event_id,
                        **({"X-Correlation-ID": row.correlation_id} if row.correlation_id else {}),
                    },
                )
                for row in rows
            )
            await session.execute(
                update(OutboxEvent)
                .where(col(OutboxEvent.id).in_([row.id for row in rows]))
                .values(published_at=utcnow())
            )
            await session.commit()
            return len(rows)

    async def relay(self, interval: float = 2.0) -> None:
        """Forever: publish what was committed but not yet published."""
        while True:
            try:
                while await self.flush() > 0:
                    pass
            except BusUnavailable as exc:
                log.warning("outbox relay waiting for NATS", error=str(exc))
            except Exception as exc:
                log.error("outbox relay failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(interval)
