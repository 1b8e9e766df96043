"""The notifier's ``/readyz``: PostgreSQL and NATS are required; Telegram is optional —
unreachable (or no token), notifications wait or are recorded as skipped while the
notifier keeps consuming, so it answers 200 ``degraded`` and
``jggl_dependency_up{dependency="telegram"}`` is 0. ``getMe`` is asked at most once a period."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.health import dependencies_up
from jggl_common.testing import TEST_DATABASE_URL, free_port
from jggl_sandbox.telegram_fake import TelegramFakeServer
from notifier.config import NotifierSettings
from notifier.process import create_app

from .conftest import APP_KEY, APP_URL, TOKEN, Bus


def _settings(pg_schema: str, bus: Bus, **overrides: Any) -> NotifierSettings:
    values: dict[str, Any] = {
        "app_key": APP_KEY,
        "nats_url": bus.url,
        "app_url": APP_URL,
        "database_url": TEST_DATABASE_URL,
        "db_schema": pg_schema,
        "settings_bucket": f"SETTINGS_{pg_schema}",
        **overrides,
    }
    return NotifierSettings(_env_file=None, **values)


async def _probe(app: FastAPI) -> tuple[int, Any, dict[tuple[str, str], float]]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://notifier", timeout=10) as client:
        ready = await client.get("/readyz")
        metrics = (await client.get("/metrics")).text
    return ready.status_code, ready.json(), dependencies_up(metrics)


READY = {"status": "ready", "checks": {"postgres": "ok", "nats": "ok", "telegram": "ok"}}
DEGRADED = {"status": "degraded", "checks": {"postgres": "ok", "nats": "ok", "telegram": "down"}}


async def test_telegram_answering_is_ready_and_asked_once_a_period(
    engine: AsyncEngine, pg_schema: str, bus: Bus, telegram: TelegramFakeServer
) -> None:
    app = create_app(_settings(pg_schema, bus, telegram_bot_token=TOKEN, telegram_api_url=telegram.url))
    async with app.router.lifespan_context(app):
        before = len(telegram.fake.calls("getMe"))
        probes = [await _probe(app) for _ in range(3)]
        assert len(telegram.fake.calls("getMe")) == before + 1
    assert [(code, body) for code, body, _ in probes] == [(200, READY)] * 3
    assert probes[-1][2][("telegram", "false")] == 1


async def test_telegram_going_away_is_degraded_not_unready(
    engine: AsyncEngine, pg_schema: str, bus: Bus, telegram: TelegramFakeServer
) -> None:
    settings = _settings(pg_schema, bus, telegram_bot_token=TOKEN, telegram_api_url=telegram.url)
    app = create_app(settings, telegram_readiness_seconds=0.0)
    async with app.router.lifespan_context(app):
        code, body, _ = await _probe(app)
        assert (code, body) == (200, READY)

        telegram.stop()
        code, body, up = await _probe(app)
        assert (code, body) == (200, DEGRADED)
        assert up[("telegram", "false")] == 0
        assert up[("postgres", "true")] == up[("nats", "true")] == 1


async def test_telegram_at_a_closed_port_or_no_token_is_degraded(engine: AsyncEngine, pg_schema: str, bus: Bus) -> None:
    for overrides in (
        {"telegram_bot_token": TOKEN, "telegram_api_url": f"http://127.0.0.1:{free_port()}"},
        {"telegram_bot_token": ""},
    ):
        app = create_app(_settings(pg_schema, bus, **overrides))
        async with app.router.lifespan_context(app):
            code, body, up = await _probe(app)
        assert (code, body) == (200, DEGRADED), overrides
        assert up[("telegram", "false")] == 0
