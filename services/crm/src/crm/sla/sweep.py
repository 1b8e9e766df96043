"""The SLA sweep: announce each deal whose customer has waited past the SLA, once per
waiting episode and level.

A waiting episode is the deal's ``awaiting_reply_since``: a reply clears it and the next
customer message starts a new one. Past ``sla.minutes`` of business time the deal's
assignee is told (level ``breach``); past twice that, the admins (``escalation``). The
deal remembers the episode each level was announced for (``sla_breach_since``,
``sla_escalation_since``), in the transaction that stages the event; rows are locked and
skipped by a concurrent sweep, and the event id is derived from the deal, the episode and
the level, so nothing is announced twice whatever the replicas and repeated ticks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from crm.deals.events import row_key, snapshot
from crm.models import Contact, Deal, Stage
from jggl_common.contracts import SlaBreachData, SlaBreached, stable_event_id
from jggl_common.outbox import stage

from .hours import BusinessHours

__all__ = ["LEVELS", "SweepResult", "sweep_sla"]

PRODUCER = "crm"
LEVELS = (("breach", 1), ("escalation", 2))
"""Each level and the multiple of the SLA it is announced at."""
_SINCE = {"breach": "sla_breach_since", "escalation": "sla_escalation_since"}
"""The deal's column remembering the episode announced at each level."""


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What one sweep announced, per level; ``more`` when a level hit the batch limit."""

    breaches: int
    escalations: int
    more: bool


async def sweep_sla(
    session: AsyncSession,
    hours: BusinessHours,
    sla_minutes: int,
    now: datetime,
    *,
    limit: int = 500,
    correlation_id: str | None = None,
) -> SweepResult:
    """Stage ``crm.deal.sla_breached`` for the deals past the SLA (and past twice it) whose
    episode was not announced yet at that level, oldest wait first, at most ``limit`` per
    level; the caller commits (and calls again while ``more``)."""
    counts = {"breach": 0, "escalation": 0}
    more = False
    for level, multiple in LEVELS:
        cutoff = hours.rewind(now, sla_minutes * 60 * multiple)
        if cutoff is None:  # no working time at all in the days looked at
            continue
        since = col(getattr(Deal, _SINCE[level]))
        rows = (
            await session.execute(
                select(Deal, Contact, col(Stage.key))
                .join(Contact, col(Contact.id) == col(Deal.contact_id))
                .join(Stage, col(Stage.id) == col(Deal.stage_id))
                .where(
                    col(Deal.status) == "open",
                    col(Deal.awaiting_reply_since).is_not(None),
                    col(Deal.awaiting_reply_since) <= cutoff,
                    since.is_distinct_from(col(Deal.awaiting_reply_since)),
                )
                .order_by(col(Deal.awaiting_reply_since), col(Deal.id))
                .limit(limit)
                .with_for_update(of=Deal, skip_locked=True)
            )
        ).all()
        for deal, contact, stage_key in rows:
            waiting_since = deal.awaiting_reply_since
            assert waiting_since is not None
            event = SlaBreached(
                id=stable_event_id(
                    f"crm.deal.sla_breached:{row_key(deal.id, deal.created_at)}:{waiting_since.isoformat()}:{level}"
                ),
                producer=PRODUCER,
                correlation_id=correlation_id,
                data=SlaBreachData(
                    deal=snapshot(deal, contact, stage_key),
                    level=level,
                    waiting_since=waiting_since,
                    waited_minutes=int(hours.seconds_between(waiting_since, now) // 60),
                    sla_minutes=sla_minutes,
                    last_text=deal.last_message_text,
                ),
            )
            await stage(session, event)
            await session.execute(
                update(Deal)
                .where(col(Deal.id) == deal.id)
                .values({_SINCE[level]: waiting_since})
                .execution_options(synchronize_session=False)
            )
        counts[level] = len(rows)
        more = more or len(rows) == limit
    return SweepResult(counts["breach"], counts["escalation"], more)
