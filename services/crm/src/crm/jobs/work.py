"""crm's work on the scheduler's ticks: the SLA check, due tasks and the daily digest.

The scheduler keeps time; crm owns the deals and tasks, so it does the work and reports
each tick's outcome as ``crm.job.finished`` (staged with the work's last batch, its id
derived from the tick's, so a redelivered tick repeats nothing). Each job works in
batches, one transaction each, until nothing is left; every batch is idempotent on its
own (rows remember what was announced), so a crash midway loses nothing and doubles
nothing. A failure is reported as ``failed`` and raised, so the bus tries the tick again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from crm.backfill import BackfillRange, MetaBackfill
from crm.channels.health import ChannelHealth
from crm.config import CrmSettings
from crm.settings.service import get_setting
from crm.sla import BusinessHours, sweep_sla
from crm.stats.digest import stage_daily_digests
from crm.tasks import announce_due_tasks
from jggl_common.contracts import (
    JobFinished,
    JobFinishedData,
    SchedulerTick,
    job_finished_subject,
    stable_event_id,
    utcnow,
)
from jggl_common.logs import get_logger
from jggl_common.outbox import Outbox, stage

__all__ = ["BATCH", "DEFAULTS", "MAX_BATCHES", "ScheduledWork"]

log = get_logger(__name__)

PRODUCER = "crm"
BATCH = 500
DEFAULT_JOB_SECONDS = 300.0
JOB_SECONDS = {"sla_check": 120.0, "tasks_due": 120.0, "daily_digest": 300.0, "channel_health": 600.0}
MAX_BATCHES = 200
"""Batches of :data:`BATCH` rows one tick works through at most; the next tick takes the rest."""
DEFAULTS = {"sla.minutes": "30", "business.hours": "09:00-18:00", "business.timezone": "UTC"}
"""What the SLA and the business day are while neither the admins nor the environment say."""

Counts = dict[str, int]


class ScheduledWork:
    """Runs crm's jobs for the ticks the scheduler publishes; one per process."""

    def __init__(self, outbox: Outbox, settings: CrmSettings, *, backfill: MetaBackfill | None = None) -> None:
        self._outbox = outbox
        self._settings = settings
        self._backfill = backfill
        self._jobs: dict[str, Callable[[SchedulerTick], Awaitable[Counts]]] = {
            "sla_check": self._sla_check,
            "tasks_due": self._tasks_due,
            "daily_digest": self._daily_digest,
            "channel_health": self._channel_health,
        }
        if backfill is not None:  # it needs the Graph API client and the bus of a full crm process
            self._jobs["meta_sync"] = self._meta_sync

    @property
    def jobs(self) -> frozenset[str]:
        """The jobs crm does."""
        return frozenset(self._jobs)

    @property
    def budgets(self) -> dict[str, float]:
        """Each job's time budget in seconds: a run stops taking new work past it (the
        next tick goes on), and the tick's acknowledgement waits that long."""
        budgets = {job: JOB_SECONDS.get(job, DEFAULT_JOB_SECONDS) for job in self._jobs}
        if "meta_sync" in budgets:
            budgets["meta_sync"] = float(self._settings.meta_sync_max_seconds)
        return budgets

    async def handle(self, tick: SchedulerTick) -> bool:
        """Do the tick's job and report it; False for a job that is not crm's."""
        job = self._jobs.get(tick.data.job)
        if job is None:
            return False
        started = utcnow()
        try:
            counts = await job(tick)
        except Exception as exc:
            await self._report(tick, started, "failed", {}, f"{type(exc).__name__}: {exc}")
            raise
        await self._report(tick, started, "done", counts, None)
        log.info("job done", job=tick.data.job, slot=tick.data.slot, **counts)
        return True

    async def _report(
        self, tick: SchedulerTick, started: datetime, status: str, counts: Counts, error: str | None
    ) -> None:
        event = JobFinished(
            id=stable_event_id(f"crm.job.finished:{tick.id}:{status}"),
            producer=PRODUCER,
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
            await stage(session, event, job_finished_subject(PRODUCER))

    async def _setting(self, session: AsyncSession, key: str) -> str:
        state = await get_setting(session, self._settings, key)
        return state.value if state.value is not None else DEFAULTS[key]

    async def _business_hours(self, session: AsyncSession) -> BusinessHours:
        hours = await self._setting(session, "business.hours")
        zone = await self._setting(session, "business.timezone")
        return BusinessHours.from_settings(hours, zone)

    async def _sla_check(self, tick: SchedulerTick) -> Counts:
        counts = {"breaches": 0, "escalations": 0}
        for _ in range(MAX_BATCHES):
            async with self._outbox.transaction() as session:
                hours = await self._business_hours(session)
                minutes = int(await self._setting(session, "sla.minutes"))
                result = await sweep_sla(session, hours, minutes, utcnow(), limit=BATCH, correlation_id=tick.id)
            counts["breaches"] += result.breaches
            counts["escalations"] += result.escalations
            if not result.more:
                break
        return counts

    async def _tasks_due(self, tick: SchedulerTick) -> Counts:
        announced = 0
        for _ in range(MAX_BATCHES):
            async with self._outbox.transaction() as session:
                batch = await announce_due_tasks(session, utcnow(), limit=BATCH, correlation_id=tick.id)
            announced += batch
            if batch < BATCH:
                break
        return {"tasks": announced}

    async def _daily_digest(self, tick: SchedulerTick) -> Counts:
        async with self._outbox.transaction() as session:
            zone = (await self._business_hours(session)).zone
            day = tick.data.scheduled_for.astimezone(zone).date()
            users = await stage_daily_digests(session, day, zone, correlation_id=tick.id)
        return {"digests": users}

    async def _channel_health(self, tick: SchedulerTick) -> Counts:
        async with self._outbox.transaction() as session:
            hours = await self._business_hours(session)
        found = await ChannelHealth(self._outbox, self._settings).run(hours, correlation_id=tick.id)
        return found.as_counts()

    async def _meta_sync(self, tick: SchedulerTick) -> Counts:
        assert self._backfill is not None
        # An admin's run may name a time range; the schedule's runs start at each channel's cursor.
        window = BackfillRange.model_validate(tick.data.params)
        counts = await self._backfill.run(
            since=window.since,
            until=window.until,
            max_seconds=self._settings.meta_sync_max_seconds,
            correlation_id=tick.id,
        )
        return counts.as_dict()
