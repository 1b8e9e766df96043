"""ai's ``/readyz``: PostgreSQL and NATS are required; Gemini is optional — while it cannot
answer (no key, or its circuit breaker is open) analyses are heuristic, ai stays ready and
answers ``degraded``, and ``jggl_dependency_up{dependency="gemini"}`` is 0."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from ai.process import create_app
from jggl_common.testing import free_port, probe_readiness, readiness_across_nats_restart
from jggl_sandbox.gemini_fake import GeminiFakeServer

from .conftest import Bus, ai_settings, eventually, minutes_ago, next_id, received, rows


async def test_ready_with_gemini_answering(
    ai_engine: AsyncEngine, pg_schema: str, bus: Bus, gemini: GeminiFakeServer
) -> None:
    app = create_app(ai_settings(pg_schema, bus, gemini))
    async with app.router.lifespan_context(app):
        code, body, up = await probe_readiness(app)
    assert (code, body) == (200, {"status": "ready", "checks": {"postgres": "ok", "nats": "ok", "gemini": "ok"}})
    assert up[("gemini", "false")] == up[("postgres", "true")] == up[("nats", "true")] == 1


async def test_gemini_unreachable_is_degraded_and_analyses_go_on_heuristically(
    ai_engine: AsyncEngine, pg_schema: str, bus: Bus
) -> None:
    settings = ai_settings(
        pg_schema,
        bus,
        None,
        gemini_api_key="test-key",
        gemini_base_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        ai_breaker_failures=1,
        ai_breaker_cooldown_seconds=300.0,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        code, body, _ = await probe_readiness(app)
        assert (code, body["checks"]["gemini"]) == (200, "ok")  # nothing has failed yet

        conversation = next_id()
        await bus.publish([received(conversation, conversation, "How much is delivery?", minutes_ago(1))])
        (analysis,) = await eventually(
            lambda: rows(
                ai_engine,
                "SELECT provider FROM analyses WHERE conversation_id = $1 AND status = 'completed'",
                conversation,
            )
        )
        assert analysis == {"provider": "heuristic"}

        code, body, up = await probe_readiness(app)
    assert (code, body) == (200, {"status": "degraded", "checks": {"postgres": "ok", "nats": "ok", "gemini": "down"}})
    assert up[("gemini", "false")] == 0
    assert up[("postgres", "true")] == up[("nats", "true")] == 1


async def test_no_gemini_key_is_degraded_not_unready(ai_engine: AsyncEngine, pg_schema: str, bus: Bus) -> None:
    app = create_app(ai_settings(pg_schema, bus, None))
    async with app.router.lifespan_context(app):
        code, body, up = await probe_readiness(app)
    assert (code, body) == (200, {"status": "degraded", "checks": {"postgres": "ok", "nats": "ok", "gemini": "down"}})
    assert up[("gemini", "false")] == 0


async def test_nats_down_is_not_ready_and_back_is_ready_again(
    ai_engine: AsyncEngine,
    pg_schema: str,
    bus: Bus,
    private_nats: tuple[subprocess.Popen[bytes], int],
    tmp_path: Path,
) -> None:
    app = create_app(ai_settings(pg_schema, bus, None))
    started, down, back = await readiness_across_nats_restart(app, private_nats, tmp_path / "js")
    assert started[:2] == (200, {"status": "degraded", "checks": {"postgres": "ok", "nats": "ok", "gemini": "down"}})
    _, body, up = down
    assert body == {"status": "not ready", "checks": {"postgres": "ok", "nats": "down", "gemini": "down"}}
    assert up[("nats", "true")] == 0
    _, body, up = back
    assert body["checks"]["nats"] == "ok"
    assert up[("nats", "true")] == 1
