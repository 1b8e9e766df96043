"""The scheduler's jobs in crm: the admins' view kept from ``scheduler.job.updated``, and
their commands (run now, switch on or off) sent to the scheduler through the outbox."""

from __future__ import annotations

from pydantic import JsonValue
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from crm.audit.service import record_change
from crm.models import ScheduledJob, User
from crm.web.errors import NotFound
from jggl_common.contracts import (
    JobUpdated,
    JobUpdatedData,
    RunJobCommand,
    RunJobCommandData,
    SetJobEnabledCommand,
    SetJobEnabledCommandData,
    utcnow,
)
from jggl_common.outbox import stage

__all__ = ["ACTION_RUN", "ACTION_SWITCH", "get_job", "keep", "list_jobs", "run_job", "switch_job"]

PRODUCER = "crm"
ACTION_RUN = "job.run"
ACTION_SWITCH = "job.enabled"


async def keep(session: AsyncSession, event: JobUpdated) -> bool:
    """Store the announced job unless a higher revision is stored already; whether it was."""
    data = event.data
    statement = insert(ScheduledJob).values(
        name=data.name, revision=data.revision, state=data.model_dump(mode="json"), received_at=utcnow()
    )
    upsert = statement.on_conflict_do_update(
        index_elements=[col(ScheduledJob.name)],
        set_={"revision": statement.excluded.revision, "state": statement.excluded.state, "received_at": utcnow()},
        where=col(ScheduledJob.revision) < statement.excluded.revision,
    ).returning(col(ScheduledJob.name))
    return (await session.execute(upsert)).first() is not None


async def list_jobs(session: AsyncSession) -> list[JobUpdatedData]:
    """Every job the scheduler announced, by name."""
    rows = await session.execute(select(col(ScheduledJob.state)).order_by(col(ScheduledJob.name)))
    return [JobUpdatedData.model_validate(state) for state in rows.scalars()]


async def get_job(session: AsyncSession, name: str) -> JobUpdatedData:
    """One job; :class:`NotFound` when the scheduler never announced it."""
    state = (
        await session.execute(select(col(ScheduledJob.state)).where(col(ScheduledJob.name) == name))
    ).scalar_one_or_none()
    if state is None:
        raise NotFound(f"There is no job '{name}'")
    return JobUpdatedData.model_validate(state)


async def run_job(
    session: AsyncSession,
    admin: User,
    name: str,
    *,
    params: dict[str, JsonValue] | None = None,
    client_address: str | None,
) -> str:
    """Ask the scheduler to run ``name`` now with ``params`` (audited); the command's id."""
    await get_job(session, name)
    command = RunJobCommand(
        producer=PRODUCER, data=RunJobCommandData(job=name, requested_by_user_id=admin.id, params=params or {})
    )
    await stage(session, command)
    await record_change(
        session,
        admin,
        action=ACTION_RUN,
        key=name,
        old=None,
        new=None,
        secret=False,
        client_address=client_address,
        details={"command_id": command.id, "params": params or {}},
    )
    return command.id


async def switch_job(
    session: AsyncSession, admin: User, name: str, enabled: bool, *, client_address: str | None
) -> str:
    """Ask the scheduler to switch ``name``'s schedule on or off (audited); the command's id."""
    job = await get_job(session, name)
    command = SetJobEnabledCommand(
        producer=PRODUCER, data=SetJobEnabledCommandData(job=name, enabled=enabled, requested_by_user_id=admin.id)
    )
    await stage(session, command)
    await record_change(
        session,
        admin,
        action=ACTION_SWITCH,
        key=name,
        old=str(job.enabled).lower(),
        new=str(enabled).lower(),
        secret=False,
        client_address=client_address,
        details={"command_id": command.id},
    )
    return command.id
