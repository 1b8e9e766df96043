"""Retention: what a service keeps only for a while, deleted on the scheduler's daily tick.

The scheduler keeps time, the owner does the work (DESIGN §3 "Scheduler"): each service
that keeps growing tables handles ``scheduler.tick.retention.<service>`` (the jobs
``retention.crm``, ``retention.ai``, ``retention.notifier``, all named ``retention.*``),
deletes what its own retention settings let go, and reports ``<service>.job.finished``
with how many rows of each table went.

Deleting is done in small batches, each one statement committed on its own, so no pass
holds locks or a snapshot for long and a busy table keeps being written meanwhile:

* :class:`OldRows`, for a table that grows at the end of its ``bigint`` key (an outbox, a
  log): a walk in key order, ``batch`` keys at a time, deleting the rows of each window
  whose time is before the cutoff, except those a ``keep`` condition holds back (a pending
  notification, say) — which do not stop the walk. It ends at the first window with no
  old row, so a pass reads the old rows once and the young ones not at all.
* :class:`Matching`, for a small table or one whose condition is indexed: ``DELETE`` of
  at most ``batch`` rows matching a condition, until fewer are found.

A run has a time budget: what is left when it runs out is the next run's (the counts say
so with ``unfinished``). Every batch is idempotent, so a repeated or redelivered tick is
harmless: it deletes what is old by then, and its outcome event has the same id.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

import asyncpg
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .bus import PermanentFailure, RetryPolicy, ServiceBus
from .contracts import (
    JobFinished,
    JobFinishedData,
    SchedulerTick,
    job_finished_subject,
    stable_event_id,
    tick_subject,
    utcnow,
)
from .db import autocommit
from .logs import get_logger
from .outbox import Outbox, stage
from .streams import SCHEDULER

__all__ = [
    "BATCH",
    "JOB_PREFIX",
    "MAX_SECONDS",
    "Matching",
    "OldRows",
    "Pruned",
    "RetentionJob",
    "Rule",
    "outbox_rows",
    "prune",
    "register",
    "retention_job",
]

log = get_logger(__name__)

JOB_PREFIX = "retention"
BATCH = 5000
"""Rows one statement deletes at most (and keys one walk window reads)."""
MAX_SECONDS = 300.0
"""A run's time budget; what is left is the next run's."""
_FIRST_KEY = -(2**63)


def retention_job(owner: str) -> str:
    """``retention.<owner>``: the job whose ticks ``owner`` prunes its tables on."""
    return f"{JOB_PREFIX}.{owner}"


class Rule(Protocol):
    """One table's retention: :attr:`name` (its key in the counts) and one batch at a time."""

    name: str

    async def delete_batch(self, db: asyncpg.Connection, limit: int) -> tuple[int, bool]:
        """Delete at most ``limit`` rows; returns how many, and whether there may be more."""
        ...


@dataclass
class OldRows:
    """Rows of ``table`` whose ``column`` is before ``before``, walked in ``key`` order.

    ``keep`` is an SQL condition on the row (alias ``t``; ``$1`` is ``before``) for rows
    that stay however old. ``table``, ``key``, ``column`` and ``keep`` are the caller's
    constants, never input.
    """

    name: str
    table: str
    column: str
    before: datetime
    key: str = "id"
    keep: str | None = None
    _after: int = field(default=_FIRST_KEY, init=False)

    def _sql(self) -> str:
        kept = f" AND NOT ({self.keep})" if self.keep else ""
        return (
            f"WITH w AS (SELECT {self.key} AS k, {self.column} < $1 AS old FROM {self.table}"
            f" WHERE {self.key} > $2::bigint ORDER BY {self.key} LIMIT $3),"
            f" gone AS (DELETE FROM {self.table} t USING w WHERE t.{self.key} = w.k AND w.old{kept} RETURNING 1)"
            " SELECT (SELECT max(k) FROM w) AS last, (SELECT count(*) FROM w WHERE old) AS old,"
            " (SELECT count(*) FROM gone) AS deleted"
        )

    async def delete_batch(self, db: asyncpg.Connection, limit: int) -> tuple[int, bool]:
        row = await db.fetchrow(self._sql(), self.before, self._after, limit)
        assert row is not None
        if row["last"] is None or row["old"] == 0:
            return int(row["deleted"]), False
        self._after = int(row["last"])
        return int(row["deleted"]), True


def outbox_rows(before: datetime) -> OldRows:
    """The service's ``outbox`` rows published before ``before`` (never an unpublished one:
    the relay still owes it to JetStream)."""
    return OldRows("outbox", "outbox", "created_at", before, keep="t.published_at IS NULL OR t.published_at >= $1")


@dataclass
class Matching:
    """At most ``limit`` rows of ``table`` matching ``where`` (alias ``t``; ``$1`` is
    ``at``) per batch, rows locked by someone else skipped, until fewer are found."""

    name: str
    table: str
    key: str
    where: str
    at: datetime

    async def delete_batch(self, db: asyncpg.Connection, limit: int) -> tuple[int, bool]:
        status = await db.execute(
            f"DELETE FROM {self.table} WHERE {self.key} IN"
            f" (SELECT t.{self.key} FROM {self.table} t WHERE {self.where} LIMIT $2 FOR UPDATE SKIP LOCKED)",
            self.at,
            limit,
        )
        deleted = int(status.rsplit(" ", 1)[-1])
        return deleted, deleted >= limit


@dataclass(frozen=True, slots=True)
class Pruned:
    """What a run deleted per rule, and whether it ran out of time before the end."""

    counts: dict[str, int]
    unfinished: int

    def as_counts(self) -> dict[str, int]:
        """The counts a :class:`JobFinished` carries (``unfinished``: rules left for the next run)."""
        return {**self.counts, "unfinished": self.unfinished}


async def prune(
    sessions: async_sessionmaker[AsyncSession],
    rules: Sequence[Rule],
    *,
    batch: int = BATCH,
    max_seconds: float = MAX_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> Pruned:
    """Apply ``rules`` one after the other, one batch per statement, within ``max_seconds``."""
    deadline = clock() + max_seconds
    counts = {rule.name: 0 for rule in rules}
    unfinished = 0
    for rule in rules:
        more = True
        while more and clock() < deadline:
            async with autocommit(sessions) as db:
                deleted, more = await rule.delete_batch(db, batch)
            counts[rule.name] += deleted
        unfinished += int(more)
    return Pruned(counts, unfinished)


class RetentionJob:
    """A service's ``retention.<owner>`` job: prunes by its rules on a tick and reports
    ``<owner>.job.finished`` (staged in the outbox; id from the tick's and the status)."""

    def __init__(
        self,
        owner: str,
        sessions: async_sessionmaker[AsyncSession],
        outbox: Outbox,
        rules: Callable[[datetime], Sequence[Rule]],
        *,
        batch: int = BATCH,
        max_seconds: float = MAX_SECONDS,
    ) -> None:
        self.owner = owner
        self.job = retention_job(owner)
        self._sessions = sessions
        self._outbox = outbox
        self._rules = rules
        self._batch = batch
        self.max_seconds = max_seconds

    async def run(self, now: datetime | None = None) -> Pruned:
        """Prune what is old at ``now`` (default: now)."""
        rules = self._rules(now or utcnow())
        return await prune(self._sessions, rules, batch=self._batch, max_seconds=self.max_seconds)

    async def handle(self, tick: SchedulerTick) -> dict[str, int]:
        """Do the run for ``tick`` and report it; a failure is reported and raised (the bus
        tries the tick again)."""
        started = utcnow()
        try:
            counts = (await self.run(started)).as_counts()
        except Exception as exc:
            await self._report(tick, started, "failed", {}, f"{type(exc).__name__}: {exc}")
            raise
        await self._report(tick, started, "done", counts, None)
        log.info("retention done", job=self.job, slot=tick.data.slot, **counts)
        return counts

    async def _report(
        self,
        tick: SchedulerTick,
        started: datetime,
        status: Literal["done", "failed"],
        counts: dict[str, int],
        error: str | None,
    ) -> None:
        event = JobFinished(
            id=stable_event_id(f"{job_finished_subject(self.owner)}:{tick.id}:{status}"),
            producer=self.owner,
            correlation_id=tick.correlation_id or tick.id,
            data=JobFinishedData(
                job=tick.data.job,
                slot=tick.data.slot,
                status=status,
                counts=counts,
                error=error[:2000] if error else None,
                started_at=started,
                finished_at=utcnow(),
            ),
        )
        async with self._outbox.transaction() as session:
            await stage(session, event, job_finished_subject(self.owner))


def register(
    bus: ServiceBus,
    job: RetentionJob,
    *,
    durable: str | None = None,
    policy: RetryPolicy | None = None,
) -> None:
    """The durable consumer of ``scheduler.tick.retention.<owner>`` (``<owner>-retention``
    unless ``durable`` says otherwise); start the bus afterwards. The tick is acknowledged
    once the run is reported; its acknowledgement deadline outlasts the run's budget."""

    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=durable or f"{job.owner}-retention",
        stream=SCHEDULER,
        subject=tick_subject(job.job),
        policy=policy,
        max_workers=1,
        ack_wait=job.max_seconds + 60.0,
    )
    async def on_tick(body: Any) -> None:
        try:
            tick = SchedulerTick.model_validate(body)
        except ValidationError as exc:
            raise PermanentFailure(f"malformed scheduler tick: {exc}") from exc
        await job.handle(tick)
