"""Team statistics. Admins see everyone; a manager sees their own figures only (and the
funnel of the deals they may see)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from crm.deals.access import is_admin
from crm.models import User
from crm.web.errors import Unprocessable
from jggl_common.contracts import utcnow

from .repository import Author, FirstResponseFigures, ReplyFigures, StatsRepository
from .schemas import FunnelReport, FunnelStage, ManagerStats, ManagerStatsReport

DEFAULT_RANGE = timedelta(days=30)
MAX_RANGE = timedelta(days=366)
"""The longest range figures are computed over: a year of replies, whatever is asked."""


def time_range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """``[start, end)``: up to now, over the last 30 days unless given; at most 366 days."""
    end = end or utcnow()
    start = start or end - DEFAULT_RANGE
    if start >= end:
        raise Unprocessable("'from' must be before 'to'")
    if end - start > MAX_RANGE:
        raise Unprocessable(f"The range from 'from' to 'to' may be at most {MAX_RANGE.days} days")
    return start, end


def _row(
    author: Author,
    name: str,
    role: str | None,
    replies: ReplyFigures | None,
    first: FirstResponseFigures | None,
    closed: tuple[int, int],
    open_deals: int,
    ai_scores: tuple[int, float] | None = None,
) -> ManagerStats:
    return ManagerStats(
        user_id=author[0],
        name=name,
        role=role,
        replies=replies.replies if replies else 0,
        median_response_seconds=replies.median_seconds if replies else None,
        p90_response_seconds=replies.p90_seconds if replies else None,
        first_responses=first.deals if first else 0,
        median_first_response_seconds=first.median_seconds if first else None,
        deals_won=closed[0],
        deals_lost=closed[1],
        open_deals=open_deals,
        ai_scored_deals=ai_scores[0] if ai_scores else 0,
        ai_score_average=ai_scores[1] if ai_scores else None,
    )


async def managers(session: AsyncSession, user: User, start: datetime, end: datetime) -> ManagerStatsReport:
    """Replies, response times and deal outcomes per manager over ``[start, end)``.

    Admins get every active user plus anyone (deactivated since) with figures in the
    range, and a row per outside inbox (e.g. "Meta inbox" for echoes).
    """
    repository = StatsRepository(session)
    only = None if is_admin(user) else user.id
    replies = await repository.replies(start, end, only)
    first = await repository.first_responses(start, end, only)
    closed = await repository.closed(start, end, only)
    open_deals = await repository.open_deals(only)
    ai_scores = await repository.ai_scores(start, end, only)
    people = [user] if only is not None else await repository.users()
    rows = []
    for person in people:
        assert person.id is not None
        author: Author = (person.id, None)
        figures = (
            replies.get(author),
            first.get(author),
            closed.get(person.id),
            open_deals.get(person.id),
            ai_scores.get(person.id),
        )
        if not person.is_active and not any(figures):
            continue
        rows.append(
            _row(
                author,
                person.name,
                person.role,
                figures[0],
                figures[1],
                figures[2] or (0, 0),
                figures[3] or 0,
                figures[4],
            )
        )
    if only is None:
        labels = sorted({label for user_id, label in (*replies, *first) if user_id is None and label})
        for label in labels:
            author = (None, label)
            rows.append(_row(author, label, None, replies.get(author), first.get(author), (0, 0), 0))
    return ManagerStatsReport(range_from=start, range_to=end, items=rows)


async def funnel(session: AsyncSession, user: User, start: datetime, end: datetime) -> FunnelReport:
    """How far the deals created in ``[start, end)`` got through the pipeline.

    A deal reached a stage when it got to that stage or a later one; moving back does not
    undo that. Won and lost are counted at the stage the deal was in when it closed.
    """
    repository = StatsRepository(session)
    stages = await repository.stages()
    furthest = await repository.furthest_stages(user, start, end)
    by_stage = await repository.cohort_by_stage(user, start, end)

    reached: dict[int, int] = {}
    running = 0
    for stage in reversed(stages):
        assert stage.id is not None
        running += furthest.get(stage.id, 0)
        reached[stage.id] = running

    def count(stage_id: int, status: str) -> int:
        return by_stage.get((stage_id, status), 0)

    shown = [
        stage
        for stage in stages
        if stage.is_active or furthest.get(stage.id or 0) or any(s == stage.id for s, _ in by_stage)
    ]
    rows = []
    for index, stage in enumerate(shown):
        assert stage.id is not None
        following = shown[index + 1] if index + 1 < len(shown) else None
        here = reached[stage.id]
        conversion = round(reached[following.id or 0] / here, 4) if following is not None and here else None
        rows.append(
            FunnelStage(
                id=stage.id,
                key=stage.key,
                name=stage.name,
                position=stage.position,
                is_active=stage.is_active,
                reached=here,
                conversion_to_next=conversion,
                open=count(stage.id, "open"),
                won=count(stage.id, "won"),
                lost=count(stage.id, "lost"),
            )
        )
    totals = {status: sum(n for (_, s), n in by_stage.items() if s == status) for status in ("open", "won", "lost")}
    closed = totals["won"] + totals["lost"]
    return FunnelReport(
        range_from=start,
        range_to=end,
        deals=sum(by_stage.values()),
        open=totals["open"],
        won=totals["won"],
        lost=totals["lost"],
        win_rate=round(totals["won"] / closed, 4) if closed else None,
        stages=rows,
    )
