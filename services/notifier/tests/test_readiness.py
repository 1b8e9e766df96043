"""The notifier's ``/readyz``: PostgreSQL and NATS are required; Telegram is optional —
unreachable, notifications wait or are recorded as skipped while the notifier keeps
consuming, so it answers 200 ``degraded`` and ``jggl_dependency_up{dependency="telegram"}``
is 0. ``getMe`` is asked at most once a period. Without a bot token Telegram is
``disabled``: the notifier is ``ready``, ``jggl_dependency_up`` has no Telegram sample and
``jggl_dependency_enabled`` reads 0; the live ``telegram.bot_token`` switches it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.health import DEPENDENCY_ENABLED
from jggl_common.live_settings import LiveSettings
from jggl_common.testing import TEST_DATABASE_URL, free_port, probe_readiness, readiness_across_nats_restart
from jggl_sandbox.telegram_fake import TelegramFakeServer
from notifier.config import NotifierSettings
from notifier.process import create_app

from .conftest import APP_KEY, APP_URL, TOKEN, Bus, eventually


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


READY = {"status": "ready", "checks": {"postgres": "ok", "nats": "ok", "telegram": "ok"}}
DEGRADED = {"status": "degraded", "checks": {"postgres": "ok", "nats": "ok", "telegram": "down"}}
DISABLED = {"status": "ready", "checks": {"postgres": "ok", "nats": "ok", "telegram": "disabled"}}


async def test_telegram_answering_is_ready_and_asked_once_a_period(
    engine: AsyncEngine, pg_schema: str, bus: Bus, telegram: TelegramFakeServer
) -> None:
    app = create_app(_settings(pg_schema, bus, telegram_bot_token=TOKEN, telegram_api_url=telegram.url))
    async with app.router.lifespan_context(app):
        before = len(telegram.fake.calls("getMe"))
        probes = [await probe_readiness(app) for _ in range(3)]
        assert len(telegram.fake.calls("getMe")) == before + 1
    assert [(code, body) for code, body, _ in probes] == [(200, READY)] * 3
    assert probes[-1][2][("telegram", "false")] == 1


async def test_telegram_going_away_is_degraded_not_unready(
    engine: AsyncEngine, pg_schema: str, bus: Bus, telegram: TelegramFakeServer
) -> None:
    settings = _settings(pg_schema, bus, telegram_bot_token=TOKEN, telegram_api_url=telegram.url)
    app = create_app(settings, telegram_readiness_seconds=0.0)
    async with app.router.lifespan_context(app):
        code, body, _ = await probe_readiness(app)
        assert (code, body) == (200, READY)

        telegram.stop()
        code, body, up = await probe_readiness(app)
        assert (code, body) == (200, DEGRADED)
        assert up[("telegram", "false")] == 0
        assert up[("postgres", "true")] == up[("nats", "true")] == 1


async def test_telegram_at_a_closed_port_is_degraded(engine: AsyncEngine, pg_schema: str, bus: Bus) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    app = create_app(_settings(pg_schema, bus, telegram_bot_token=TOKEN, telegram_api_url=closed))
    async with app.router.lifespan_context(app):
        code, body, up = await probe_readiness(app)
    assert (code, body) == (200, DEGRADED)
    assert up[("telegram", "false")] == 0
    assert _telegram_enabled() == 1


async def test_no_token_is_disabled_and_ready(engine: AsyncEngine, pg_schema: str, bus: Bus) -> None:
    app = create_app(_settings(pg_schema, bus, telegram_bot_token=""))
    async with app.router.lifespan_context(app):
        code, body, up = await probe_readiness(app)
    assert (code, body) == (200, DISABLED)
    assert ("telegram", "false") not in up  # nothing for JgglServiceDegraded to fire on
    assert up[("postgres", "true")] == up[("nats", "true")] == 1
    assert _telegram_enabled() == 0


async def test_a_live_token_switches_telegram_on_and_its_removal_off(
    engine: AsyncEngine, pg_schema: str, bus: Bus, telegram: TelegramFakeServer
) -> None:
    settings = _settings(pg_schema, bus, telegram_bot_token="", telegram_api_url=telegram.url)
    app = create_app(settings, telegram_readiness_seconds=0.0)
    live = LiveSettings(bus.nc, APP_KEY, settings.settings_bucket)
    async with app.router.lifespan_context(app):
        assert (await probe_readiness(app))[:2] == (200, DISABLED)

        # Configured, yet aiogram refuses the token (no bot): a real problem, not "disabled".
        await live.put("telegram.bot_token", "not a token", secret=True)
        _, up = await _readiness_until(app, DEGRADED)
        assert (up[("telegram", "false")], _telegram_enabled()) == (0, 1)

        await live.put("telegram.bot_token", TOKEN, secret=True)
        _, up = await _readiness_until(app, READY)
        assert (up[("telegram", "false")], _telegram_enabled()) == (1, 1)

        await live.put("telegram.bot_token", "", secret=True)
        _, up = await _readiness_until(app, DISABLED)
        assert ("telegram", "false") not in up
        assert _telegram_enabled() == 0


def _telegram_enabled() -> float | None:
    return REGISTRY.get_sample_value(DEPENDENCY_ENABLED, {"dependency": "telegram", "required": "false"})


async def _readiness_until(app: FastAPI, wanted: dict[str, Any]) -> tuple[Any, dict[tuple[str, str], float]]:
    """``/readyz`` and the gauge once ``/readyz`` answers ``wanted`` (live settings take moments)."""

    async def answered() -> tuple[Any, dict[tuple[str, str], float]] | None:
        _, body, up = await probe_readiness(app)
        return (body, up) if body == wanted else None

    result: tuple[Any, dict[tuple[str, str], float]] = await eventually(answered)
    return result


async def test_nats_down_is_not_ready_and_back_is_ready_again(
    engine: AsyncEngine,
    pg_schema: str,
    bus: Bus,
    telegram: TelegramFakeServer,
    private_nats: tuple[subprocess.Popen[bytes], int],
    tmp_path: Path,
) -> None:
    app = create_app(_settings(pg_schema, bus, telegram_bot_token=TOKEN, telegram_api_url=telegram.url))
    started, down, back = await readiness_across_nats_restart(app, private_nats, tmp_path / "js")
    assert started[:2] == (200, READY)
    _, body, up = down
    assert body == {"status": "not ready", "checks": {"postgres": "ok", "nats": "down", "telegram": "ok"}}
    assert up[("nats", "true")] == 0
    _, body, up = back
    assert body == READY
    assert up[("nats", "true")] == 1
