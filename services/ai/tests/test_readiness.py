"""ai's ``/readyz``: PostgreSQL and NATS are required; Gemini is optional — while it cannot
answer (no key, or its circuit breaker is open) analyses are heuristic, ai stays ready and
answers ``degraded``, and ``jggl_dependency_up{dependency="gemini"}`` is 0."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import httpx
import nats
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from ai.process import create_app
from jggl_common.health import dependencies_up
from jggl_common.streams import ensure_streams
from jggl_common.testing import free_port, start_nats_server
from jggl_sandbox.gemini_fake import GeminiFakeServer

from .conftest import Bus, ai_settings, eventually, minutes_ago, next_id, received, rows


async def _probe(app: FastAPI) -> tuple[int, Any, dict[tuple[str, str], float]]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ai") as client:
        ready = await client.get("/readyz")
        metrics = (await client.get("/metrics")).text
    return ready.status_code, ready.json(), dependencies_up(metrics)


async def test_ready_with_gemini_answering(
    ai_engine: AsyncEngine, pg_schema: str, bus: Bus, gemini: GeminiFakeServer
) -> None:
    app = create_app(ai_settings(pg_schema, bus, gemini))
    async with app.router.lifespan_context(app):
        code, body, up = await _probe(app)
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
        code, body, _ = await _probe(app)
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

        code, body, up = await _probe(app)
    assert (code, body) == (200, {"status": "degraded", "checks": {"postgres": "ok", "nats": "ok", "gemini": "down"}})
    assert up[("gemini", "false")] == 0
    assert up[("postgres", "true")] == up[("nats", "true")] == 1


async def test_no_gemini_key_is_degraded_not_unready(ai_engine: AsyncEngine, pg_schema: str, bus: Bus) -> None:
    app = create_app(ai_settings(pg_schema, bus, None))
    async with app.router.lifespan_context(app):
        code, body, up = await _probe(app)
    assert (code, body) == (200, {"status": "degraded", "checks": {"postgres": "ok", "nats": "ok", "gemini": "down"}})
    assert up[("gemini", "false")] == 0


async def test_nats_down_is_not_ready_and_back_is_ready_again(
    ai_engine: AsyncEngine,
    pg_schema: str,
    private_nats: tuple[subprocess.Popen[bytes], int],
    tmp_path: Path,
) -> None:
    server, port = private_nats
    nc = await nats.connect(f"nats://127.0.0.1:{port}", max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    await ensure_streams(nc.jetstream())
    restarted: list[subprocess.Popen[bytes]] = []
    app = create_app(ai_settings(pg_schema, Bus(f"nats://127.0.0.1:{port}", nc), None))
    try:
        async with app.router.lifespan_context(app):
            server.terminate()
            server.wait(10)
            body, up = await _until(app, 503)
            assert body == {"status": "not ready", "checks": {"postgres": "ok", "nats": "down", "gemini": "down"}}
            assert up[("nats", "true")] == 0

            restarted.append(start_nats_server(tmp_path / "js", port)[0])
            body, up = await _until(app, 200)
            assert body["checks"]["nats"] == "ok"
            assert up[("nats", "true")] == 1
    finally:
        await nc.close()
        for process in restarted:
            process.terminate()
            process.wait(10)


async def _until(app: FastAPI, status: int) -> tuple[Any, dict[tuple[str, str], float]]:
    """Probe until ``/readyz`` answers ``status`` (bounded: the client notices within moments)."""
    for _ in range(100):
        code, body, up = await _probe(app)
        if code == status:
            return body, up
        await asyncio.sleep(0.1)
    raise AssertionError(f"/readyz never answered {status}; last {code} {body}")
