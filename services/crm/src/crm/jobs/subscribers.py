"""The durable consumers of the scheduler's stream: ticks of the jobs crm does, and the
jobs' announced state for ``/api/jobs``.

Each job crm does has a consumer of its own (``crm-tick-<job>`` on
``scheduler.tick.<job>``), so a long backfill never holds up the minutely SLA check, and
its acknowledgement deadline is the job's time budget plus a margin, so a run that is
still working is not delivered again. Ticks of jobs other services own never reach crm.
Payloads are validated here, so a malformed one goes to the DLQ at once
(:class:`PermanentFailure`).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jggl_common.bus import PermanentFailure, RetryPolicy, ServiceBus
from jggl_common.contracts import JobUpdated, SchedulerTick, tick_subject
from jggl_common.db import session_scope
from jggl_common.streams import SCHEDULER

from . import service
from .work import ScheduledWork

__all__ = ["JOBS_DURABLE", "register", "tick_durable"]

JOBS_DURABLE = "crm-scheduler-jobs"
ACK_MARGIN_SECONDS = 60.0


def tick_durable(job: str) -> str:
    """The durable consumer of one job's ticks: ``crm-tick-<job>``."""
    return "crm-tick-" + job.replace(".", "-")


_Contract = TypeVar("_Contract", SchedulerTick, JobUpdated)


def _parse(contract: type[_Contract], body: Any) -> _Contract:
    try:
        return contract.model_validate(body)
    except ValidationError as exc:
        raise PermanentFailure(f"malformed {contract.subject}: {exc}") from exc


def register(
    bus: ServiceBus,
    sessions: async_sessionmaker[AsyncSession],
    work: ScheduledWork,
    *,
    durable_prefix: str = "",
    policy: RetryPolicy | None = None,
) -> None:
    """Register a consumer per job of ``work`` and one of the jobs' state on ``bus`` (start
    the bus afterwards)."""
    for job, budget in work.budgets.items():

        async def on_tick(body: Any) -> None:
            await work.handle(_parse(SchedulerTick, body))

        on_tick.__name__ = on_tick.__qualname__ = f"on_{job.replace('.', '_')}_tick"
        bus.consumer(
            durable=durable_prefix + tick_durable(job),
            stream=SCHEDULER,
            subject=tick_subject(job),
            policy=policy,
            ack_wait=budget + ACK_MARGIN_SECONDS,
        )(on_tick)

    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=durable_prefix + JOBS_DURABLE, stream=SCHEDULER, subject=JobUpdated.subject, policy=policy
    )
    async def on_job_updated(body: Any) -> None:
        event = _parse(JobUpdated, body)
        async with session_scope(sessions) as session:
            await service.keep(session, event)
