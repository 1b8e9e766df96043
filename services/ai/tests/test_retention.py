"""ai's daily retention (``retention.ai``): on the scheduler's tick, old analyses history
goes while each conversation's newest analysis (and newest Gemini one) stays, published
outbox rows go, and the counts come back as ``ai.job.finished``; a repeated tick is harmless."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.contracts import SchedulerTick, SchedulerTickData, tick_id, tick_subject, utcnow
from jggl_common.db import autocommit, session_factory
from jggl_common.retention import retention_job

from .conftest import Bus, StartAi, eventually, next_id

JOB = retention_job("ai")


def retention_tick(slot: str) -> SchedulerTick:
    now = utcnow()
    return SchedulerTick(
        id=tick_id(JOB, slot),
        producer="scheduler",
        data=SchedulerTickData(job=JOB, slot=slot, scheduled_for=now, fired_at=now),
    )


async def outcomes(bus: Bus) -> list[dict[str, Any]]:
    info = await bus.js.stream_info("AI")
    found: list[dict[str, Any]] = []
    if not info.state.messages:
        return found
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await bus.js.get_msg("AI", seq)
        if msg.subject == "ai.job.finished" and json.loads(msg.data)["data"]["job"] == JOB:
            found.append(json.loads(msg.data)["data"])
    return found


async def insert_analysis(
    db: Any, conversation: int, version: int, provider: str, status: str, age: timedelta, label: str
) -> None:
    await db.execute(
        "INSERT INTO analyses (conversation_id, deal_id, version, provider, status, result, error, created_at)"
        " VALUES ($1, $1, $2, $3, $4, $5::jsonb, $6, $7)",
        conversation,
        version,
        provider,
        status,
        json.dumps({"label": label}) if status == "completed" else None,
        label if status == "failed" else None,
        utcnow() - age,
    )


async def test_retention_tick_keeps_what_is_still_needed_and_reports_counts(
    ai_engine: AsyncEngine, bus: Bus, start_ai: StartAi
) -> None:
    days = lambda n: timedelta(days=n)  # noqa: E731
    a, b, c = next_id(), next_id(), next_id()
    async with autocommit(session_factory(ai_engine)) as db:
        await insert_analysis(db, a, 1, "gemini", "completed", days(40), "a1 superseded gemini")
        await insert_analysis(db, a, 2, "gemini", "failed", days(40), "a2 old failure")
        await insert_analysis(db, a, 2, "gemini", "completed", days(35), "a3 newest gemini")
        await insert_analysis(db, a, 3, "heuristic", "completed", days(31), "a4 newest")
        await insert_analysis(db, b, 1, "heuristic", "completed", days(40), "b1 superseded")
        await insert_analysis(db, b, 2, "heuristic", "completed", days(2), "b2 recent")
        await insert_analysis(db, b, 2, "gemini", "failed", days(1), "b3 recent failure")
        await insert_analysis(db, c, 1, "heuristic", "completed", days(40), "c1 only one")
        outbox = (
            "INSERT INTO outbox (event_id, subject, payload, created_at, published_at)"
            " VALUES ($1, 'ai.test', '{}', $2, $3)"
        )
        old = utcnow() - days(3)
        await db.execute(outbox, "old-published", old, old)
        await db.execute(outbox, "old-unpublished", old, None)  # the relay publishes it: it stays
        await db.execute(outbox, "recent", utcnow(), utcnow())
    await start_ai(ai_analyses_retention_days=30, outbox_retention_hours=24)

    first = retention_tick("20261207T023000Z")
    await bus.publisher.publish(first, tick_subject(JOB))
    (outcome,) = await eventually(lambda: outcomes(bus), timeout=20)

    assert outcome["slot"] == first.data.slot
    assert outcome["status"] == "done"
    assert outcome["counts"] == {"analyses": 3, "outbox": 1, "unfinished": 0}

    async def labels() -> list[str]:
        async with autocommit(session_factory(ai_engine)) as db:
            found = await db.fetch(
                "SELECT coalesce(result->>'label', error) AS label FROM analyses"
                " WHERE conversation_id = ANY($1::bigint[]) ORDER BY label",
                [a, b, c],
            )
        return [row["label"] for row in found]

    async def outbox_rows() -> list[str]:
        async with autocommit(session_factory(ai_engine)) as db:
            return sorted(
                r["event_id"] for r in await db.fetch("SELECT event_id FROM outbox WHERE subject = 'ai.test'")
            )

    kept = ["a3 newest gemini", "a4 newest", "b2 recent", "b3 recent failure", "c1 only one"]
    assert await labels() == kept
    assert await outbox_rows() == ["old-unpublished", "recent"]

    # The same tick delivered again: nothing more goes, and no second outcome is announced.
    await bus.publisher.publish_raw(
        [(tick_subject(JOB), first.model_dump_json().encode(), {"Nats-Msg-Id": first.id + ":again"})]
    )
    second = retention_tick("20261208T023000Z")  # ...and the next day's tick, to know the first was handled
    await bus.publisher.publish(second, tick_subject(JOB))

    async def two() -> list[dict[str, Any]] | None:
        found = await outcomes(bus)
        return found if len(found) >= 2 else None

    found = await eventually(two, timeout=20)
    assert [o["slot"] for o in found] == [first.data.slot, second.data.slot]
    assert found[1]["counts"] == {"analyses": 0, "outbox": 0, "unfinished": 0}
    assert await labels() == kept
