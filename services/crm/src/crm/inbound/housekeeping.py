"""What the inbound rules keep only for a while: updates waiting for a message that never
came, and read/delivery receipts.

A reaction, edit or receipt can arrive before its message, so it waits in
``pending_updates``; one whose message never arrives (sent before the page was connected,
say) would wait forever. Receipts are kept so a message arriving after its receipt gets
the right read/delivered time; past a few days no message still on its way is that late
(JetStream keeps redelivering for far less). Both are deleted once older than the
retention by Meta's timestamp, in small batches so no pass holds locks for long.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jggl_common.contracts import utcnow
from jggl_common.db import autocommit, delete_oldest
from jggl_common.logs import get_logger

__all__ = ["prune_leftovers", "run_housekeeping"]

log = get_logger(__name__)

_TABLES = ("pending_updates", "receipts")


async def prune_leftovers(
    sessions: async_sessionmaker[AsyncSession], older_than: datetime, *, batch: int = 5000
) -> dict[str, int]:
    """Delete pending updates and receipts that happened before ``older_than``; returns
    how many rows of each table went."""
    deleted = dict.fromkeys(_TABLES, 0)
    for name in _TABLES:
        while True:
            async with autocommit(sessions) as db:
                count = await delete_oldest(db, name, "occurred_at", older_than, batch)
            deleted[name] += count
            if count == 0:
                break
    return deleted


async def run_housekeeping(
    sessions: async_sessionmaker[AsyncSession], retention: timedelta, *, interval: float = 600.0
) -> None:
    """Forever: every ``interval`` seconds, prune what is older than ``retention``."""
    while True:
        try:
            deleted = await prune_leftovers(sessions, utcnow() - retention)
            if any(deleted.values()):
                log.info("old pending updates and receipts deleted", **deleted)
        except Exception as exc:
            log.error("inbound housekeeping failed", error=f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(interval)
