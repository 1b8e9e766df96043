"""Recording and reading the audit log and the system log. Never commits.

An audit entry is written in the same transaction as the change it describes, so there is
never a change without its entry (or an entry for a change that was rolled back).
Secret values are masked here, whatever the caller passes, so no code path can put a
plaintext secret into the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import AuditLogEntry, SystemLogEntry, User
from crm.web.errors import BadRequest
from crm.web.pagination import CursorCodec, InvalidCursor
from jggl_common.contracts import DeadLetter, utcnow
from jggl_common.crypto import mask

from .repository import AuditFilters, LogRepository, SystemFilters

MESSAGE_LIMIT = 4000
PAYLOAD_LIMIT = 8000


def _storable(value: str, limit: int) -> str:
    # PostgreSQL text and jsonb refuse NUL; what failed elsewhere may well contain one.
    return value.replace("\x00", "\ufffd")[:limit]


async def record_change(
    session: AsyncSession,
    actor: User | None,
    *,
    action: str,
    key: str,
    old: str | None,
    new: str | None,
    secret: bool,
    client_address: str | None,
    details: dict[str, Any] | None = None,
) -> AuditLogEntry:
    """Add an audit entry (with the caller's transaction); secret values are stored masked."""
    entry = AuditLogEntry(
        occurred_at=utcnow(),
        actor_user_id=actor.id if actor else None,
        actor_email=actor.email if actor else None,
        action=action,
        key=key,
        old_value=mask(old) if secret else old,
        new_value=mask(new) if secret else new,
        client_address=client_address,
        details=details or {},
    )
    session.add(entry)
    await session.flush()
    return entry


async def record_integration_failure(
    session: AsyncSession,
    source: str,
    message: str,
    details: dict[str, Any] | None = None,
    *,
    dedupe_key: str | None = None,
    occurred_at: datetime | None = None,
) -> bool:
    """Note that an outside system failed us (``source`` e.g. ``meta.send``, ``graph.profile``).

    Runs in the caller's transaction. With ``dedupe_key``, recording the same failure again
    is a no-op; returns whether a new entry was written. ``details`` must be JSON.
    """
    return await _insert(
        session,
        kind="integration_failure",
        source=source,
        subject=None,
        message=message,
        deliveries=None,
        dedupe_key=dedupe_key,
        occurred_at=occurred_at or utcnow(),
        details=details or {},
    )


async def record_channel_health(
    session: AsyncSession,
    message: str,
    details: dict[str, Any],
    *,
    dedupe_key: str,
    occurred_at: datetime,
) -> bool:
    """Note that a channel's health changed (problems found, or all gone), in the caller's
    transaction; idempotent by ``dedupe_key``. ``details`` must be JSON."""
    return await _insert(
        session,
        kind="channel_health",
        source="meta.channel_health",
        subject=None,
        message=message,
        deliveries=None,
        dedupe_key=dedupe_key,
        occurred_at=occurred_at,
        details=details,
    )


async def record_dead_letter(session: AsyncSession, letter: DeadLetter) -> bool:
    """Note a message some consumer gave up on; idempotent by the dead letter's id."""
    data = letter.data
    payload = data.payload_base64 or data.payload
    return await _insert(
        session,
        kind="dead_letter",
        source=data.service,
        subject=data.original_subject,
        message=data.error,
        deliveries=data.deliveries,
        dedupe_key=f"dlq:{letter.id}",
        occurred_at=letter.occurred_at,
        details={
            "dead_letter_id": letter.id,
            "consumer": data.consumer,
            "original_stream": data.original_stream,
            "original_sequence": data.original_sequence,
            "correlation_id": letter.correlation_id,
            "payload": _storable(payload, PAYLOAD_LIMIT),
            "payload_encoding": "base64" if data.payload_base64 else "utf-8",
            "payload_truncated": len(payload) > PAYLOAD_LIMIT,
        },
    )


async def _insert(
    session: AsyncSession,
    *,
    kind: str,
    source: str,
    subject: str | None,
    message: str,
    deliveries: int | None,
    dedupe_key: str | None,
    occurred_at: datetime,
    details: dict[str, Any],
) -> bool:
    statement = (
        insert(SystemLogEntry)
        .values(
            occurred_at=occurred_at,
            recorded_at=utcnow(),
            kind=kind,
            source=_storable(source, 100),
            subject=_storable(subject, 300) if subject is not None else None,
            message=_storable(message, MESSAGE_LIMIT),
            deliveries=deliveries,
            dedupe_key=_storable(dedupe_key, 300) if dedupe_key is not None else None,
            details=details,
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"], index_where=text("dedupe_key IS NOT NULL"))
        .returning(SystemLogEntry.__table__.c.id)  # type: ignore[attr-defined]
    )
    return (await session.execute(statement)).first() is not None


def _position(cursors: CursorCodec, cursor: str | None, kind: str) -> tuple[datetime, int] | None:
    if cursor is None:
        return None
    try:
        raw = cursors.decode(cursor, kind)
        if len(raw) != 2 or not isinstance(raw[0], str) or not isinstance(raw[1], int) or isinstance(raw[1], bool):
            raise InvalidCursor("malformed cursor")
        return datetime.fromisoformat(raw[0]), raw[1]
    except (InvalidCursor, ValueError) as exc:
        raise BadRequest(f"Invalid cursor: {exc}") from None


def _next_cursor(cursors: CursorCodec, kind: str, rows: Sequence[AuditLogEntry | SystemLogEntry]) -> str:
    last = rows[-1]
    return cursors.encode(kind, [last.occurred_at.isoformat(), last.id])


async def audit_page(
    session: AsyncSession, cursors: CursorCodec, filters: AuditFilters, *, limit: int, cursor: str | None
) -> tuple[list[AuditLogEntry], str | None]:
    """Audit entries newest first, and the cursor of the next page (None at the end)."""
    kind = "audit-log"
    rows = await LogRepository(session).audit(filters, after=_position(cursors, cursor, kind), limit=limit + 1)
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], _next_cursor(cursors, kind, rows[:limit])


async def system_page(
    session: AsyncSession, cursors: CursorCodec, filters: SystemFilters, *, limit: int, cursor: str | None
) -> tuple[list[SystemLogEntry], str | None]:
    """System log entries newest first, and the cursor of the next page (None at the end)."""
    kind = "system-log"
    rows = await LogRepository(session).system(filters, after=_position(cursors, cursor, kind), limit=limit + 1)
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], _next_cursor(cursors, kind, rows[:limit])
