"""``/api/audit-log`` and ``/api/system-log``: what admins read about the system."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from crm.auth.dependencies import CurrentAdmin
from crm.web.errors import Unprocessable, error_responses
from crm.web.state import Session, State
from crm.web.types import INT4_MAX, CleanStr, UtcDatetime

from . import service
from .repository import AuditFilters, SystemFilters
from .schemas import AuditEntryRead, AuditPage, SystemEntryRead, SystemLogKind, SystemPage

router = APIRouter(tags=["administration"], responses=error_responses(400, 401, 403))

Limit = Annotated[int, Query(ge=1, le=200)]
Cursor = Annotated[CleanStr | None, Query(max_length=1000, description="next_cursor of the previous page")]
From = Annotated[UtcDatetime | None, Query(alias="from", description="at or after (ISO 8601)")]
To = Annotated[UtcDatetime | None, Query(alias="to", description="before (ISO 8601)")]


def _actor(actor: str | None) -> tuple[int | None, str | None]:
    """An actor filter is a user id or an e-mail."""
    if actor is None:
        return None, None
    value = actor.strip()
    if "@" in value:
        return None, value
    if value.isascii() and value.isdigit() and 1 <= int(value) <= INT4_MAX:
        return int(value), None
    raise Unprocessable("actor must be a user id or an e-mail address")


@router.get("/api/audit-log", summary="The audit log (admin)")
async def audit_log(
    _: CurrentAdmin,
    session: Session,
    state: State,
    key: Annotated[CleanStr | None, Query(max_length=100, description="setting key, e.g. sla.minutes")] = None,
    actor: Annotated[CleanStr | None, Query(max_length=320, description="the acting user's id or e-mail")] = None,
    occurred_from: From = None,
    occurred_to: To = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> AuditPage:
    """Every settings change, newest first: who (id and e-mail), what, old and new value
    (secrets masked), when and from which address."""
    actor_id, actor_email = _actor(actor)
    filters = AuditFilters(
        key=key, actor_id=actor_id, actor_email=actor_email, occurred_from=occurred_from, occurred_to=occurred_to
    )
    rows, next_cursor = await service.audit_page(session, state.cursors, filters, limit=limit, cursor=cursor)
    return AuditPage(items=[AuditEntryRead.of(row) for row in rows], next_cursor=next_cursor)


@router.get("/api/system-log", summary="The system log (admin)")
async def system_log(
    _: CurrentAdmin,
    session: Session,
    state: State,
    kind: SystemLogKind | None = None,
    source: Annotated[CleanStr | None, Query(max_length=100, description="service or integration")] = None,
    occurred_from: From = None,
    occurred_to: To = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> SystemPage:
    """Integration failures and dead letters (messages a service gave up on), newest first."""
    filters = SystemFilters(kind=kind, source=source, occurred_from=occurred_from, occurred_to=occurred_to)
    rows, next_cursor = await service.system_page(session, state.cursors, filters, limit=limit, cursor=cursor)
    return SystemPage(items=[SystemEntryRead.of(row) for row in rows], next_cursor=next_cursor)
