"""The scheduler's ``/readyz``: PostgreSQL (migrated) and NATS are both required; either
down answers 503 and ``jggl_dependency_up`` says which."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.testing import probe_readiness, start_nats_server
from scheduler.process import create_app

from .conftest import Bus, scheduler_settings


async def test_not_ready_while_nats_is_down_and_ready_again_once_it_is_back(
    engine: AsyncEngine,
    pg_schema: str,
    bus: Bus,
    private_nats: tuple[subprocess.Popen[bytes], int],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    app = create_app(scheduler_settings(pg_schema, bus))
    restarted: list[subprocess.Popen[bytes]] = []

    def stop_restarted() -> None:
        for process in restarted:
            process.terminate()
            process.wait(10)

    request.addfinalizer(stop_restarted)
    async with app.router.lifespan_context(app):
        code, body, up = await probe_readiness(app)
        assert (code, body) == (200, {"status": "ready", "checks": {"postgres": "ok", "nats": "ok"}})
        assert up[("postgres", "true")] == up[("nats", "true")] == 1

        server, port = private_nats
        server.terminate()
        server.wait(10)
        for _ in range(50):  # bounded: the client sees the closed socket within moments
            code, body, up = await probe_readiness(app)
            if code == 503:
                break
            await asyncio.sleep(0.1)
        assert (code, body) == (503, {"status": "not ready", "checks": {"postgres": "ok", "nats": "down"}})
        assert up[("nats", "true")] == 0

        # The same server back on the same port: the connection comes back by itself.
        restarted.append(start_nats_server(tmp_path / "js", port)[0])
        for _ in range(100):
            code, body, up = await probe_readiness(app)
            if code == 200:
                break
            await asyncio.sleep(0.1)
        assert (code, body) == (200, {"status": "ready", "checks": {"postgres": "ok", "nats": "ok"}})
        assert up[("nats", "true")] == 1


async def test_a_schema_behind_its_migrations_is_not_ready(engine: AsyncEngine, pg_schema: str, bus: Bus) -> None:
    app = create_app(scheduler_settings(pg_schema, bus))
    async with app.router.lifespan_context(app):
        async with engine.begin() as conn:  # as if a newer release's migration were not applied yet
            await conn.execute(text(f"UPDATE \"{pg_schema}\".alembic_version SET version_num = '0000_not_applied'"))
        code, body, up = await probe_readiness(app)
        assert (code, body) == (503, {"status": "not ready", "checks": {"postgres": "down", "nats": "ok"}})
        assert up[("postgres", "true")] == 0
