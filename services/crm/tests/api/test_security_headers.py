"""Security headers on every answer, HSTS only over TLS, API docs that can be switched off."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from crm.api import create_app
from crm.auth.headers import APP_POLICY, DOCS_POLICY

from ..support import random_address
from .conftest import Api, api_settings

PROXY = "192.0.2.20"


@asynccontextmanager
async def crm(
    pg_schema: str, engine: AsyncEngine, redis: Redis, *, peer: str, base_url: str = "http://crm.test", **settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(api_settings(pg_schema, **settings), engine=engine, redis=redis)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(peer, 40000))
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


def _assert_protected(response: httpx.Response) -> None:
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert "script-src 'self'" in policy
    assert "'unsafe-inline'" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_every_answer_carries_the_headers_and_no_hsts_over_plain_http(api: Api, tmp_path: Path) -> None:
    for path in ("/api/me", "/healthz", "/api/no-such-thing"):
        response = await api.client.get(path)
        _assert_protected(response)
        assert response.headers["content-security-policy"] == APP_POLICY
        assert "strict-transport-security" not in response.headers
    login = await api.client.post("/api/auth/login", json={"email": "x@example.test", "password": "wrong password"})
    _assert_protected(login)


async def test_the_web_app_is_served_with_its_policy(
    pg_schema: str, crm_engine: AsyncEngine, redis: Redis, tmp_path: Path
) -> None:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text(
        '<!doctype html><script type="module" src="/assets/index.js"></script><div id="root"></div>'
    )
    (tmp_path / "assets" / "index.js").write_text("console.log('app')")
    async with crm(pg_schema, crm_engine, redis, peer=random_address(), web_dist=str(tmp_path)) as client:
        for path in ("/", "/deals/42", "/assets/index.js"):
            response = await client.get(path)
            assert response.status_code == 200, path
            _assert_protected(response)


async def test_hsts_when_the_request_came_over_tls(pg_schema: str, crm_engine: AsyncEngine, redis: Redis) -> None:
    https = {"X-Forwarded-Proto": "https"}
    # Directly over TLS.
    async with crm(pg_schema, crm_engine, redis, peer=random_address(), base_url="https://crm.test") as client:
        assert (await client.get("/healthz")).headers["strict-transport-security"] == "max-age=31536000"
    # Through a trusted proxy that terminated TLS.
    async with crm(pg_schema, crm_engine, redis, peer=PROXY, forwarded_allow_ips=PROXY) as client:
        assert (await client.get("/healthz", headers=https)).headers["strict-transport-security"] == "max-age=31536000"
        assert "strict-transport-security" not in (await client.get("/healthz")).headers
    # A client claiming TLS it did not use gets none.
    async with crm(pg_schema, crm_engine, redis, peer=random_address(), forwarded_allow_ips=PROXY) as client:
        assert "strict-transport-security" not in (await client.get("/healthz", headers=https)).headers
    # Switched off.
    async with crm(
        pg_schema, crm_engine, redis, peer=random_address(), base_url="https://crm.test", hsts_max_age_seconds=0
    ) as client:
        assert "strict-transport-security" not in (await client.get("/healthz")).headers


async def test_api_docs_are_on_by_default_and_can_be_switched_off(
    pg_schema: str, crm_engine: AsyncEngine, redis: Redis
) -> None:
    async with crm(pg_schema, crm_engine, redis, peer=random_address()) as client:
        docs = await client.get("/docs")
        assert docs.status_code == 200
        assert "swagger" in docs.text.lower()
        assert docs.headers["content-security-policy"] == DOCS_POLICY
        assert "frame-ancestors 'none'" in DOCS_POLICY
        assert (await client.get("/openapi.json")).json()["info"]["title"] == "JGGL CRM"
    async with crm(pg_schema, crm_engine, redis, peer=random_address(), api_docs=False) as client:
        for path in ("/docs", "/redoc", "/openapi.json"):
            response = await client.get(path)
            assert "swagger" not in response.text.lower(), path
            assert "redoc" not in response.text.lower(), path
            assert '"openapi"' not in response.text, path
            _assert_protected(response)
        # The API itself is unchanged.
        assert (await client.get("/api/me")).status_code == 401
