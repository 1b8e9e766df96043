"""``/api/stats``: how the team answers customers and how deals move through the pipeline."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from crm.auth.dependencies import CurrentUser
from crm.web.errors import error_responses
from crm.web.state import Session
from crm.web.types import UtcDatetime

from . import service
from .schemas import FunnelReport, ManagerStatsReport

router = APIRouter(prefix="/api/stats", tags=["statistics"], responses=error_responses(401))

From = Annotated[
    UtcDatetime | None,
    Query(alias="from", description="at or after (default: 30 days before 'to'; at most 366 days before it)"),
]
To = Annotated[UtcDatetime | None, Query(alias="to", description="before (default: now)")]


@router.get("/managers", summary="Figures per manager", response_model_by_alias=True)
async def managers(
    user: CurrentUser, session: Session, range_from: From = None, range_to: To = None
) -> ManagerStatsReport:
    """Per manager over the range: replies, median and 90th-percentile response time, median
    first response time, deals won and lost, deals open now, and the AI's average score of
    how they handled their deals analysed in the range; plus a row for replies typed in
    Meta's own inbox. Admins see everyone, a manager only their own row.
    """
    start, end = service.time_range(range_from, range_to)
    return await service.managers(session, user, start, end)


@router.get("/funnel", summary="The pipeline funnel", response_model_by_alias=True)
async def funnel(user: CurrentUser, session: Session, range_from: From = None, range_to: To = None) -> FunnelReport:
    """For the deals created in the range (that you may see): how many reached each stage,
    the conversion from each stage to the next, and won / lost totals."""
    start, end = service.time_range(range_from, range_to)
    return await service.funnel(session, user, start, end)
