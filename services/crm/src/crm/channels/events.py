"""What a change of a channel's health announces: the event for the notifier and the system
log row for admins, in the transaction that stores the change.

Both ids derive from the channel, the set of problem codes and the check's time, so a
check repeated after a crash stages nothing new and JetStream drops a second publish.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from crm.audit import record_channel_health
from crm.deals.events import row_key
from crm.models import Channel
from jggl_common.contracts import (
    ChannelHealthChanged,
    ChannelHealthChangedData,
    ChannelHealthProblem,
    stable_event_id,
)
from jggl_common.outbox import stage

__all__ = ["PRODUCER", "announce_health_change"]

PRODUCER = "crm"


def _summary(channel: Channel, problems: list[ChannelHealthProblem], previous: list[ChannelHealthProblem]) -> str:
    name = channel.name or channel.external_id
    if problems:
        return f"Channel {name} ({channel.platform}): " + " ".join(problem.message for problem in problems)
    gone = ", ".join(problem.code for problem in previous)
    return f"Channel {name} ({channel.platform}) recovered: no problem left (was: {gone})."


async def announce_health_change(
    session: AsyncSession,
    channel: Channel,
    problems: list[ChannelHealthProblem],
    previous: list[ChannelHealthProblem],
    checked_at: datetime,
    correlation: str | None,
) -> str:
    """Stage ``crm.channel.health_changed`` and write the system log row; the event id."""
    assert channel.id is not None
    codes = ",".join(sorted(problem.code for problem in problems)) or "ok"
    event_id = stable_event_id(
        f"crm.channel.health_changed:{row_key(channel.id, channel.created_at)}:{codes}:{checked_at.isoformat()}"
    )
    recovered = not problems
    data = ChannelHealthChangedData(
        channel_id=channel.id,
        platform=channel.platform,
        external_id=channel.external_id,
        channel_name=channel.name,
        status="ok" if recovered else "problem",
        problems=problems,
        previous_problems=previous,
        recovered=recovered,
        checked_at=checked_at,
    )
    await record_channel_health(
        session,
        _summary(channel, problems, previous),
        {
            "channel_id": channel.id,
            "platform": channel.platform,
            "external_id": channel.external_id,
            "problems": [problem.model_dump() for problem in problems],
            "previous_problems": [problem.model_dump() for problem in previous],
            "recovered": recovered,
            "event_id": event_id,
        },
        dedupe_key=f"channel_health:{event_id}",
        occurred_at=checked_at,
    )
    return await stage(
        session,
        ChannelHealthChanged(id=event_id, producer=PRODUCER, correlation_id=correlation, data=data),
    )
