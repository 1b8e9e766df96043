"""crm's part of the daily retention (``retention.crm``): what crm keeps only for a while.

* ``outbox``: events published more than ``OUTBOX_RETENTION_HOURS`` ago (an unpublished
  one stays, whatever its age: the relay still owes it to JetStream).
* ``pending_updates`` and ``receipts``: the inbound rules' leftovers (see
  :mod:`crm.inbound.housekeeping`), older than ``INBOUND_LEFTOVERS_RETENTION_DAYS`` by
  Meta's timestamp.
* ``system_log``: dead letters and integration failures recorded more than
  ``SYSTEM_LOG_RETENTION_DAYS`` ago (at least 31 days: a dead letter's row must outlive
  the ``DLQ`` stream's 30 days, or a replayed letter would be recorded twice).
* ``telegram_link_codes``: codes expired for a day or more (a user who never asks for a
  new code otherwise keeps them for ever).

Kept for good: deals, messages, contacts, activities (the deal timeline), tasks, the audit
log (who changed which setting, when) and the jobs' state.

Nothing of this needs pruning more often than daily: every period is a day or longer,
the tables are read by key or by indexes that do not grow slower for older rows, and a
day more of rows costs disk, not time. So the background loops that pruned the outbox
(every relay pass) and the inbound leftovers (every 10 minutes) are gone; this job is the
one place where crm forgets.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.config import CrmSettings
from crm.inbound.housekeeping import leftover_rules
from jggl_common.outbox import Outbox
from jggl_common.retention import Matching, OldRows, RetentionJob, Rule, outbox_rows

__all__ = ["LINK_CODE_GRACE", "RETENTION_DURABLE", "crm_retention", "crm_rules"]

RETENTION_DURABLE = "crm-retention"

LINK_CODE_GRACE = timedelta(days=1)
"""How long an expired Telegram link code stays (a late ``/start`` then hears "expired")."""


def crm_rules(settings: CrmSettings, now: datetime) -> Sequence[Rule]:
    """crm's retention rules as of ``now``."""
    return [
        outbox_rows(now - timedelta(hours=settings.outbox_retention_hours)),
        *leftover_rules(now - timedelta(days=settings.inbound_leftovers_retention_days)),
        OldRows("system_log", "system_log", "recorded_at", now - timedelta(days=settings.system_log_retention_days)),
        Matching("telegram_link_codes", "telegram_link_codes", "id", "t.expires_at < $1", now - LINK_CODE_GRACE),
    ]


def crm_retention(sessions: async_sessionmaker[AsyncSession], outbox: Outbox, settings: CrmSettings) -> RetentionJob:
    """The ``retention.crm`` job over crm's sessions and outbox."""
    return RetentionJob("crm", sessions, outbox, lambda now: crm_rules(settings, now))
