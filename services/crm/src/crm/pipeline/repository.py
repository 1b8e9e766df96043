"""Queries over stages and the pipeline figures."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from crm.deals.access import is_admin
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

    async def totals(self, user: User) -> dict[tuple[str, int], tuple[int, Decimal]]:
        """Count and summed amount of the visible deals, per status and stage id, in one pass.

        Read from the covering index ``ix_deals_visibility`` alone (no table rows). A
        manager's deals are two ranges of it, their own and the unassigned ones, rather
        than a filter over everyone's.
        """
        columns = (col(Deal.status), col(Deal.stage_id), col(Deal.amount))
        if is_admin(user):
            source = select(*columns).subquery("visible")
        else:
            source = sa.union_all(
                select(*columns).where(col(Deal.assignee_id) == user.id),
                select(*columns).where(col(Deal.assignee_id).is_(None)),
            ).subquery("visible")
        query = select(
            source.c.status, source.c.stage_id, sa.func.count(), sa.func.coalesce(sa.func.sum(source.c.amount), 0)
        ).group_by(source.c.status, source.c.stage_id)
        return {
            (row[0], row[1]): (int(row[2]), Decimal(row[3] or 0)) for row in (await self.session.execute(query)).all()
        }
