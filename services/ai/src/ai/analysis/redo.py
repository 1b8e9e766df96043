"""The ``ai.redo`` job: analyses that ended heuristic or failed are offered to Gemini again.

ai already offers a heuristic result back to Gemini after a cool-down that doubles with
each failed round, and gives a version up after three rounds of answers that are not an
analysis. That is right while Gemini is down or confused, but leaves conversations
heuristic for good once it is healthy again. On each tick of the scheduler's ``ai.redo``
job, when a Gemini key is configured, AI is enabled and the circuit breaker is not open,
the transcripts whose newest version has no Gemini analysis (and that are not being
analysed right now) are made due at once, with their failure count cleared — at most
``limit`` per tick, most recent conversations first; the call limiter paces the calls
themselves. The outcome goes back as ``ai.job.finished`` with the count.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jggl_common.bus import PermanentFailure, RetryPolicy, ServiceBus
from jggl_common.contracts import (
    JobFinished,
    JobFinishedData,
    SchedulerTick,
    job_finished_subject,
    stable_event_id,
    tick_subject,
    utcnow,
)
from jggl_common.db import driver_connection
from jggl_common.logs import get_logger
from jggl_common.outbox import Outbox, stage
from jggl_common.streams import SCHEDULER

from .limits import CircuitBreaker
from .service import GeminiSettings

__all__ = ["DURABLE", "JOB", "Redo", "register"]

log = get_logger(__name__)

JOB = "ai.redo"
DURABLE = "ai-redo"
PRODUCER = "ai"

_REQUEUE = """
UPDATE transcripts SET due_at = $1, failures = 0
 WHERE conversation_id IN (
   SELECT conversation_id FROM transcripts
    WHERE gemini_version < version
      AND (due_at IS NULL OR due_at > $1)
      AND (claimed_until IS NULL OR claimed_until < $1)
    ORDER BY conversation_id DESC
    LIMIT $2
    FOR UPDATE SKIP LOCKED)
"""


class Redo:
    """Handles ``ai.redo`` ticks; one per process."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        outbox: Outbox,
        gemini: Callable[[], GeminiSettings],
        enabled: Callable[[], bool],
        breaker: CircuitBreaker,
        on_due: Callable[[datetime], None],
        *,
        limit: int = 500,
    ) -> None:
        self._sessions = sessions
        self._outbox = outbox
        self._gemini = gemini
        self._enabled = enabled
        self._breaker = breaker
        self._on_due = on_due
        self._limit = limit

    def gemini_available(self) -> bool:
        """A key is configured, AI is on, and the breaker lets calls through."""
        return self._enabled() and self._gemini().client is not None and self._breaker.state != "open"

    async def handle(self, tick: SchedulerTick) -> int:
        """Make what Gemini should redo due now (when it is available) and report; how many."""
        started = utcnow()
        available = self.gemini_available()
        requeued = 0
        async with self._outbox.transaction() as session:
            if available:
                status = await (await driver_connection(session)).execute(_REQUEUE, started, self._limit)
                requeued = int(status.split()[-1])
            await stage(
                session,
                JobFinished(
                    id=stable_event_id(f"ai.job.finished:{tick.id}:done"),
                    producer=PRODUCER,
                    correlation_id=tick.correlation_id or tick.id,
                    data=JobFinishedData(
                        job=tick.data.job,
                        slot=tick.data.slot,
                        status="done",
                        counts={"requeued": requeued, "gemini_available": int(available)},
                        started_at=started,
                        finished_at=utcnow(),
                    ),
                ),
                job_finished_subject(PRODUCER),
            )
        if requeued:
            self._on_due(started)
        log.info("ai.redo", requeued=requeued, gemini_available=available, slot=tick.data.slot)
        return requeued


def register(bus: ServiceBus, redo: Redo, *, durable: str = DURABLE, policy: RetryPolicy | None = None) -> None:
    """The durable consumer of ``scheduler.tick.ai.redo`` (start the bus afterwards)."""

    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=durable, stream=SCHEDULER, subject=tick_subject(JOB), policy=policy
    )
    async def on_tick(body: Any) -> None:
        try:
            tick = SchedulerTick.model_validate(body)
        except ValidationError as exc:
            raise PermanentFailure(f"malformed scheduler tick: {exc}") from exc
        await redo.handle(tick)
