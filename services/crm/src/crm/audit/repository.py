"""Queries over the audit log and the system log: newest first, keyset-paged."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from crm.models import AuditLogEntry, SystemLogEntry

EntryT = TypeVar("EntryT", AuditLogEntry, SystemLogEntry)


@dataclass(frozen=True)
class AuditFilters:
    """Narrowing of the audit log; None means "any"."""

    key: str | None = None
    actor_id: int | None = None
    actor_email: str | None = None
    occurred_from: datetime | None = None
    occurred_to: datetime | None = None


@dataclass(frozen=True)
class SystemFilters:
    """Narrowing of the system log; None means "any"."""

    kind: str | None = None
    source: str | None = None
    occurred_from: datetime | None = None
    occurred_to: datetime | None = None


def _newest_first(
    query: Select[Any], occurred: Any, ident: Any, after: tuple[datetime, int] | None, limit: int
) -> Select[Any]:
    if after is not None:
        query = query.where(sa.tuple_(occurred, ident) < sa.tuple_(*after))
    return query.order_by(occurred.desc(), ident.desc()).limit(limit)


class LogRepository:
    """Both logs, as admins read them."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def audit(
        self, filters: AuditFilters, *, after: tuple[datetime, int] | None, limit: int
    ) -> list[AuditLogEntry]:
        """Up to ``limit`` audit entries matching ``filters``, older than ``after``."""
        occurred = col(AuditLogEntry.occurred_at)
        query = select(AuditLogEntry)
        if filters.key is not None:
            query = query.where(col(AuditLogEntry.key) == filters.key)
        if filters.actor_id is not None:
            query = query.where(col(AuditLogEntry.actor_user_id) == filters.actor_id)
        if filters.actor_email is not None:
            query = query.where(sa.func.lower(col(AuditLogEntry.actor_email)) == filters.actor_email.lower())
        if filters.occurred_from is not None:
            query = query.where(occurred >= filters.occurred_from)
        if filters.occurred_to is not None:
            query = query.where(occurred < filters.occurred_to)
        query = _newest_first(query, occurred, col(AuditLogEntry.id), after, limit)
        return list((await self.session.execute(query)).scalars().all())

    async def system(
        self, filters: SystemFilters, *, after: tuple[datetime, int] | None, limit: int
    ) -> list[SystemLogEntry]:
        """Up to ``limit`` system log entries matching ``filters``, older than ``after``."""
        occurred = col(SystemLogEntry.occurred_at)
        query = select(SystemLogEntry)
        if filters.kind is not None:
            query = query.where(col(SystemLogEntry.kind) == filters.kind)
        if filters.source is not None:
            query = query.where(col(SystemLogEntry.source) == filters.source)
        if filters.occurred_from is not None:
            query = query.where(occurred >= filters.occurred_from)
        if filters.occurred_to is not None:
            query = query.where(occurred < filters.occurred_to)
        query = _newest_first(query, occurred, col(SystemLogEntry.id), after, limit)
        return list((await self.session.execute(query)).scalars().all())
