"""The composition root: lifespan extras, health, correlation ids, error shapes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from crm.api import create_app
from crm.web.state import CrmState

from .conftest import Api, api_settings


async def test_lifespan_extras_run_inside_the_app_lifespan_in_order(
    crm_engine: AsyncEngine, redis: Redis, pg_schema: str
) -> None:
    journal: list[str] = []

    def extra(name: str):
        @asynccontextmanager
        async def run(app: FastAPI) -> AsyncIterator[None]:
            state: CrmState = app.state.crm
            assert state.sessions is not None
            journal.append(f"start {name}")
            yield
            journal.append(f"stop {name}")

        return run

    app = create_app(api_settings(pg_schema), engine=crm_engine, redis=redis, lifespan_extras=[extra("a"), extra("b")])
    async with app.router.lifespan_context(app):
        assert journal == ["start a", "start b"]
    assert journal == ["start a", "start b", "stop b", "stop a"]
    # The engine and Redis were the caller's: still usable after the app stopped.
    assert await redis.ping()
    async with crm_engine.connect():
        pass


async def test_health_correlation_and_docs(api: Api) -> None:
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}
    assert (await api.client.get("/healthz")).status_code == 200
    response = await api.client.get("/api/me", headers={"X-Correlation-ID": "trace-me"})
    assert response.status_code == 401
    assert response.headers["X-Correlation-ID"] == "trace-me"
    assert response.json() == {"detail": "Not authenticated"}
    schema = (await api.client.get("/openapi.json")).json()
    deals = schema["paths"]["/api/deals"]["get"]
    assert deals["summary"] == "List deals"
    assert deals["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/DealPage")
    assert "401" in deals["responses"]
    assert (await api.client.get("/docs")).status_code == 200


async def test_malformed_bodies_are_4xx(api: Api) -> None:
    for content in (b"{", b"[]", b'{"email": 1}', b"\xff\xfe"):
        response = await api.client.post(
            "/api/auth/login", content=content, headers={"Content-Type": "application/json"}
        )
        assert 400 <= response.status_code < 500, content
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://crm.test") as client:
        response = await client.post("/api/auth/login", json={"email": "a\x00b@x", "password": "whatever1"})
        assert response.status_code == 422
