"""Database access of channels. Functions take the caller's session and never commit."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from crm.models import Channel

__all__ = ["active_channel_ids", "all_channels", "get_channel", "problem_counts"]


async def all_channels(session: AsyncSession) -> list[Channel]:
    """Every channel, active or not, oldest first."""
    return list((await session.execute(select(Channel).order_by(col(Channel.id)))).scalars().all())


async def active_channel_ids(session: AsyncSession) -> list[int]:
    """The ids of the channels the health check looks at."""
    query = select(col(Channel.id)).where(col(Channel.is_active).is_(True)).order_by(col(Channel.id))
    return [channel_id for channel_id in (await session.execute(query)).scalars().all() if channel_id is not None]


async def get_channel(session: AsyncSession, channel_id: int, *, for_update: bool = False) -> Channel | None:
    """The channel, freshly read (and row-locked until the transaction ends with ``for_update``)."""
    query = select(Channel).where(col(Channel.id) == channel_id).execution_options(populate_existing=True)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).scalars().first()


async def problem_counts(session: AsyncSession) -> dict[str, int]:
    """How many active channels have each problem code."""
    problem = sa.func.jsonb_array_elements(col(Channel.health_problems)).table_valued("value").alias("problem")
    code: Any = problem.c.value.op("->>")("code")
    query = (
        select(code, sa.func.count())
        .select_from(Channel)
        .join(problem, sa.true())
        .where(col(Channel.is_active).is_(True))
        .group_by(code)
    )
    return {str(row[0]): int(row[1]) for row in (await session.execute(query)).all()}
