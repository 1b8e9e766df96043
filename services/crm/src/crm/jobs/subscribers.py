"""The durable consumers of the scheduler's stream: ticks of the jobs crm does, and the
jobs' announced state for ``/api/jobs``.

Payloads are validated here, so a malformed one goes to the DLQ at once
(:class:`PermanentFailure`). Ticks of jobs other services own are acknowledged and skipped.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jggl_common.bus import PermanentFailure, RetryPolicy, ServiceBus
from jggl_common.contracts import JobUpdated, SchedulerTick
from jggl_common.db import session_scope
from jggl_common.streams import SCHEDULER

from . import service
from .work import ScheduledWork

__all__ = ["JOBS_DURABLE", "TICKS_DURABLE", "register"]

TICKS_DURABLE = "crm-scheduler-ticks"
JOBS_DURABLE = "crm-scheduler-jobs"

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
    """Register both consumers on ``bus`` (start the bus afterwards)."""

    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=durable_prefix + TICKS_DURABLE, stream=SCHEDULER, subject="scheduler.tick.>", policy=policy
    )
    async def on_tick(body: Any) -> None:
        await work.handle(_parse(SchedulerTick, body))

    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=durable_prefix + JOBS_DURABLE, stream=SCHEDULER, subject=JobUpdated.subject, policy=policy
    )
    async def on_job_updated(body: Any) -> None:
        event = _parse(JobUpdated, body)
        async with session_scope(sessions) as session:
            await service.keep(session, event)
