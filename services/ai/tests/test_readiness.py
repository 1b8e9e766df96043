"""ai's ``/readyz``: PostgreSQL and NATS are required; Gemini is optional — while it cannot
answer (its circuit breaker is open) analyses are heuristic, ai stays ready and answers
``degraded``, and ``jggl_dependency_up{dependency="gemini"}`` is 0. Without a key, or with
analyses switched off, Gemini is ``disabled``: ai is ``ready``, ``jggl_dependency_up`` has
no Gemini sample and ``jggl_dependency_enabled`` reads 0; the live settings switch it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from ai.process import create_app
from jggl_common.health import DEPENDENCY_ENABLED
from jggl_common.live_settings import LiveSettings
from jggl_common.testing import free_port, probe_readiness, readiness_across_nats_restart
from jggl_sandbox.gemini_fake import GeminiFakeServer

from .conftest import APP_KEY, Bus, ai_settings, eventually, minutes_ago, next_id, received, rows


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


DISABLED = {"status": "ready", "checks": {"postgres": "ok", "nats": "ok", "gemini": "disabled"}}


def _gemini_enabled() -> float | None:
    return REGISTRY.get_sample_value(DEPENDENCY_ENABLED, {"dependency": "gemini", "required": "false"})


async def test_no_gemini_key_or_ai_switched_off_is_disabled_and_ready(
    ai_engine: AsyncEngine, pg_schema: str, bus: Bus, gemini: GeminiFakeServer
) -> None:
    for settings in (ai_settings(pg_schema, bus, None), ai_settings(pg_schema, bus, gemini, ai_enabled=False)):
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            code, body, up = await probe_readiness(app)
        assert (code, body) == (200, DISABLED), settings.ai_enabled
        assert ("gemini", "false") not in up  # nothing for JgglServiceDegraded to fire on
        assert up[("postgres", "true")] == up[("nats", "true")] == 1
        assert _gemini_enabled() == 0


async def test_a_live_key_switches_gemini_on_and_its_removal_off(
    ai_engine: AsyncEngine, pg_schema: str, bus: Bus, gemini: GeminiFakeServer
) -> None:
    settings = ai_settings(pg_schema, bus, None, gemini_base_url=gemini.url)
    app = create_app(settings)
    live = LiveSettings(bus.nc, APP_KEY, settings.settings_bucket)
    async with app.router.lifespan_context(app):
        assert (await probe_readiness(app))[:2] == (200, DISABLED)

        await live.put("gemini.api_key", "test-key", secret=True)
        body, up = await _readiness_until(app, "ok")
        assert body == {"status": "ready", "checks": {"postgres": "ok", "nats": "ok", "gemini": "ok"}}
        assert (up[("gemini", "false")], _gemini_enabled()) == (1, 1)

        await live.put("gemini.api_key", "", secret=True)
        body, up = await _readiness_until(app, "disabled")
        assert body == DISABLED
        assert ("gemini", "false") not in up
        assert _gemini_enabled() == 0


async def _readiness_until(app: FastAPI, gemini: str) -> tuple[Any, dict[tuple[str, str], float]]:
    """``/readyz`` and the gauge once ``/readyz`` names Gemini ``gemini`` (live settings take moments)."""

    async def named() -> tuple[Any, dict[tuple[str, str], float]] | None:
        _, body, up = await probe_readiness(app)
        return (body, up) if body["checks"]["gemini"] == gemini else None

    result: tuple[Any, dict[tuple[str, str], float]] = await eventually(named)
    return result


async def test_nats_down_is_not_ready_and_back_is_ready_again(
    ai_engine: AsyncEngine,
    pg_schema: str,
    bus: Bus,
    private_nats: tuple[subprocess.Popen[bytes], int],
    tmp_path: Path,
) -> None:
    app = create_app(ai_settings(pg_schema, bus, None))
    started, down, back = await readiness_across_nats_restart(app, private_nats, tmp_path / "js")
    assert started[:2] == (200, DISABLED)
    _, body, up = down
    assert body == {"status": "not ready", "checks": {"postgres": "ok", "nats": "down", "gemini": "disabled"}}
    assert up[("nats", "true")] == 0
    _, body, up = back
    assert body["checks"]["nats"] == "ok"
    assert up[("nats", "true")] == 1
