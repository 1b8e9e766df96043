"""``/api/deals``: the pipeline's deals as a manager works them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from crm.auth.dependencies import CurrentUser
from crm.web.errors import Unprocessable, error_responses
from crm.web.state import Session, State
from crm.web.types import INT4_MAX, CleanStr, DealId, UtcDatetime

from . import service
from .repository import DealFilters
from .schemas import (
    ActivityItem,
    ActivityList,
    DealDetail,
    DealListItem,
    DealPage,
    DealPatch,
    DealSort,
    DealStatus,
    MessageItem,
    MessagePage,
    Platform,
    SlaState,
    mentioned_users,
)

router = APIRouter(prefix="/api/deals", tags=["deals"], responses=error_responses(401))


@router.get("", summary="List deals", responses=error_responses(400))
async def list_deals(
    user: CurrentUser,
    session: Session,
    state: State,
    stage: Annotated[CleanStr | None, Query(max_length=50, description="stage key")] = None,
    status: DealStatus | None = None,
    assignee_id: Annotated[int | None, Query(ge=1, le=INT4_MAX)] = None,
    unassigned: Annotated[bool, Query(description="only deals nobody has taken")] = False,
    awaiting_reply: Annotated[bool | None, Query(description="the customer waits for an answer")] = None,
    overdue_tasks: Annotated[bool | None, Query(description="the deal has an open task past its due time")] = None,
    sla: Annotated[
        SlaState | None, Query(description="the current wait passed the SLA (breached) or twice it (escalated)")
    ] = None,
    platform: Platform | None = None,
    created_from: Annotated[UtcDatetime | None, Query(description="created at or after")] = None,
    created_to: Annotated[UtcDatetime | None, Query(description="created before")] = None,
    sort: DealSort = "-created_at",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[CleanStr | None, Query(max_length=1000, description="next_cursor of the previous page")] = None,
) -> DealPage:
    """Deals you may see (admins: all; managers: yours and unassigned), filtered and sorted.

    Pages are keyset-based: pass ``next_cursor`` back as ``cursor`` with the same ``sort``.
    Missing amounts and deals without messages sort as the smallest values.
    """
    if unassigned and assignee_id is not None:
        raise Unprocessable("Use either assignee_id or unassigned=true, not both")
    filters = DealFilters(
        stage=stage,
        status=status,
        assignee_id=assignee_id,
        unassigned=unassigned,
        awaiting_reply=awaiting_reply,
        overdue_tasks=overdue_tasks,
        sla=sla,
        platform=platform,
        created_from=created_from,
        created_to=created_to,
    )
    rows, next_cursor = await service.list_deals(
        session, user, state.cursors, filters, sort=sort, limit=limit, cursor=cursor
    )
    unread = await service.unread_counts(session, rows)
    items = [DealListItem.with_unread(row, unread.get(row[0].id or 0, 0)) for row in rows]
    return DealPage(items=items, next_cursor=next_cursor)


@router.get("/{deal_id}", summary="Read a deal", responses=error_responses(404))
async def get_deal(user: CurrentUser, session: Session, deal_id: DealId) -> DealDetail:
    """A deal with its contact, response tracking, unread count, reply window and AI analysis."""
    return await service.detail(session, await service.get_deal(session, user, deal_id))


@router.patch("/{deal_id}", summary="Change a deal", responses=error_responses(403, 404, 409))
async def update_deal(
    user: CurrentUser, session: Session, state: State, deal_id: DealId, patch: DealPatch
) -> DealDetail:
    """Move to a stage, set amount or comment, assign, mark won or lost (with a reason), or reopen.

    Reopening is refused (409) while the conversation has another open deal. Every
    change is written to the timeline and announced as ``crm.deal.updated``.
    """
    row, _ = await service.update_deal(session, user, deal_id, patch)
    await session.commit()
    await state.announce(session)
    return await service.detail(session, row)


@router.post("/{deal_id}/take", summary="Take an unassigned deal", responses=error_responses(404, 409))
async def take_deal(user: CurrentUser, session: Session, state: State, deal_id: DealId) -> DealDetail:
    """Assign the deal to yourself; 409 if someone else already has it."""
    row, _ = await service.take_deal(session, user, deal_id)
    await session.commit()
    await state.announce(session)
    return await service.detail(session, row)


@router.post("/{deal_id}/read", summary="Mark a deal read", responses=error_responses(404))
async def read_deal(user: CurrentUser, session: Session, state: State, deal_id: DealId) -> DealDetail:
    """You read the conversation: its customer messages are no longer unread, for the whole team.

    The web app calls it when a deal is opened and when new messages arrive while it is
    open. When something was unread it is announced as ``crm.deal.updated`` with the change
    ``manager_read_at`` (every open inbox clears the count); otherwise nothing changes.
    Answers the deal (``unread`` 0).
    """
    row, _ = await service.mark_read(session, user, deal_id)
    await session.commit()
    await state.announce(session)
    return await service.detail(session, row)


@router.get("/{deal_id}/messages", summary="A deal's messages", responses=error_responses(400, 404))
async def list_messages(
    user: CurrentUser,
    session: Session,
    state: State,
    deal_id: DealId,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
    before: Annotated[CleanStr | None, Query(max_length=1000, description="next_cursor of a previous call")] = None,
) -> MessagePage:
    """The latest messages, oldest first; ``next_cursor`` (as ``before``) loads older ones."""
    messages, next_cursor = await service.list_messages(
        session, user, state.cursors, deal_id, limit=limit, before=before
    )
    return MessagePage(items=[MessageItem.of(message) for message in messages], next_cursor=next_cursor)


@router.get("/{deal_id}/activities", summary="A deal's timeline", responses=error_responses(404))
async def list_activities(
    user: CurrentUser,
    session: Session,
    deal_id: DealId,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> ActivityList:
    """The latest timeline entries (stage moves, assignments, closing...), oldest first."""
    activities = await service.list_activities(session, user, deal_id, limit=limit)
    names = await service.user_names(session, mentioned_users(activities))
    return ActivityList(
        items=[ActivityItem.of(activity) for activity in activities],
        user_names={str(user_id): name for user_id, name in names.items()},
    )
