"""crm's ``/readyz`` with its dependencies really down: PostgreSQL or NATS down → 503;
Redis down → 200 ``degraded`` (each replica limits logins and sends on its own); and
``jggl_dependency_up`` on ``/metrics`` says which."""

from __future__ import annotations

import asyncio
import subprocess

import httpx
import nats
from fastapi import FastAPI
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy.ext.asyncio import AsyncEngine

from crm.api import create_app
from jggl_common.db import create_engine
from jggl_common.health import dependencies_up
from jggl_common.testing import free_port

from .conftest import api_settings


def _dead_redis() -> Redis:
    return Redis(
        host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2, socket_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )


async def _probe(app: FastAPI) -> tuple[httpx.Response, dict[tuple[str, str], float]]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://crm.test", timeout=10) as client:
            ready = await client.get("/readyz")
            metrics = (await client.get("/metrics")).text
    return ready, dependencies_up(metrics)


async def test_redis_down_is_degraded_not_unready(crm_engine: AsyncEngine, pg_schema: str) -> None:
    redis = _dead_redis()
    try:
        ready, up = await _probe(create_app(api_settings(pg_schema), engine=crm_engine, redis=redis))
    finally:
        await redis.aclose()

    assert ready.status_code == 200
    assert ready.json() == {"status": "degraded", "checks": {"postgres": "ok", "redis": "down"}}
    assert up[("postgres", "true")] == 1
    assert up[("redis", "false")] == 0


async def test_postgres_down_is_not_ready(redis: Redis, pg_schema: str) -> None:
    # The API's own engine, pointed at a port where no PostgreSQL listens.
    closed = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/postgres", pg_schema)
    try:
        ready, up = await _probe(create_app(api_settings(pg_schema), engine=closed, redis=redis))
    finally:
        await closed.dispose()

    assert ready.status_code == 503
    assert ready.json() == {"status": "not ready", "checks": {"postgres": "down", "redis": "ok"}}
    assert up[("postgres", "true")] == 0
    assert up[("redis", "false")] == 1


async def test_nats_is_required_once_crm_has_a_connection(
    crm_engine: AsyncEngine,
    pg_schema: str,
    redis: Redis,
    private_nats: tuple[subprocess.Popen[bytes], int],
) -> None:
    server, port = private_nats
    nc = await nats.connect(f"nats://127.0.0.1:{port}", max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        app = create_app(api_settings(pg_schema), engine=crm_engine, redis=redis, nats=nc)
        ready, up = await _probe(app)
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "checks": {"postgres": "ok", "nats": "ok", "redis": "ok"}}
        assert up[("nats", "true")] == 1

        server.terminate()
        server.wait(10)
        for _ in range(50):  # the client notices the closed socket at once; bounded anyway
            if not nc.is_connected:
                break
            await asyncio.sleep(0.1)
        ready, up = await _probe(app)
        assert ready.status_code == 503
        assert ready.json() == {"status": "not ready", "checks": {"postgres": "ok", "nats": "down", "redis": "ok"}}
        assert up[("nats", "true")] == 0
    finally:
        await nc.close()
