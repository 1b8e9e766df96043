"""Logging in, tokens, throttling and the first admin."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlmodel import col

from crm.api import create_app
from crm.models import User
from jggl_common.contracts import utcnow
from jggl_common.db import session_scope
from jggl_common.testing import free_port

from ..support import random_address
from .conftest import Api, api_settings
from .factories import PASSWORD, create_user, unique_email


async def test_login_returns_a_token_that_opens_me(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        user = await create_user(session, email=unique_email("Mixed.Case"))
    response = await api.client.post(
        "/api/auth/login", json={"email": f"  {user.email.upper()} ", "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == api.state.settings.token_ttl_seconds
    me = await api.client.get("/api/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["id"] == user.id
    assert me.json()["role"] == "manager"
    assert "password_hash" not in me.json()


async def test_wrong_password_and_unknown_email_get_the_same_401(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        user = await create_user(session)
    wrong = await api.client.post("/api/auth/login", json={"email": user.email, "password": "not the password"})
    unknown = await api.client.post("/api/auth/login", json={"email": unique_email(), "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "Incorrect e-mail or password"}


async def test_repeated_wrong_attempts_are_throttled_with_retry_after(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        user = await create_user(session)
    limit = api.state.settings.login_attempts_per_15_min
    for _ in range(limit):
        response = await api.client.post("/api/auth/login", json={"email": user.email, "password": "wrong guess"})
        assert response.status_code == 401
    throttled = await api.client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert throttled.status_code == 429
    assert 0 < int(throttled.headers["Retry-After"]) <= 15 * 60
    assert "detail" in throttled.json()


async def test_the_limit_also_applies_per_client_address(api: Api) -> None:
    limit = api.state.settings.login_attempts_per_15_min
    statuses = [
        (await api.client.post("/api/auth/login", json={"email": unique_email(), "password": "x" * 8})).status_code
        for _ in range(limit + 1)
    ]
    assert statuses == [401] * limit + [429]


async def test_successful_logins_do_not_use_up_the_limit(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        user = await create_user(session)
    for _ in range(api.state.settings.login_attempts_per_15_min + 2):
        response = await api.client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
        assert response.status_code == 200


async def test_expired_garbage_and_missing_tokens_are_401(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        user = await create_user(session)
    assert user.id is not None
    tokens = api.state.tokens
    expired = tokens.issue(user.id, user.password_hash, now=utcnow() - timedelta(seconds=tokens.ttl_seconds + 5))
    for headers in (
        {"Authorization": f"Bearer {expired}"},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Bearer " + expired[:-4] + "AAAA"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {},
    ):
        response = await api.client.get("/api/me", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert isinstance(response.json()["detail"], str)


async def test_a_deactivated_users_token_stops_working_and_they_cannot_log_in(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        manager = await create_user(session)
    headers = api.headers(manager)
    assert (await api.client.get("/api/me", headers=headers)).status_code == 200
    response = await api.client.patch(f"/api/users/{manager.id}", json={"is_active": False}, headers=api.headers(admin))
    assert response.status_code == 200
    assert (await api.client.get("/api/me", headers=headers)).status_code == 401
    login = await api.client.post("/api/auth/login", json={"email": manager.email, "password": PASSWORD})
    assert login.status_code == 401


async def test_a_new_password_ends_sessions_opened_with_the_old_one(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        manager = await create_user(session)
    old = api.headers(manager)
    response = await api.client.patch(
        f"/api/users/{manager.id}", json={"password": "a brand new secret"}, headers=api.headers(admin)
    )
    assert response.status_code == 200
    assert (await api.client.get("/api/me", headers=old)).status_code == 401
    login = await api.client.post("/api/auth/login", json={"email": manager.email, "password": "a brand new secret"})
    assert login.status_code == 200


async def test_login_keeps_working_and_throttling_when_redis_is_down(
    crm_engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], pg_schema: str
) -> None:
    dead_redis = Redis(
        host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2, socket_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    app = create_app(api_settings(pg_schema, login_attempts_per_15_min=3), engine=crm_engine, redis=dead_redis)
    async with session_scope(sessions) as session:
        user = await create_user(session)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(random_address(), 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://crm.test") as client:
            ok = await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
            assert ok.status_code == 200
            statuses = [
                (await client.post("/api/auth/login", json={"email": user.email, "password": "wrong!!!"})).status_code
                for _ in range(4)
            ]
            assert statuses == [401, 401, 401, 429]
            ready = await client.get("/readyz")
            # Logins still work without Redis: the API stays ready, degraded.
            assert ready.status_code == 200
            assert ready.json() == {"status": "degraded", "checks": {"postgres": "ok", "redis": "down"}}
    await dead_redis.aclose()


async def test_first_admin_is_created_once_from_the_environment(
    crm_engine: AsyncEngine, redis: Redis, sessions: async_sessionmaker[AsyncSession], pg_schema: str
) -> None:
    email = unique_email("first-admin")
    settings = api_settings(pg_schema, admin_email=email.upper(), admin_password="first admin secret")

    async def admins() -> int:
        async with sessions() as session:
            count = await session.scalar(select(func.count()).select_from(User).where(col(User.email) == email))
            return int(count or 0)

    # Two replicas starting at the same time.
    first, second = (
        create_app(settings, engine=crm_engine, redis=redis),
        create_app(settings, engine=crm_engine, redis=redis),
    )
    async with first.router.lifespan_context(first), second.router.lifespan_context(second):
        for _ in range(100):
            if await admins():
                break
            await asyncio.sleep(0.05)
        transport = httpx.ASGITransport(app=first, client=(random_address(), 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://crm.test") as client:
            login = await client.post("/api/auth/login", json={"email": email, "password": "first admin secret"})
            assert login.status_code == 200
            me = await client.get("/api/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"})
            assert me.json()["role"] == "admin"
    assert await admins() == 1


async def test_me_tells_a_manager_the_business_time_zone_an_admin_sets(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BUSINESS_TIMEZONE", raising=False)
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        manager = await create_user(session)
    me = await api.client.get("/api/me", headers=api.headers(manager))
    assert me.json()["business_timezone"] == "UTC"  # nothing set anywhere
    changed = await api.client.put(
        "/api/settings/business.timezone", json={"value": "Europe/Kyiv"}, headers=api.headers(admin)
    )
    assert changed.status_code == 200, changed.text
    me = await api.client.get("/api/me", headers=api.headers(manager))
    assert me.json()["business_timezone"] == "Europe/Kyiv"
    session_answer = await api.client.post("/api/auth/session", json={"email": manager.email, "password": PASSWORD})
    assert session_answer.json()["user"]["business_timezone"] == "Europe/Kyiv"
