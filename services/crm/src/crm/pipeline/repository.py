"""Queries over stages and the pipeline figures."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from crm.deals.access import visible_deals
from crm.models import Deal, Stage, User


class StageRepository:
    """Stages and the deals in them."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list_all(self) -> Sequence[Stage]:
        """Every stage in pipeline order."""
        result = await self.session.execute(select(Stage).order_by(col(Stage.position), col(Stage.id)))
        return result.scalars().all()

    async def next_position(self) -> int:
        """The position after the last stage."""
        last = await self.session.scalar(select(sa.func.max(col(Stage.position))))
        return 0 if last is None else int(last) + 1

    async def insert_if_absent(self, *, key: str, name: str, position: int, is_active: bool) -> int | None:
        """A new stage unless the key is taken; its id or None."""
        result = await self.session.execute(
            insert(Stage)
            .values(key=key, name=name, position=position, is_active=is_active)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(col(Stage.id))
        )
        return result.scalar_one_or_none()

    async def open_totals_by_stage(self, user: User) -> dict[int, tuple[int, Decimal]]:
        """Count and summed amount of the visible open deals, per stage id."""
        query = (
            select(col(Deal.stage_id), sa.func.count(), sa.func.coalesce(sa.func.sum(col(Deal.amount)), 0))
            .where(col(Deal.status) == "open", visible_deals(user))
            .group_by(col(Deal.stage_id))
        )
        return {row[0]: (int(row[1]), Decimal(row[2] or 0)) for row in (await self.session.execute(query)).all()}

    async def closed_totals(self, user: User) -> dict[str, tuple[int, Decimal]]:
        """Count and summed amount of the visible won and lost deals."""
        query = (
            select(col(Deal.status), sa.func.count(), sa.func.coalesce(sa.func.sum(col(Deal.amount)), 0))
            .where(col(Deal.status).in_(("won", "lost")), visible_deals(user))
            .group_by(col(Deal.status))
        )
        return {row[0]: (int(row[1]), Decimal(row[2] or 0)) for row in (await self.session.execute(query)).all()}
