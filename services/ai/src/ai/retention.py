"""ai's part of the daily retention (``retention.ai``): the analyses history and the outbox.

* ``analyses``: rows older than ``AI_ANALYSES_RETENTION_DAYS``, except, per conversation,
  the newest completed analysis (what the conversation's deal shows; crm keeps its own copy
  from the events, but a redo or a support question starts here) and the newest completed
  Gemini analysis (what a long transcript carries forward into its next analysis). Failed
  attempts and superseded results go.
* ``outbox``: events published more than ``OUTBOX_RETENTION_HOURS`` ago (never an
  unpublished one).

The transcripts projection stays: it is what the next analysis of a conversation reads.
Daily is often enough for both (periods of a day or more; the tables are read by key and
by indexes that do not slow down with older rows), so the outbox relay no longer prunes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai.config import AiSettings
from jggl_common.outbox import Outbox
from jggl_common.retention import OldRows, RetentionJob, Rule, outbox_rows

__all__ = ["DURABLE", "KEEP_ANALYSIS", "ai_retention", "ai_rules"]

DURABLE = "ai-retention"

_NEWER = (
    "SELECT 1 FROM analyses n WHERE n.conversation_id = t.conversation_id AND n.status = 'completed'"
    " AND (n.version, n.id) > (t.version, t.id)"
)
KEEP_ANALYSIS = (
    f"t.status = 'completed' AND (NOT EXISTS ({_NEWER})"
    f" OR (t.provider = 'gemini' AND NOT EXISTS ({_NEWER} AND n.provider = 'gemini')))"
)
"""An analysis that stays however old: its conversation's newest completed one, or its
newest completed Gemini one."""


def ai_rules(settings: AiSettings, now: datetime) -> Sequence[Rule]:
    """ai's retention rules as of ``now``."""
    return [
        OldRows(
            "analyses",
            "analyses",
            "created_at",
            now - timedelta(days=settings.ai_analyses_retention_days),
            keep=KEEP_ANALYSIS,
        ),
        outbox_rows(now - timedelta(hours=settings.outbox_retention_hours)),
    ]


def ai_retention(sessions: async_sessionmaker[AsyncSession], outbox: Outbox, settings: AiSettings) -> RetentionJob:
    """The ``retention.ai`` job over ai's sessions and outbox."""
    return RetentionJob("ai", sessions, outbox, lambda now: ai_rules(settings, now))
