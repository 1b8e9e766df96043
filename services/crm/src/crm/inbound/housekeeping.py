"""What the inbound rules keep only for a while: updates waiting for a message that never
came, and read/delivery receipts.

A reaction, edit or receipt can arrive before its message, so it waits in
``pending_updates``; one whose message never arrives (sent before the page was connected,
say) would wait forever. Receipts are kept so a message arriving after its receipt gets
the right read/delivered time; past a few days no message still on its way is that late
(JetStream keeps redelivering for far less). Both are deleted once older than the
retention by Meta's timestamp, in small batches so no pass holds locks for long, by the
daily ``retention.crm`` job (:mod:`crm.jobs.retention`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jggl_common.retention import BATCH, OldRows, prune

__all__ = ["leftover_rules", "prune_leftovers"]

_TABLES = ("pending_updates", "receipts")


def leftover_rules(older_than: datetime) -> list[OldRows]:
    """The retention rules of pending updates and receipts that happened before ``older_than``."""
    return [OldRows(name, name, "occurred_at", older_than) for name in _TABLES]


async def prune_leftovers(
    sessions: async_sessionmaker[AsyncSession], older_than: datetime, *, batch: int = BATCH
) -> dict[str, int]:
    """Delete pending updates and receipts that happened before ``older_than``; returns
    how many rows of each table went."""
    return (await prune(sessions, leftover_rules(older_than), batch=batch, max_seconds=float("inf"))).counts
