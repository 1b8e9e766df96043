"""Sessions that end: sign-out, deactivation, a new role or password revoke every token
issued before; reactivation brings none back; the first admin's password obeys the policy."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlmodel import col

from crm.api import create_app
from crm.auth.passwords import Passwords, WeakPassword
from crm.auth.service import ensure_first_admin
from crm.cli import create_admin
from crm.cli import main as crm_admin
from crm.models import User
from jggl_common.db import session_scope
from jggl_common.testing import TEST_DATABASE_URL

from .conftest import Api, api_settings
from .factories import PASSWORD, create_user, unique_email


async def _login(api: Api, user: User, password: str = PASSWORD) -> dict[str, str]:
    response = await api.client.post("/api/auth/login", json={"email": user.email, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def _me(api: Api, headers: dict[str, str]) -> int:
    return (await api.client.get("/api/me", headers=headers)).status_code


async def _patch(api: Api, admin: User, user: User, body: dict[str, object]) -> None:
    response = await api.client.patch(f"/api/users/{user.id}", json=body, headers=api.headers(admin))
    assert response.status_code == 200, response.text


async def test_a_reactivated_users_old_tokens_stay_dead(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        manager = await create_user(session)
    old = await _login(api, manager)
    assert await _me(api, old) == 200

    await _patch(api, admin, manager, {"is_active": False})
    assert await _me(api, old) == 401
    await _patch(api, admin, manager, {"is_active": True})
    assert await _me(api, old) == 401
    # A new login works again.
    assert await _me(api, await _login(api, manager)) == 200


async def test_a_new_role_ends_sessions_but_a_new_name_does_not(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        manager = await create_user(session)
    old = await _login(api, manager)
    await _patch(api, admin, manager, {"name": "Renamed Manager"})
    assert await _me(api, old) == 200
    # Promoted: the token that was a manager's is not an admin's.
    await _patch(api, admin, manager, {"role": "admin"})
    assert await _me(api, old) == 401
    fresh = await _login(api, manager)
    assert (await api.client.get("/api/me", headers=fresh)).json()["role"] == "admin"


async def test_a_new_password_ends_every_session_and_the_old_password_is_refused(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        manager = await create_user(session)
    first, second = await _login(api, manager), await _login(api, manager)
    await _patch(api, admin, manager, {"password": "another long secret"})
    assert [await _me(api, first), await _me(api, second)] == [401, 401]
    refused = await api.client.post("/api/auth/login", json={"email": manager.email, "password": PASSWORD})
    assert refused.status_code == 401
    assert await _me(api, await _login(api, manager, "another long secret")) == 200


async def test_bearer_logout_revokes_every_earlier_token_and_a_new_login_works_at_once(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        manager = await create_user(session)
    laptop, phone = await _login(api, manager), await _login(api, manager)
    logouts = REGISTRY.get_sample_value("crm_logouts_total") or 0.0

    response = await api.client.post("/api/auth/logout", headers=laptop)
    assert response.status_code == 204
    assert [await _me(api, laptop), await _me(api, phone)] == [401, 401]
    assert (await api.client.post("/api/auth/logout", headers=laptop)).status_code == 401
    # Issued right after the sign-out (same second): valid.
    assert await _me(api, await _login(api, manager)) == 200
    assert REGISTRY.get_sample_value("crm_logouts_total") == logouts + 1


async def test_browser_sign_out_revokes_the_users_tokens_only_with_its_csrf_token(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        manager = await create_user(session)
    bearer = await _login(api, manager)
    signed_in = await api.client.post("/api/auth/session", json={"email": manager.email, "password": PASSWORD})
    assert signed_in.status_code == 200

    # Without the CSRF token the cookies are cleared but nothing is revoked.
    response = await api.client.delete("/api/auth/session")
    assert response.status_code == 204
    assert "jggl_session" not in api.client.cookies
    assert await _me(api, bearer) == 200

    await api.client.post("/api/auth/session", json={"email": manager.email, "password": PASSWORD})
    csrf = api.client.cookies["jggl_csrf"]
    session_token = api.client.cookies["jggl_session"]
    response = await api.client.delete("/api/auth/session", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 204
    assert await _me(api, bearer) == 401
    assert await _me(api, {"Authorization": f"Bearer {session_token}"}) == 401
    # The cookie itself, replayed after sign-out, is refused too.
    api.client.cookies.set("jggl_session", session_token)
    assert (await api.client.get("/api/me")).status_code == 401


async def test_the_revocation_check_costs_no_query_and_microseconds(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        manager = await create_user(session)
    headers = await _login(api, manager)
    token = headers["Authorization"].removeprefix("Bearer ")
    claims = api.state.tokens.verify(token)
    async with session_scope(api.sessions) as session:
        user = await session.get(User, manager.id)
        assert user is not None
        started = time.perf_counter()
        for _ in range(10_000):
            claims.revoked_by(user.tokens_valid_after)
        per_check = (time.perf_counter() - started) / 10_000
    assert per_check < 20e-6, per_check


async def test_the_first_admin_needs_a_password_the_policy_accepts(
    crm_engine: AsyncEngine, redis: Redis, sessions: async_sessionmaker[AsyncSession], pg_schema: str
) -> None:
    email = unique_email("weak-admin")

    async def count() -> int:
        async with sessions() as session:
            return int(
                await session.scalar(select(func.count()).select_from(User).where(col(User.email) == email)) or 0
            )

    # At start-up (ADMIN_EMAIL / ADMIN_PASSWORD): refused, nobody created.
    async with session_scope(sessions) as session:
        assert await ensure_first_admin(session, Passwords(concurrency=1), email=email, password="short") is False
    app = create_app(
        api_settings(pg_schema, admin_email=email, admin_password="1234567"), engine=crm_engine, redis=redis
    )
    async with app.router.lifespan_context(app):
        await asyncio.sleep(0.3)
    assert await count() == 0

    # python -m crm create-admin and crm-admin create-admin: refused too.
    with pytest.raises(WeakPassword, match="at least 8 characters"):
        await create_admin(TEST_DATABASE_URL, pg_schema, email=email, password="short", name="Admin")
    with pytest.raises(SystemExit):
        crm_admin(["create-admin", "--email", email, "--password", "short"])
    assert await count() == 0

    assert await create_admin(TEST_DATABASE_URL, pg_schema, email=email, password="long enough now", name="A") == (
        f"admin {email} created"
    )
    assert await count() == 1


async def test_resetting_an_account_with_crm_admin_ends_its_sessions(api: Api, pg_schema: str) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
    old = await _login(api, admin)
    outcome = await create_admin(
        TEST_DATABASE_URL, pg_schema, email=admin.email, password="a new long password", name="Ops", update=True
    )
    assert outcome == f"admin {admin.email} updated"
    assert await _me(api, old) == 401
    assert await _me(api, await _login(api, admin, "a new long password")) == 200
