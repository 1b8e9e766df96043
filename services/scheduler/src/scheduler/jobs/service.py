"""The scheduler's work: fire due slots, run jobs on demand, switch them on and off, and
record what their owners report.

Every change is one unit of work through the outbox: the fire row and its tick (or the
outcome, or the new enabled flag) and the job's new state (``scheduler.job.updated``)
commit together and are published after the commit. Replicas need no leader: each one
tries to insert a due slot's fire, the unique key (job, slot) lets exactly one succeed,
and only that one stages the tick, whose id ``<job>:<slot>`` is also its ``Nats-Msg-Id``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Literal

import asyncpg
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.ext.asyncio import AsyncSession

from jggl_common.bus import PermanentFailure
from jggl_common.contracts import (
    SLOT_PATTERN,
    JobFinished,
    JobUpdated,
    JobUpdatedData,
    RunJobCommand,
    SchedulerTick,
    SchedulerTickData,
    SetJobEnabledCommand,
    stable_event_id,
    tick_id,
    tick_subject,
    utcnow,
)
from jggl_common.db import driver_connection
from jggl_common.logs import get_logger
from jggl_common.outbox import Outbox, stage

from . import repository
from .definitions import JobDefinition
from .repository import FireOutcome, JobRow
from .schedule import slot_name

__all__ = ["Scheduler", "command_applies", "manual_slot", "outcome_supersedes"]

log = get_logger(__name__)

TICKS = Counter("jggl_scheduler_ticks_total", "Ticks fired (one per slot, whichever replica)", ["job", "trigger"])
TICK_LAG = Histogram(
    "jggl_scheduler_tick_lag_seconds",
    "Time from a slot's scheduled moment to its fire (scheduled ticks)",
    ["job"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 15, 60, 300, 3600, 6 * 3600, 24 * 3600),
)
OUTCOMES = Counter("jggl_scheduler_job_outcomes_total", "Outcomes recorded on fires", ["job", "status"])
DURATION = Histogram(
    "jggl_scheduler_job_duration_seconds",
    "How long the owner took to run a job, from start to finish",
    ["job"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
LAST_SUCCESS = Gauge(
    "jggl_scheduler_job_last_success_timestamp_seconds",
    "When the job's newest successful run finished, as Unix time (the max over replicas)",
    ["job"],
)

_STATUS_RANK = {"pending": 0, "failed": 1, "done": 2}
_PRUNE_EVERY = 3600.0


def outcome_supersedes(current: FireOutcome, status: Literal["done", "failed"], finished_at: datetime) -> bool:
    """Whether a reported outcome replaces what a fire holds: ``done`` beats ``failed``
    beats nothing yet, and of two equal ones the later wins. A repeat changes nothing, and
    any delivery order ends in the same state."""
    new, held = _STATUS_RANK[status], _STATUS_RANK[current.status]
    if new != held:
        return new > held
    return current.finished_at is None or finished_at > current.finished_at


def command_applies(enabled_set_at: datetime | None, given_at: datetime) -> bool:
    """Whether an enable/disable command given at ``given_at`` is newer than the one in force."""
    return enabled_set_at is None or given_at > enabled_set_at


def manual_slot(command_id: str) -> str:
    """``manual-<command id>``; an id that is not a slot-safe token is replaced by its uuid5."""
    slot = f"manual-{command_id}"
    if len(slot) <= 50 and re.match(SLOT_PATTERN, slot):
        return slot
    return f"manual-{stable_event_id(command_id)}"


class Scheduler:
    """Keeps the jobs' time for one replica; any number run side by side."""

    def __init__(
        self,
        outbox: Outbox,
        definitions: Sequence[JobDefinition],
        business_timezone: Callable[[], str],
        *,
        clock: Callable[[], datetime] = utcnow,
        history: timedelta = timedelta(days=90),
    ) -> None:
        self._outbox = outbox
        self._definitions = list(definitions)
        self._business_timezone = business_timezone
        self._clock = clock
        self._history = history
        self._seeded_zone: str | None = None
        self._handled: dict[str, str] = {}  # the slot each job last fired or saw fired: no row to try again
        self._pruned_at = float("-inf")

    @property
    def jobs(self) -> set[str]:
        """The names of the jobs this scheduler keeps."""
        return {definition.name for definition in self._definitions}

    @property
    def owners(self) -> set[str]:
        """The services that handle this scheduler's ticks."""
        return {definition.owner for definition in self._definitions}

    async def seed(self) -> list[str]:
        """Write the definitions (in the business time zone as it is now); returns the jobs
        created or changed, whose new state is announced."""
        zone = self._business_timezone()
        now = self._clock()
        changed: list[str] = []
        async with self._outbox.transaction() as session:
            db = await driver_connection(session)
            for definition in self._definitions:
                if await repository.upsert_job(db, definition, definition.timezone or zone, now):
                    changed.append(definition.name)
                    await self._announce(session, db, definition.name, now)
            successes = await repository.last_successes(db)
        self._seeded_zone = zone
        for job, at in successes.items():
            LAST_SUCCESS.labels(job).set(at.timestamp())
        if changed:
            log.info("jobs written", jobs=changed, business_timezone=zone)
        return changed

    async def fire_due(self) -> int:
        """Fire the latest due slot of every enabled job unless it was fired; returns how many
        this replica fired. After an outage only the latest missed slot is due: it fires once."""
        if self._business_timezone() != self._seeded_zone:
            await self.seed()
        now = self._clock()
        async with self._outbox.transaction() as session:
            jobs = await repository.enabled_jobs(await driver_connection(session))
        fired = 0
        for job in jobs:
            due = job.schedule.latest_due(now)
            slot = slot_name(due)
            if due < job.active_since or self._handled.get(job.name) == slot:
                continue
            if await self._fire(job, slot, due, now):
                fired += 1
            self._handled[job.name] = slot
        return fired

    async def _fire(self, job: JobRow, slot: str, due: datetime, now: datetime) -> bool:
        if not await self._fire_slot(SchedulerTickData(job=job.name, slot=slot, scheduled_for=due, fired_at=now)):
            return False
        TICK_LAG.labels(job.name).observe(max((now - due).total_seconds(), 0.0))
        log.info("tick fired", job=job.name, slot=slot, late_seconds=round((now - due).total_seconds(), 3))
        return True

    async def run_now(self, command: RunJobCommand) -> bool:
        """Fire a manual slot for the command (once, however often it is delivered)."""
        tick = SchedulerTickData(
            job=command.data.job,
            slot=manual_slot(command.id),
            scheduled_for=command.occurred_at,
            fired_at=self._clock(),
            manual=True,
            requested_by_user_id=command.data.requested_by_user_id,
            params=command.data.params,
        )
        if not await self._fire_slot(tick):
            return False
        log.info("manual tick fired", job=tick.job, slot=tick.slot, requested_by_user_id=tick.requested_by_user_id)
        return True

    async def _fire_slot(self, tick: SchedulerTickData) -> bool:
        """Record the slot's fire and stage its tick, unless it was fired already."""
        async with self._outbox.transaction() as session:
            db = await driver_connection(session)
            if await repository.get_job(db, tick.job) is None:
                raise PermanentFailure(f"no job called {tick.job!r}")
            if not await repository.insert_fire(db, tick):
                return False
            event = SchedulerTick(id=tick_id(tick.job, tick.slot), producer="scheduler", data=tick)
            await stage(session, event, tick_subject(tick.job))
            await self._announce(session, db, tick.job, tick.fired_at)
        TICKS.labels(tick.job, "manual" if tick.manual else "schedule").inc()
        return True

    async def set_enabled(self, command: SetJobEnabledCommand) -> bool:
        """Switch a job on or off unless a later command already decided; True when it changed.
        A job switched on fires from now on, not the slots it missed while off."""
        name, enabled = command.data.job, command.data.enabled
        now = self._clock()
        async with self._outbox.transaction() as session:
            db = await driver_connection(session)
            job = await repository.get_job(db, name, for_update=True)
            if job is None:
                raise PermanentFailure(f"set_job_enabled for unknown job {name!r}")
            if not command_applies(job.enabled_set_at, command.occurred_at):
                return False
            changed = job.enabled != enabled
            active_since = now if changed and enabled else job.active_since
            await repository.set_enabled(db, name, enabled, command.occurred_at, active_since, now)
            if changed:
                await self._announce(session, db, name, now)
        if changed:
            log.info("job switched", job=name, enabled=enabled, requested_by_user_id=command.data.requested_by_user_id)
        return changed

    async def record_outcome(self, event: JobFinished, owner: str) -> bool:
        """Record an owner's outcome on its fire; True when it changed what the fire holds."""
        data = event.data
        now = self._clock()
        async with self._outbox.transaction() as session:
            db = await driver_connection(session)
            job = await repository.get_job(db, data.job)
            if job is None or job.owner != owner:
                raise PermanentFailure(f"{owner} reported on {data.job!r}, which is not its job")
            current = await repository.fire_outcome(db, data.job, data.slot)
            if current is None:
                raise PermanentFailure(f"outcome for a slot never fired: {tick_id(data.job, data.slot)}")
            if not outcome_supersedes(current, data.status, data.finished_at):
                return False
            await repository.save_outcome(
                db,
                data.job,
                data.slot,
                status=data.status,
                counts=data.counts,
                error=data.error,
                started_at=data.started_at,
                finished_at=data.finished_at,
            )
            state = await self._announce(session, db, data.job, now)
        OUTCOMES.labels(data.job, data.status).inc()
        DURATION.labels(data.job).observe(max((data.finished_at - data.started_at).total_seconds(), 0.0))
        if state.last_success_at is not None:
            LAST_SUCCESS.labels(data.job).set(state.last_success_at.timestamp())
        log.info("job outcome recorded", job=data.job, slot=data.slot, status=data.status, counts=data.counts)
        return True

    async def prune(self, batch: int = 5000) -> int:
        """Delete fires older than the history kept; returns how many."""
        deleted = 0
        while True:
            async with self._outbox.transaction() as session:
                count = await repository.prune_fires(
                    await driver_connection(session), self._clock() - self._history, batch
                )
            deleted += count
            if count < batch:
                return deleted

    async def run(self, period: float = 1.0) -> None:
        """Forever: fire due slots on every whole ``period`` (replicas wake together and the
        database picks one), and prune the history hourly. Failures are logged and retried."""
        while True:
            try:
                await self.fire_due()
                if time.monotonic() - self._pruned_at >= _PRUNE_EVERY:
                    deleted = await self.prune()
                    self._pruned_at = time.monotonic()
                    if deleted:
                        log.info("old fires deleted", count=deleted)
            except Exception as exc:
                log.error("scheduler pass failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(period - time.time() % period + 0.005)

    async def _announce(
        self, session: AsyncSession, db: asyncpg.Connection, name: str, now: datetime
    ) -> JobUpdatedData:
        """Bump the job's revision and stage its state as ``scheduler.job.updated``."""
        await repository.bump_revision(db, name, now)
        job = await repository.get_job(db, name)
        assert job is not None  # the caller holds it in this transaction
        state = JobUpdatedData(
            name=job.name,
            kind=job.kind,
            expression=job.expression,
            timezone=job.timezone,
            owner=job.owner,
            description=job.description,
            enabled=job.enabled,
            revision=job.revision,
            next_run=job.schedule.next_after(now) if job.enabled else None,
            last_run=await repository.last_run(db, name),
            last_outcome=await repository.last_run(db, name, finished=True),
            last_success_at=await repository.last_success_at(db, name),
            updated_at=job.updated_at,
        )
        await stage(session, JobUpdated(id=f"job-updated:{name}:{job.revision}", producer="scheduler", data=state))
        return state
