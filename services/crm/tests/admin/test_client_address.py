"""Behind a trusted proxy the login limiter and the audit log see the client, not the proxy."""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm.api import create_app
from crm.config import CrmSettings
from jggl_common.db import session_scope

from ..api.factories import create_user, unique_email
from .conftest import admin_settings

PROXY = "192.0.2.10"
LIMIT = 3


def public_address() -> str:
    """An address no other test or earlier run used (the login counters live in Redis)."""
    raw = f"2001:db8:{secrets.token_hex(2)}:{secrets.token_hex(2)}::{secrets.token_hex(2)}"
    return str(ipaddress.ip_address(raw))  # as crm writes it: canonical, no leading zeros


@asynccontextmanager
async def crm_behind(
    settings: CrmSettings, engine: AsyncEngine, redis: Redis, peer: str
) -> AsyncIterator[httpx.AsyncClient]:
    """crm started, called from ``peer`` (a proxy or a client connecting directly)."""
    app = create_app(settings, engine=engine, redis=redis)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(peer, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://crm.test", timeout=30) as client:
            yield client


async def _failed_logins(client: httpx.AsyncClient, count: int, forwarded_for: str | None = None) -> list[int]:
    statuses = []
    for _ in range(count):
        headers = {"X-Forwarded-For": forwarded_for or public_address()}
        body = {"email": unique_email("nobody"), "password": "wrong password"}
        statuses.append((await client.post("/api/auth/login", json=body, headers=headers)).status_code)
    return statuses


async def test_clients_behind_a_trusted_proxy_are_limited_separately(
    pg_schema: str, crm_engine: AsyncEngine, redis: Redis
) -> None:
    settings = admin_settings(pg_schema, forwarded_allow_ips=f"{PROXY},10.0.0.0/8", login_attempts_per_15_min=LIMIT)
    first, second = public_address(), public_address()
    async with crm_behind(settings, crm_engine, redis, PROXY) as client:
        # The ingress appends the address it saw; what the client put before it is not believed.
        assert await _failed_logins(client, LIMIT + 1, f"203.0.113.9, {first}") == [401] * LIMIT + [429]
        # Another client through the same proxy is not locked out with the first.
        assert await _failed_logins(client, LIMIT, second) == [401] * LIMIT
        # Two trusted hops (ingress, then an internal proxy): still the client's own counter.
        assert await _failed_logins(client, 1, f"{first}, 10.1.1.1") == [429]


async def test_a_forged_forwarded_for_from_an_untrusted_peer_is_ignored(
    pg_schema: str, crm_engine: AsyncEngine, redis: Redis
) -> None:
    settings = admin_settings(pg_schema, forwarded_allow_ips=PROXY, login_attempts_per_15_min=LIMIT)
    async with crm_behind(settings, crm_engine, redis, public_address()) as client:
        # A new X-Forwarded-For on every attempt does not give a fresh counter.
        assert await _failed_logins(client, LIMIT + 1) == [401] * LIMIT + [429]


async def test_without_trusted_proxies_forwarded_for_counts_for_nothing(
    pg_schema: str, crm_engine: AsyncEngine, redis: Redis
) -> None:
    settings = admin_settings(pg_schema, login_attempts_per_15_min=LIMIT)
    assert settings.forwarded_allow_ips == ""
    async with crm_behind(settings, crm_engine, redis, public_address()) as client:
        assert await _failed_logins(client, LIMIT + 1) == [401] * LIMIT + [429]


async def test_the_audit_log_records_the_client_behind_the_proxy(
    pg_schema: str, crm_engine: AsyncEngine, redis: Redis, sessions: async_sessionmaker[AsyncSession]
) -> None:
    settings = admin_settings(pg_schema, forwarded_allow_ips=PROXY)
    async with session_scope(sessions) as session:
        admin = await create_user(session, role="admin")
    assert admin.id is not None
    client_ip, peer = public_address(), public_address()
    token = create_app(settings).state.crm.tokens.issue(admin.id, admin.password_hash)

    async with crm_behind(settings, crm_engine, redis, PROXY) as client:
        headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": client_ip}
        response = await client.put("/api/settings/sla.minutes", json={"value": "45"}, headers=headers)
        assert response.status_code == 200, response.text
        log = (await client.get("/api/audit-log", params={"key": "sla.minutes"}, headers=headers)).json()
    assert [entry["client_address"] for entry in log["items"]] == [client_ip]

    # A client connecting directly cannot write someone else's address into the log.
    async with crm_behind(settings, crm_engine, redis, peer) as client:
        headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": client_ip}
        response = await client.put("/api/settings/sla.minutes", json={"value": "50"}, headers=headers)
        assert response.status_code == 200, response.text
        log = (await client.get("/api/audit-log", params={"key": "sla.minutes"}, headers=headers)).json()
    assert [entry["client_address"] for entry in log["items"]] == [peer, client_ip]
