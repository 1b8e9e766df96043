"""The notifier's ``/readyz``: PostgreSQL and NATS are required; Telegram is optional —
unreachable (or no token), notifications wait or are recorded as skipped while the
notifier keeps consuming, so it answers 200 ``degraded`` and
``jggl_dependency_up{dependency="telegram"}`` is 0. ``getMe`` is asked at most once a period."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.testing import TEST_DATABASE_URL, free_port, probe_readiness, readiness_across_nats_restart
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


READY = {"status": "ready", "checks": {"postgres": "ok", "nats": "ok", "telegram": "ok"}}
DEGRADED = {"status": "degraded", "checks": {"postgres": "ok", "nats": "ok", "telegram": "down"}}


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


async def test_telegram_at_a_closed_port_or_no_token_is_degraded(engine: AsyncEngine, pg_schema: str, bus: Bus) -> None:
    for overrides in (
        {"telegram_bot_token": TOKEN, "telegram_api_url": f"http://127.0.0.1:{free_port()}"},
        {"telegram_bot_token": ""},
    ):
        app = create_app(_settings(pg_schema, bus, **overrides))
        async with app.router.lifespan_context(app):
            code, body, up = await probe_readiness(app)
        assert (code, body) == (200, DEGRADED), overrides
        assert up[("telegram", "false")] == 0


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
