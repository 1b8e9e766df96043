"""The scheduler's ``/readyz``: PostgreSQL (migrated) and NATS are both required; either
down answers 503 and ``jggl_dependency_up`` says which."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.testing import probe_readiness, readiness_across_nats_restart
from scheduler.process import create_app

from .conftest import Bus, scheduler_settings


async def test_not_ready_while_nats_is_down_and_ready_again_once_it_is_back(
    engine: AsyncEngine,
    pg_schema: str,
    bus: Bus,
    private_nats: tuple[subprocess.Popen[bytes], int],
    tmp_path: Path,
) -> None:
    app = create_app(scheduler_settings(pg_schema, bus))
    # The same server back on the same port: the connection comes back by itself.
    started, down, back = await readiness_across_nats_restart(app, private_nats, tmp_path / "js")
    ready = {"status": "ready", "checks": {"postgres": "ok", "nats": "ok"}}
    assert started[:2] == back[:2] == (200, ready)
    assert down[:2] == (503, {"status": "not ready", "checks": {"postgres": "ok", "nats": "down"}})
    assert [up[("nats", "true")] for _, _, up in (started, down, back)] == [1, 0, 1]
    assert [up[("postgres", "true")] for _, _, up in (started, down, back)] == [1, 1, 1]


async def test_a_schema_behind_its_migrations_is_not_ready(engine: AsyncEngine, pg_schema: str, bus: Bus) -> None:
    app = create_app(scheduler_settings(pg_schema, bus))
    async with app.router.lifespan_context(app):
        async with engine.begin() as conn:  # as if a newer release's migration were not applied yet
            await conn.execute(text(f"UPDATE \"{pg_schema}\".alembic_version SET version_num = '0000_not_applied'"))
        code, body, up = await probe_readiness(app)
        assert (code, body) == (503, {"status": "not ready", "checks": {"postgres": "down", "nats": "ok"}})
        assert up[("postgres", "true")] == 0
