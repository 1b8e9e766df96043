"""``/api/pipeline`` (everyone) and ``/api/stages`` (admins)."""

from __future__ import annotations

from fastapi import APIRouter, status

from crm.auth.dependencies import CurrentAdmin, CurrentUser
from crm.web.errors import error_responses
from crm.web.state import Session
from crm.web.types import StageId

from . import service
from .schemas import Pipeline, StageCreate, StageList, StageRead, StageUpdate

router = APIRouter(tags=["pipeline"], responses=error_responses(401))


@router.get("/api/pipeline", summary="The pipeline board")
async def get_pipeline(user: CurrentUser, session: Session) -> Pipeline:
    """Stages in order with the count and summed amount of their open deals, plus won and lost totals.

    Figures cover the deals you may see (managers: yours and unassigned ones).
    """
    return await service.pipeline(session, user)


@router.get("/api/stages", summary="List stages (admin)", responses=error_responses(403))
async def list_stages(_: CurrentAdmin, session: Session) -> StageList:
    """Every stage in order, inactive ones included."""
    return StageList(items=[StageRead.model_validate(stage) for stage in await service.list_stages(session)])


@router.post(
    "/api/stages",
    status_code=status.HTTP_201_CREATED,
    summary="Create a stage (admin)",
    responses=error_responses(403, 409),
)
async def create_stage(_: CurrentAdmin, session: Session, data: StageCreate) -> StageRead:
    """A new stage, placed after the last one unless a position is given; 409 for a taken key."""
    stage = await service.create_stage(session, data)
    await session.commit()
    return StageRead.model_validate(stage)


@router.patch("/api/stages/{stage_id}", summary="Change a stage (admin)", responses=error_responses(403, 404, 409))
async def update_stage(_: CurrentAdmin, session: Session, stage_id: StageId, data: StageUpdate) -> StageRead:
    """Rename, reorder or (de)activate a stage; its key never changes."""
    stage = await service.update_stage(session, stage_id, data)
    await session.commit()
    return StageRead.model_validate(stage)
