"""``/api/jobs``: admins see the scheduler's jobs (schedule, last run and outcome, next run)
and run one now or switch it on or off; the scheduler applies the command."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Request, status
from pydantic import BaseModel, ConfigDict, Field

from crm.auth.dependencies import CurrentAdmin
from crm.backfill import BackfillRange
from crm.web.errors import Unprocessable, error_responses
from crm.web.state import Session, State
from jggl_common.contracts import JOB_NAME_PATTERN, JobUpdatedData

from . import service

router = APIRouter(prefix="/api/jobs", tags=["administration"], responses=error_responses(401, 403))

RANGED_JOB = "meta_sync"
"""The one job an admin runs for a time range (the Meta backfill)."""

Name = Annotated[str, Path(max_length=40, pattern=JOB_NAME_PATTERN, description="the job, e.g. sla_check")]


class JobList(BaseModel):
    """Every job, as the scheduler last announced it."""

    items: list[JobUpdatedData]


class JobCommandAccepted(BaseModel):
    """The command went to the scheduler; the job's state follows in ``GET /api/jobs``."""

    job: str
    command_id: str


class JobSwitch(BaseModel):
    """Switch a job's schedule on or off."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(description="false: no scheduled ticks (run now still works)")


def _address(request: Request) -> str | None:
    return request.client.host if request.client else None


@router.get("", summary="List the scheduler's jobs (admin)")
async def list_jobs(_: CurrentAdmin, session: Session) -> JobList:
    """Each job's schedule, whether it is enabled, its last run, last known outcome, last
    success and next run."""
    return JobList(items=await service.list_jobs(session))


@router.post(
    "/{name}/run",
    summary="Run a job now (admin)",
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(404),
)
async def run_job(
    admin: CurrentAdmin,
    session: Session,
    state: State,
    request: Request,
    name: Name,
    body: Annotated[BackfillRange | None, Body()] = None,
) -> JobCommandAccepted:
    """Ask the scheduler for one run outside the schedule (audited); its outcome shows in
    the job's ``last_run`` once the owner reports it.

    ``meta_sync`` takes an optional time range, ``{"since": ..., "until": ...}`` (at most
    30 days, ``until`` defaulting to now), to recover the messages of that window; other
    jobs take no body.
    """
    params = body.model_dump(mode="json", exclude_none=True) if body is not None else {}
    if params and name != RANGED_JOB:
        raise Unprocessable(f"The job '{name}' takes no parameters; only {RANGED_JOB} takes a time range")
    command_id = await service.run_job(session, admin, name, params=params, client_address=_address(request))
    await session.commit()
    await state.announce(session)
    return JobCommandAccepted(job=name, command_id=command_id)


@router.patch(
    "/{name}",
    summary="Switch a job on or off (admin)",
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(404),
)
async def switch_job(
    admin: CurrentAdmin, session: Session, state: State, request: Request, name: Name, body: JobSwitch
) -> JobCommandAccepted:
    """Enable or disable the job's schedule (audited)."""
    command_id = await service.switch_job(session, admin, name, body.enabled, client_address=_address(request))
    await session.commit()
    await state.announce(session)
    return JobCommandAccepted(job=name, command_id=command_id)
