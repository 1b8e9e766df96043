"""The statements the scheduler runs on its ``jobs`` and ``fires`` tables.

Each takes the asyncpg connection of the caller's unit of work; none commits. What to do
(which outcome wins, whether a command still applies) is decided in ``service`` by pure
functions; these only read and write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg

from jggl_common.contracts import JobRun, SchedulerTickData

from .definitions import JobDefinition
from .schedule import Schedule

__all__ = [
    "FireOutcome",
    "JobRow",
    "bump_revision",
    "enabled_jobs",
    "fire_outcome",
    "get_job",
    "insert_fire",
    "last_run",
    "last_success_at",
    "last_successes",
    "prune_fires",
    "save_outcome",
    "set_enabled",
    "upsert_job",
]

_JOB_COLUMNS = (
    "name, kind, expression, timezone, owner, description, enabled, enabled_set_at, active_since, revision, updated_at"
)
_RUN_COLUMNS = (
    "slot, scheduled_for, fired_at, manual, requested_by_user_id, status, counts, error, started_at, finished_at"
)


@dataclass(frozen=True, slots=True)
class JobRow:
    """A row of ``jobs``."""

    name: str
    kind: Literal["interval", "cron"]
    expression: str
    timezone: str
    owner: str
    description: str
    enabled: bool
    enabled_set_at: datetime | None
    active_since: datetime
    revision: int
    updated_at: datetime

    @property
    def schedule(self) -> Schedule:
        """When its slots fall."""
        return Schedule(self.kind, self.expression, self.timezone)


@dataclass(frozen=True, slots=True)
class FireOutcome:
    """What is recorded of a fire's outcome so far."""

    status: Literal["pending", "done", "failed"]
    finished_at: datetime | None


def _job(row: asyncpg.Record) -> JobRow:
    return JobRow(**dict(row))


def _run(row: asyncpg.Record) -> JobRun:
    values = dict(row)
    values["counts"] = _json(values["counts"])
    return JobRun(**values)


def _json(value: Any) -> Any:
    # JSONB comes back as text on a connection without a JSON codec.
    return json.loads(value) if isinstance(value, str) else value


async def upsert_job(db: asyncpg.Connection, definition: JobDefinition, timezone: str, now: datetime) -> bool:
    """Create the job (enabled) or bring its definition up to date; True when either happened.

    A changed schedule starts afresh (``active_since`` = now), so the new expression never
    fires a slot of the past. ``enabled`` belongs to the admins and is never touched here.
    """
    row = await db.fetchrow(
        "INSERT INTO jobs (name, kind, expression, timezone, owner, description, enabled, active_since, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, true, $7, $7)"
        " ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind, expression = EXCLUDED.expression,"
        " timezone = EXCLUDED.timezone, owner = EXCLUDED.owner, description = EXCLUDED.description,"
        " active_since = CASE WHEN (jobs.kind, jobs.expression, jobs.timezone)"
        "   IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.expression, EXCLUDED.timezone)"
        "   THEN EXCLUDED.active_since ELSE jobs.active_since END,"
        " revision = jobs.revision + 1, updated_at = EXCLUDED.updated_at"
        " WHERE (jobs.kind, jobs.expression, jobs.timezone, jobs.owner, jobs.description)"
        "   IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.expression, EXCLUDED.timezone, EXCLUDED.owner,"
        "   EXCLUDED.description)"
        " RETURNING name",
        definition.name,
        definition.kind,
        definition.expression,
        timezone,
        definition.owner,
        definition.description,
        now,
    )
    return row is not None


async def enabled_jobs(db: asyncpg.Connection) -> list[JobRow]:
    """Every enabled job."""
    return [_job(row) for row in await db.fetch(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE enabled ORDER BY name")]


async def get_job(db: asyncpg.Connection, name: str, *, for_update: bool = False) -> JobRow | None:
    """The job called ``name`` (locked for the transaction with ``for_update``)."""
    lock = " FOR UPDATE" if for_update else ""
    row = await db.fetchrow(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE name = $1{lock}", name)
    return _job(row) if row is not None else None


async def bump_revision(db: asyncpg.Connection, name: str, now: datetime) -> None:
    """Mark a change of the job's state (its announcement carries the new revision)."""
    await db.execute("UPDATE jobs SET revision = revision + 1, updated_at = $2 WHERE name = $1", name, now)


async def set_enabled(
    db: asyncpg.Connection, name: str, enabled: bool, set_at: datetime, active_since: datetime, now: datetime
) -> None:
    """Store ``enabled`` as of the command given at ``set_at``."""
    await db.execute(
        "UPDATE jobs SET enabled = $2, enabled_set_at = $3, active_since = $4, updated_at = $5 WHERE name = $1",
        name,
        enabled,
        set_at,
        active_since,
        now,
    )


async def insert_fire(db: asyncpg.Connection, tick: SchedulerTickData) -> bool:
    """Record the tick's slot as fired; False when it already was (by this or another replica)."""
    row = await db.fetchrow(
        "INSERT INTO fires (job, slot, scheduled_for, fired_at, manual, requested_by_user_id, params)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) ON CONFLICT (job, slot) DO NOTHING RETURNING id",
        tick.job,
        tick.slot,
        tick.scheduled_for,
        tick.fired_at,
        tick.manual,
        tick.requested_by_user_id,
        json.dumps(tick.params),
    )
    return row is not None


async def fire_outcome(db: asyncpg.Connection, job: str, slot: str) -> FireOutcome | None:
    """The outcome recorded for a fire so far, locked for the transaction; None: no such fire."""
    row = await db.fetchrow("SELECT status, finished_at FROM fires WHERE job = $1 AND slot = $2 FOR UPDATE", job, slot)
    return FireOutcome(row["status"], row["finished_at"]) if row is not None else None


async def save_outcome(
    db: asyncpg.Connection,
    job: str,
    slot: str,
    *,
    status: str,
    counts: dict[str, int],
    error: str | None,
    started_at: datetime,
    finished_at: datetime,
) -> None:
    """Store an outcome on its fire."""
    await db.execute(
        "UPDATE fires SET status = $3, counts = $4::jsonb, error = $5, started_at = $6, finished_at = $7"
        " WHERE job = $1 AND slot = $2",
        job,
        slot,
        status,
        json.dumps(counts),
        error,
        started_at,
        finished_at,
    )


async def last_run(db: asyncpg.Connection, job: str, *, finished: bool = False) -> JobRun | None:
    """The job's newest fire (``finished``: the newest whose outcome is known)."""
    known = " AND status <> 'pending'" if finished else ""
    row = await db.fetchrow(
        f"SELECT {_RUN_COLUMNS} FROM fires WHERE job = $1{known} ORDER BY fired_at DESC, id DESC LIMIT 1", job
    )
    return _run(row) if row is not None else None


async def last_success_at(db: asyncpg.Connection, job: str) -> datetime | None:
    """When the job's newest successful run finished."""
    value: datetime | None = await db.fetchval(
        "SELECT max(finished_at) FROM fires WHERE job = $1 AND status = 'done'", job
    )
    return value


async def last_successes(db: asyncpg.Connection) -> dict[str, datetime]:
    """When each job's newest successful run finished."""
    rows = await db.fetch("SELECT job, max(finished_at) AS at FROM fires WHERE status = 'done' GROUP BY job")
    return {row["job"]: row["at"] for row in rows}


async def prune_fires(db: asyncpg.Connection, before: datetime, batch: int) -> int:
    """Delete up to ``batch`` fires older than ``before``, except each job's newest fire and
    newest outcome (what ``scheduler.job.updated`` shows), oldest first; returns how many."""
    status = await db.execute(
        "WITH keep AS ("
        " SELECT newest.id FROM jobs CROSS JOIN LATERAL ("
        "  (SELECT id FROM fires WHERE job = jobs.name ORDER BY fired_at DESC, id DESC LIMIT 1)"
        "  UNION ALL"
        "  (SELECT id FROM fires WHERE job = jobs.name AND status <> 'pending'"
        "   ORDER BY fired_at DESC, id DESC LIMIT 1)) AS newest)"
        " DELETE FROM fires WHERE id IN ("
        " SELECT id FROM fires WHERE fired_at < $1 AND id NOT IN (SELECT id FROM keep) ORDER BY fired_at LIMIT $2)",
        before,
        batch,
    )
    return int(status.rsplit(" ", 1)[-1])
