"""The statistics queries. Percentiles are PostgreSQL's ``percentile_cont`` (interpolated),
so a median of 60 and 120 seconds is 90."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Select, select, union
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from crm.deals.access import visible_deals
from crm.models import Activity, Deal, Message, Stage, User

Author = tuple[int | None, str | None]
"""Who replied: a user id, or (for replies typed outside the CRM) a label such as 'Meta inbox'."""


@dataclass(frozen=True)
class ReplyFigures:
    """How many replies an author sent and how fast."""

    replies: int
    median_seconds: float | None
    p90_seconds: float | None


@dataclass(frozen=True)
class FirstResponseFigures:
    """How many deals an author answered first, and the median wait of those customers."""

    deals: int
    median_seconds: float | None


def _percentile(fraction: float, column: Any) -> ColumnElement[Any]:
    return sa.func.percentile_cont(fraction).within_group(sa.cast(column, sa.Float))


def _label_key(user_id: Any, label: Any) -> ColumnElement[Any]:
    # A reply by a CRM user is theirs whatever its label; a label names only replies without one.
    return sa.case((user_id.is_(None), label), else_=sa.null())


def _reply(alias: Any = Message) -> ColumnElement[bool]:
    return sa.and_(
        col(alias.direction) == "out",
        col(alias.status) != "failed",
        sa.or_(col(alias.author_user_id).is_not(None), col(alias.author_label).is_not(None)),
    )


class StatsRepository:
    """Figures over a time range ``[start, end)``."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def replies(self, start: datetime, end: datetime, only_user: int | None) -> dict[Author, ReplyFigures]:
        """Replies sent in the range, by author, with median and p90 response time."""
        label = _label_key(col(Message.author_user_id), col(Message.author_label))
        query = (
            select(
                col(Message.author_user_id),
                label,
                sa.func.count(),
                _percentile(0.5, col(Message.response_seconds)),
                _percentile(0.9, col(Message.response_seconds)),
            )
            .where(_reply(), col(Message.sent_at) >= start, col(Message.sent_at) < end)
            .group_by(col(Message.author_user_id), label)
        )
        if only_user is not None:
            query = query.where(col(Message.author_user_id) == only_user)
        rows = (await self.session.execute(query)).all()
        return {(row[0], row[1]): ReplyFigures(int(row[2]), row[3], row[4]) for row in rows}

    async def first_responses(
        self, start: datetime, end: datetime, only_user: int | None
    ) -> dict[Author, FirstResponseFigures]:
        """Deals first answered in the range, by the author of that first reply."""
        first_reply = (
            select(col(Message.author_user_id).label("user_id"), col(Message.author_label).label("label"))
            .where(
                col(Message.deal_id) == col(Deal.id),
                col(Message.sent_at) == col(Deal.first_response_at),
                _reply(),
            )
            .order_by(col(Message.id))
            .limit(1)
            .lateral("first_reply")
        )
        label = _label_key(first_reply.c.user_id, first_reply.c.label)
        query = (
            select(
                first_reply.c.user_id,
                label,
                sa.func.count(),
                _percentile(0.5, col(Deal.first_response_seconds)),
            )
            .select_from(Deal)
            .join(first_reply, sa.true())
            .where(
                col(Deal.first_response_at) >= start,
                col(Deal.first_response_at) < end,
                col(Deal.first_response_seconds).is_not(None),
            )
            .group_by(first_reply.c.user_id, label)
        )
        if only_user is not None:
            query = query.where(first_reply.c.user_id == only_user)
        rows = (await self.session.execute(query)).all()
        return {(row[0], row[1]): FirstResponseFigures(int(row[2]), row[3]) for row in rows}

    async def closed(self, start: datetime, end: datetime, only_user: int | None) -> dict[int, tuple[int, int]]:
        """Deals won and lost in the range, by assignee."""
        status = col(Deal.status)
        query = (
            select(
                col(Deal.assignee_id),
                sa.func.count().filter(status == "won"),
                sa.func.count().filter(status == "lost"),
            )
            .where(
                col(Deal.closed_at) >= start,
                col(Deal.closed_at) < end,
                status.in_(("won", "lost")),
                col(Deal.assignee_id).is_not(None),
            )
            .group_by(col(Deal.assignee_id))
        )
        if only_user is not None:
            query = query.where(col(Deal.assignee_id) == only_user)
        rows = (await self.session.execute(query)).all()
        return {int(row[0] or 0): (int(row[1]), int(row[2])) for row in rows}

    async def ai_scores(self, start: datetime, end: datetime, only_user: int | None) -> dict[int, tuple[int, float]]:
        """By assignee: how many of their deals the AI analysed in the range and scored, and
        the average score (each deal counts with its latest analysis)."""
        analyzed = col(Deal.ai_analyzed_at)
        query = (
            select(col(Deal.assignee_id), sa.func.count(), sa.func.avg(col(Deal.ai_score)))
            .where(
                col(Deal.ai_score).is_not(None),
                analyzed >= start,
                analyzed < end,
                col(Deal.assignee_id).is_not(None),
            )
            .group_by(col(Deal.assignee_id))
        )
        if only_user is not None:
            query = query.where(col(Deal.assignee_id) == only_user)
        rows = (await self.session.execute(query)).all()
        return {int(row[0]): (int(row[1]), round(float(row[2]), 2)) for row in rows}

    async def open_deals(self, only_user: int | None) -> dict[int, int]:
        """Deals open right now, by assignee."""
        query = (
            select(col(Deal.assignee_id), sa.func.count())
            .where(col(Deal.status) == "open", col(Deal.assignee_id).is_not(None))
            .group_by(col(Deal.assignee_id))
        )
        if only_user is not None:
            query = query.where(col(Deal.assignee_id) == only_user)
        return {int(row[0] or 0): int(row[1]) for row in (await self.session.execute(query)).all()}

    async def users(self) -> list[User]:
        """Everyone who could appear in the figures."""
        return list((await self.session.execute(select(User).order_by(col(User.name), col(User.id)))).scalars())

    async def stages(self) -> list[Stage]:
        """Every stage in pipeline order."""
        query = select(Stage).order_by(col(Stage.position), col(Stage.id))
        return list((await self.session.execute(query)).scalars())

    async def furthest_stages(self, user: User, start: datetime, end: datetime) -> dict[int, int]:
        """For the deals created in the range that ``user`` may see: how many got furthest to each stage.

        A deal has been in its current stage and in every stage its timeline moved it from
        or to; the furthest is the one latest in the pipeline order.
        """
        cohort = sa.and_(col(Deal.created_at) >= start, col(Deal.created_at) < end, visible_deals(user))
        current: Select[Any, Any] = select(col(Deal.id).label("deal_id"), col(Deal.stage_id).label("stage_id")).where(
            cohort
        )
        data = col(Activity.data)
        moved: Select[Any, Any] = (
            select(col(Activity.deal_id).label("deal_id"), col(Stage.id).label("stage_id"))
            .join(Deal, col(Deal.id) == col(Activity.deal_id))
            .join(Stage, col(Stage.key).in_([data["from"].astext, data["to"].astext]))
            .where(col(Activity.kind) == "stage_changed", cohort)
        )
        visited = union(current, moved).subquery("visited")
        furthest = (
            select(visited.c.deal_id, col(Stage.id).label("stage_id"))
            .join(Stage, col(Stage.id) == visited.c.stage_id)
            .distinct(visited.c.deal_id)
            .order_by(visited.c.deal_id, col(Stage.position).desc(), col(Stage.id).desc())
            .subquery("furthest")
        )
        query = select(furthest.c.stage_id, sa.func.count()).group_by(furthest.c.stage_id)
        return {int(row[0]): int(row[1]) for row in (await self.session.execute(query)).all()}

    async def cohort_by_stage(self, user: User, start: datetime, end: datetime) -> dict[tuple[int, str], int]:
        """Deals created in the range that ``user`` may see, by current stage and status."""
        query = (
            select(col(Deal.stage_id), col(Deal.status), sa.func.count())
            .where(col(Deal.created_at) >= start, col(Deal.created_at) < end, visible_deals(user))
            .group_by(col(Deal.stage_id), col(Deal.status))
        )
        return {(int(row[0]), str(row[1])): int(row[2]) for row in (await self.session.execute(query)).all()}
