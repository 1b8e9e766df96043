"""The pipeline board and stage administration. Never commits."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Stage, User
from crm.web.errors import Conflict, NotFound

from .repository import StageRepository
from .schemas import Pipeline, PipelineStage, StageCreate, StageRead, StageUpdate, Totals

# New leads land here (the inbound consumer creates deals in it), so it must stay usable.
ENTRY_STAGE = "new"


async def pipeline(session: AsyncSession, user: User) -> Pipeline:
    """Active stages (and inactive ones still holding open deals) with their totals."""
    repository = StageRepository(session)
    totals = await repository.totals(user)
    by_stage: dict[int, tuple[int, Decimal]] = {}
    by_status: dict[str, tuple[int, Decimal]] = {}
    for (status, stage_id), (count, amount) in totals.items():
        if status == "open":
            by_stage[stage_id] = (count, amount)
        status_count, status_amount = by_status.get(status, (0, Decimal(0)))
        by_status[status] = (status_count + count, status_amount + amount)
    stages = []
    for stage in await repository.list_all():
        count, amount = by_stage.get(stage.id or 0, (0, Decimal(0)))
        if stage.is_active or count:
            stages.append(PipelineStage(**StageRead.model_validate(stage).model_dump(), count=count, amount=amount))

    def summed(status: str) -> Totals:
        count, amount = by_status.get(status, (0, Decimal(0)))
        return Totals(count=count, amount=amount)

    return Pipeline(stages=stages, open=summed("open"), won=summed("won"), lost=summed("lost"))


async def list_stages(session: AsyncSession) -> Sequence[Stage]:
    """Every stage in order, inactive ones included."""
    return await StageRepository(session).list_all()


async def create_stage(session: AsyncSession, data: StageCreate) -> Stage:
    """A new stage; :class:`Conflict` when the key is taken."""
    repository = StageRepository(session)
    position = data.position if data.position is not None else await repository.next_position()
    stage_id = await repository.insert_if_absent(
        key=data.key, name=data.name, position=position, is_active=data.is_active
    )
    if stage_id is None:
        raise Conflict(f"A stage with key '{data.key}' already exists")
    stage = await session.get(Stage, stage_id)
    assert stage is not None
    return stage


async def update_stage(session: AsyncSession, stage_id: int, data: StageUpdate) -> Stage:
    """Rename, reorder or (de)activate a stage. Deals keep their stage when it is deactivated."""
    stage = await session.get(Stage, stage_id, with_for_update=True)
    if stage is None:
        raise NotFound("Stage not found")
    if data.is_active is False and stage.key == ENTRY_STAGE:
        raise Conflict(f"The '{ENTRY_STAGE}' stage receives every new lead and cannot be deactivated")
    if data.name is not None:
        stage.name = data.name
    if data.position is not None:
        stage.position = data.position
    if data.is_active is not None:
        stage.is_active = data.is_active
    await session.flush()
    return stage
