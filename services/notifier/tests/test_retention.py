"""The notifier's daily retention (``retention.notifier``): on the scheduler's tick the old
notification log, handled updates, used or expired link codes, answered actions, expired
reply drafts and published outbox rows go; what is still to be
sent or still waited for stays; the counts come back as ``notifier.job.finished``, and a
repeated tick is harmless."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import nats
from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.contracts import SchedulerTick, SchedulerTickData, tick_id, tick_subject, utcnow
from jggl_common.db import autocommit, session_factory
from jggl_common.retention import retention_job
from jggl_common.streams import NOTIFIER

from .conftest import Bus, StartNotifier, eventually, next_id, rows

JOB = retention_job("notifier")


def retention_tick(slot: str) -> SchedulerTick:
    now = utcnow()
    return SchedulerTick(
        id=tick_id(JOB, slot),
        producer="scheduler",
        data=SchedulerTickData(job=JOB, slot=slot, scheduled_for=now, fired_at=now),
    )


async def outcomes(bus: Bus) -> list[dict[str, Any]]:
    js = bus.nc.jetstream()
    info = await js.stream_info(NOTIFIER.name)
    found: list[dict[str, Any]] = []
    if not info.state.messages:
        return found
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            msg = await js.get_msg(NOTIFIER.name, seq)
        except nats.js.errors.NotFoundError:
            continue
        if msg.subject == "notifier.job.finished":
            found.append(json.loads(msg.data)["data"])
    return found


async def seed(engine: AsyncEngine) -> dict[str, Any]:
    now = utcnow()
    days = lambda n: now - timedelta(days=n)  # noqa: E731
    chat, user, deal = next_id(), next_id(), next_id()
    async with autocommit(session_factory(engine)) as db:
        notification = (
            "INSERT INTO notifications (event_id, chat_id, user_id, kind, status, created_at, not_before)"
            " VALUES ($1, $2, $3, 'new_lead', $4, $5, $6)"
        )
        for event_id, status, at, not_before in [
            ("old-sent", "sent", days(40), None),
            ("old-skipped", "skipped", days(40), None),
            ("old-failed", "failed", days(40), None),
            ("old-pending", "pending", days(40), None),
            ("old-deferred", "deferred", days(40), now + timedelta(hours=5)),
            ("recent-sent", "sent", days(1), None),
        ]:
            await db.execute(notification, event_id, chat, user, status, at, not_before)
        action = (
            "INSERT INTO actions (command_id, kind, user_id, chat_id, deal_id, status, created_at, answered_at)"
            " VALUES ($1, 'take', $2, $3, $4, $5, $6, $7)"
        )
        await db.execute(action, "old-done", user, chat, deal, "done", days(41), days(40))
        await db.execute(action, "old-pending", user, chat, deal, "pending", days(40), None)
        await db.execute(action, "recent-rejected", user, chat, deal, "rejected", days(1), days(1))
        update = "INSERT INTO handled_updates (update_id, handled_at) VALUES ($1, $2)"
        base = next_id()
        for offset, at in enumerate([days(40), days(20), days(1)]):
            await db.execute(update, base + offset, at)
        code = (
            "INSERT INTO link_codes (code_hash, user_id, name, role, expires_at, used_at)"
            " VALUES ($1, $2, 'Mia', 'manager', $3, $4)"
        )
        await db.execute(code, "used-long-ago", user, days(2), days(2) - timedelta(minutes=5))
        await db.execute(code, "expired", user, days(2), None)
        await db.execute(code, "usable", user, now + timedelta(minutes=10), None)
        await db.execute(code, "just-used", user, now + timedelta(minutes=10), now - timedelta(hours=1))
        draft = "INSERT INTO reply_drafts (chat_id, user_id, deal_id, expires_at) VALUES ($1, $2, $3, $4)"
        await db.execute(draft, chat, user, deal, now - timedelta(minutes=1))
        await db.execute(draft, chat + 1, user, deal, now + timedelta(minutes=10))
        outbox = (
            "INSERT INTO outbox (event_id, subject, payload, created_at, published_at)"
            " VALUES ($1, 'notifier.test', '{}', $2, $3)"
        )
        await db.execute(outbox, "old-published", days(3), days(3))
        await db.execute(outbox, "recent", now, now)
    return {"chat": chat, "base_update": base}


async def test_retention_tick_prunes_the_old_keeps_what_is_owed_and_reports_counts(
    engine: AsyncEngine, bus: Bus, start_notifier: StartNotifier
) -> None:
    seeded = await seed(engine)
    await start_notifier(notifications_retention_days=30, handled_updates_retention_days=14)

    first = retention_tick("20261207T023000Z")
    await bus.publisher.publish(first, tick_subject(JOB))
    (outcome,) = await eventually(lambda: outcomes(bus), timeout=20)

    assert outcome["job"] == "retention.notifier"
    assert outcome["slot"] == first.data.slot
    assert outcome["status"] == "done"
    assert outcome["counts"] == {
        "notifications": 3,
        "actions": 1,
        "handled_updates": 2,
        "link_codes": 2,
        "reply_drafts": 1,
        "outbox": 1,
        "unfinished": 0,
    }

    async def column(sql: str) -> list[Any]:
        return sorted(next(iter(row.values())) for row in await rows(engine, sql))

    assert await column("SELECT event_id FROM notifications") == ["old-deferred", "old-pending", "recent-sent"]
    assert await column("SELECT command_id FROM actions") == ["old-pending", "recent-rejected"]
    assert await column("SELECT update_id FROM handled_updates") == [seeded["base_update"] + 2]
    assert await column("SELECT code_hash FROM link_codes") == ["just-used", "usable"]
    assert await column("SELECT chat_id FROM reply_drafts") == [seeded["chat"] + 1]
    assert await column("SELECT event_id FROM outbox WHERE subject = 'notifier.test'") == ["recent"]

    # The same tick again, then the next day's: nothing more goes, one outcome per slot.
    await bus.publisher.publish_raw(
        [(tick_subject(JOB), first.model_dump_json().encode(), {"Nats-Msg-Id": first.id + ":again"})]
    )
    second = retention_tick("20261208T023000Z")
    await bus.publisher.publish(second, tick_subject(JOB))

    async def two() -> list[dict[str, Any]] | None:
        found = await outcomes(bus)
        return found if len(found) >= 2 else None

    found = await eventually(two, timeout=20)
    assert [o["slot"] for o in found] == [first.data.slot, second.data.slot]
    assert set(found[1]["counts"].values()) == {0}
    assert await column("SELECT event_id FROM notifications") == ["old-deferred", "old-pending", "recent-sent"]
