"""Queries over stages and the pipeline figures."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from crm.deals.access import visible_deal_scopes
from crm.models import Deal, DealTotal, Stage, User


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
        """Count and summed amount of the visible deals, per status and stage id.

        Everyone's (an admin's) are the totals the triggers keep in ``deal_totals``: a few
        rows, whatever the number of deals. A manager's deals are ranges of the covering
        index ``ix_deals_visibility`` (their own, the unassigned ones), each totalled on
        its own in index order from the index alone.
        """
        scopes = visible_deal_scopes(user)
        columns = (col(Deal.status), col(Deal.stage_id))
        totals = (sa.func.count().label("deals"), sa.func.coalesce(sa.func.sum(col(Deal.amount)), 0).label("amount"))
        if scopes is None:
            kept = (col(DealTotal.status), col(DealTotal.stage_id))
            query = (
                select(*kept, sa.func.sum(col(DealTotal.deals)), sa.func.sum(col(DealTotal.amount)))
                .group_by(*kept)
                .having(sa.func.sum(col(DealTotal.deals)) != 0)
            )
        else:
            parts = sa.union_all(*(select(*columns, *totals).where(scope).group_by(*columns) for scope in scopes))
            part = parts.subquery("scoped")
            query = select(
                part.c.status, part.c.stage_id, sa.func.sum(part.c.deals), sa.func.sum(part.c.amount)
            ).group_by(part.c.status, part.c.stage_id)
        return {
            (row[0], row[1]): (int(row[2]), Decimal(row[3] or 0)) for row in (await self.session.execute(query)).all()
        }
