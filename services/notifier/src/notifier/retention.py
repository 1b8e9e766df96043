"""The notifier's part of the daily retention (``retention.notifier``).

* ``notifications``: the log's rows older than ``NOTIFICATIONS_RETENTION_DAYS``, except
  those still to be sent (``pending``, or ``deferred`` by quiet hours). A row is also what
  makes a redelivered event notify once, so the period is at least 8 days: longer than
  the ``CRM`` and ``AI`` streams keep an event.
* ``actions``: the bot's take/reply buttons crm answered (done, rejected, failed) more
  than ``NOTIFICATIONS_RETENTION_DAYS`` ago; one still waiting for crm stays.
* ``handled_updates``: Telegram updates handled more than ``HANDLED_UPDATES_RETENTION_DAYS``
  ago (at least 8: the ``INGEST`` stream replays an update for 7 days).
* ``link_codes``: one-time codes used or expired a day ago or more.
* ``reply_drafts``: "reply" prompts whose time ran out.
* ``outbox``: events published more than ``OUTBOX_RETENTION_HOURS`` ago.

Kept: the links, the preferences, whose turn it is (``rotations``), and the deals (with
the manager the round robin gave each) and replies projections (the digest and ``/stats``
read them). Daily is often enough for all of it, so the relay no longer prunes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jggl_common.outbox import Outbox
from jggl_common.retention import Matching, OldRows, RetentionJob, Rule, outbox_rows
from notifier.config import NotifierSettings

__all__ = ["DURABLE", "LINK_CODE_GRACE", "notifier_retention", "notifier_rules"]

DURABLE = "notifier-retention"
LINK_CODE_GRACE = timedelta(days=1)
"""How long a used or expired link code stays (a late ``/start`` then hears why it fails)."""


def notifier_rules(settings: NotifierSettings, now: datetime) -> Sequence[Rule]:
    """The notifier's retention rules as of ``now``."""
    log_before = now - timedelta(days=settings.notifications_retention_days)
    return [
        OldRows("notifications", "notifications", "created_at", log_before, keep="t.status IN ('pending', 'deferred')"),
        Matching("actions", "actions", "command_id", "t.status <> 'pending' AND t.answered_at < $1", log_before),
        OldRows(
            "handled_updates",
            "handled_updates",
            "handled_at",
            now - timedelta(days=settings.handled_updates_retention_days),
            key="update_id",
        ),
        Matching("link_codes", "link_codes", "code_hash", "t.used_at < $1 OR t.expires_at < $1", now - LINK_CODE_GRACE),
        Matching("reply_drafts", "reply_drafts", "chat_id", "t.expires_at < $1", now),
        outbox_rows(now - timedelta(hours=settings.outbox_retention_hours)),
    ]


def notifier_retention(
    sessions: async_sessionmaker[AsyncSession], outbox: Outbox, settings: NotifierSettings
) -> RetentionJob:
    """The ``retention.notifier`` job over the notifier's sessions and outbox."""
    return RetentionJob("notifier", sessions, outbox, lambda now: notifier_rules(settings, now))
