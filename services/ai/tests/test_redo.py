"""The scheduler's ``ai.redo``: a conversation left heuristic after Gemini kept failing gets
its Gemini analysis once Gemini is healthy and the job ticks; the outcome goes back."""

from __future__ import annotations

import json
from typing import Any

from jggl_common.contracts import SchedulerTick, SchedulerTickData, tick_id, tick_subject, utcnow
from jggl_sandbox.gemini_fake import GeminiFakeServer

from .conftest import Bus, StartAi, eventually, minutes_ago, next_id, received, rows


def redo_tick(slot: str) -> SchedulerTick:
    now = utcnow()
    return SchedulerTick(
        id=tick_id("ai.redo", slot),
        producer="scheduler",
        data=SchedulerTickData(job="ai.redo", slot=slot, scheduled_for=now, fired_at=now),
    )


async def outcomes(bus: Bus) -> list[dict[str, Any]]:
    info = await bus.js.stream_info("AI")
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await bus.js.get_msg("AI", seq)
        if msg.subject == "ai.job.finished":
            found.append(json.loads(msg.data)["data"])
    return found


async def test_a_tick_sends_what_stayed_heuristic_back_to_a_healthy_gemini(
    ai_engine, bus: Bus, gemini: GeminiFakeServer, start_ai: StartAi
):
    gemini.fail_next("invalid_json", -1)
    await start_ai(ai_max_attempts=1, ai_breaker_cooldown_seconds=0.2, ai_breaker_failures=100)
    conversation = next_id()
    await bus.publish([received(conversation, conversation, "Do you have it in red?", minutes_ago(1))])

    async def given_up() -> list[dict[str, Any]]:
        return [e for e in await bus.ai_events("failed") if not e["data"]["will_retry"]]

    await eventually(given_up, timeout=20)
    # ...and its claim released, owed nothing more: left heuristic for good.
    settled = "SELECT 1 FROM transcripts WHERE conversation_id = $1 AND due_at IS NULL AND claimed_by IS NULL"
    await eventually(lambda: rows(ai_engine, settled, conversation), timeout=20)
    gemini.clear_faults()
    await bus.publisher.publish(redo_tick("20261206T120000Z"), tick_subject("ai.redo"))

    async def by_gemini() -> list[dict[str, Any]]:
        return await rows(
            ai_engine,
            "SELECT version FROM analyses WHERE conversation_id = $1 AND provider = 'gemini' AND status = 'completed'",
            conversation,
        )

    assert await eventually(by_gemini, timeout=20) == [{"version": 1}]
    (first,) = await eventually(lambda: outcomes(bus))
    assert first["job"] == "ai.redo"
    assert first["slot"] == "20261206T120000Z"
    assert first["status"] == "done"
    assert first["counts"] == {"requeued": 1, "gemini_available": 1}
    # The next tick finds nothing left to redo.
    await bus.publisher.publish(redo_tick("20261206T123000Z"), tick_subject("ai.redo"))
    _, second = await eventually(lambda: _two(bus))
    assert second["counts"] == {"requeued": 0, "gemini_available": 1}


async def _two(bus: Bus) -> list[dict[str, Any]] | None:
    found = await outcomes(bus)
    return found if len(found) >= 2 else None


async def test_without_a_gemini_key_the_tick_requeues_nothing(ai_engine, bus: Bus, gemini, start_ai: StartAi):
    await start_ai(with_gemini=False)
    conversation = next_id()
    await bus.publish([received(conversation, conversation, "Hello", minutes_ago(1))])
    await eventually(
        lambda: rows(ai_engine, "SELECT 1 FROM analyses WHERE conversation_id = $1", conversation), timeout=20
    )
    await bus.publisher.publish(redo_tick("20261206T130000Z"), tick_subject("ai.redo"))
    (outcome,) = await eventually(lambda: outcomes(bus))
    assert outcome["counts"] == {"requeued": 0, "gemini_available": 0}
    (transcript,) = await rows(ai_engine, "SELECT due_at FROM transcripts WHERE conversation_id = $1", conversation)
    assert transcript["due_at"] is None
