"""The API's rate limits as a caller meets them: a burst, then 429 with ``Retry-After`` and
``{detail}``; each user counted on their own (API client and web app apart), callers without
credentials per address; one count for every replica; no limit at all while Redis is down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from crm.api import create_app
from crm.auth.browser import SESSION_COOKIE
from crm.config import CrmSettings
from crm.models import User
from jggl_common.db import session_scope

from ..support import random_address
from .conftest import Api, api_settings
from .factories import create_user

BURST = 3
PER_MINUTE = 6
"""One request back every 10 s: none comes back while a test sends its burst, however loaded the machine."""


@pytest.fixture
def settings(pg_schema: str) -> CrmSettings:
    """Small limits, so a test reaches them in a few requests."""
    return api_settings(
        pg_schema,
        api_rate_per_minute=PER_MINUTE,
        api_rate_burst=BURST,
        api_browser_rate_per_minute=PER_MINUTE,
        api_browser_rate_burst=BURST + 2,
        api_address_rate_per_minute=PER_MINUTE,
        api_address_rate_burst=BURST,
    )


def _limited(scope: str) -> float:
    return REGISTRY.get_sample_value("jggl_crm_api_rate_limited_total", {"scope": scope}) or 0.0


def _unchecked() -> float:
    return REGISTRY.get_sample_value("jggl_crm_api_rate_limit_unchecked_total") or 0.0


@asynccontextmanager
async def _client(api: Api, address: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=api.app, client=(address or random_address(), 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://crm.test", timeout=30) as client:
        yield client


async def _users(api: Api, count: int) -> list[User]:
    async with session_scope(api.sessions) as session:
        return [await create_user(session) for _ in range(count)]


async def test_past_its_burst_an_api_client_is_answered_429_with_retry_after_and_a_sentence(api: Api) -> None:
    me, colleague = await _users(api, 2)
    before = _limited("token")
    answers = [await api.client.get("/api/me", headers=api.headers(me)) for _ in range(BURST)]
    assert [answer.status_code for answer in answers] == [200] * BURST

    refused = await api.client.get("/api/deals", headers=api.headers(me))
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/json"
    wait = int(refused.headers["Retry-After"])
    assert 1 <= wait <= 60 // PER_MINUTE
    assert refused.json() == {"detail": "Too many requests in a short time"}
    assert _limited("token") == before + 1
    # Unsafe requests count the same, and are refused before they change anything.
    assert (await api.client.post("/api/auth/logout", headers=api.headers(me))).status_code == 429
    # A colleague (even behind the same address) is counted on their own.
    assert (await api.client.get("/api/me", headers=api.headers(colleague))).status_code == 200


async def test_after_retry_after_seconds_the_next_request_is_answered(
    settings: CrmSettings, crm_engine: AsyncEngine, redis: Redis
) -> None:
    # 60 a minute, one at a time: a request comes back every second.
    app = create_app(
        settings.model_copy(update={"api_rate_per_minute": 60, "api_rate_burst": 1}), engine=crm_engine, redis=redis
    )
    async with app.router.lifespan_context(app):
        async with session_scope(app.state.crm.sessions) as session:
            me = await create_user(session)
        assert me.id is not None
        headers = {"Authorization": f"Bearer {app.state.crm.tokens.issue(me.id, me.password_hash)}"}
        transport = httpx.ASGITransport(app=app, client=(random_address(), 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://crm.test") as client:
            assert (await client.get("/api/me", headers=headers)).status_code == 200
            refused = await client.get("/api/me", headers=headers)
            assert refused.status_code == 429
            assert refused.headers["Retry-After"] == "1"
            await asyncio.sleep(1)
            assert (await client.get("/api/me", headers=headers)).status_code == 200


async def test_the_web_app_session_has_a_count_of_its_own(api: Api) -> None:
    (me,) = await _users(api, 1)
    assert me.id is not None
    for _ in range(BURST):
        assert (await api.client.get("/api/me", headers=api.headers(me))).status_code == 200
    assert (await api.client.get("/api/me", headers=api.headers(me))).status_code == 429

    before = _limited("browser")
    cookie = {SESSION_COOKIE: api.state.tokens.issue(me.id, me.password_hash)}
    async with _client(api) as browser:
        browser.cookies.update(cookie)
        answers = [(await browser.get("/api/me")).status_code for _ in range(BURST + 3)]
    assert answers == [200] * (BURST + 2) + [429]
    assert _limited("browser") == before + 1


async def test_callers_without_valid_credentials_are_counted_per_address(api: Api) -> None:
    before = _limited("address")
    async with _client(api, "10.99.1.1") as first, _client(api, "10.99.1.2") as second:
        anonymous = [(await first.get("/api/me")).status_code for _ in range(BURST)]
        assert anonymous == [401] * BURST
        # A token that does not verify is no credential: the address pays for it.
        forged = await first.get("/api/me", headers={"Authorization": "Bearer not-a-token"})
        assert forged.status_code == 429
        assert int(forged.headers["Retry-After"]) >= 1
        assert (await first.post("/api/auth/login", json={"email": "a@b.test", "password": "x"})).status_code == 429
        assert (await second.get("/api/me")).status_code == 401
    assert _limited("address") == before + 2


async def test_the_event_stream_health_metrics_and_web_app_files_are_not_counted(api: Api) -> None:
    async with _client(api) as client:
        for _ in range(BURST + 2):
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/metrics")).status_code == 200
            assert (await client.get("/")).status_code == 200
            # No live events in this app (no NATS): the stream answers 401 without a token, never 429.
            assert (await client.get("/api/events")).status_code == 401
        assert (await client.get("/api/me")).status_code == 401


async def test_every_replica_shares_one_count(settings: CrmSettings, crm_engine: AsyncEngine, redis: Redis) -> None:
    replicas = [create_app(settings, engine=crm_engine, redis=redis) for _ in range(2)]
    async with replicas[0].router.lifespan_context(replicas[0]), replicas[1].router.lifespan_context(replicas[1]):
        async with session_scope(replicas[0].state.crm.sessions) as session:
            me = await create_user(session)
        assert me.id is not None
        headers = {"Authorization": f"Bearer {replicas[0].state.crm.tokens.issue(me.id, me.password_hash)}"}
        answers = []
        for index in range(BURST + 1):
            transport = httpx.ASGITransport(app=replicas[index % 2], client=(random_address(), 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://crm.test") as client:
                answers.append((await client.get("/api/me", headers=headers)).status_code)
    assert answers == [200] * BURST + [429]


async def test_without_redis_the_api_answers_unlimited_and_counts_what_it_let_through(
    settings: CrmSettings, crm_engine: AsyncEngine
) -> None:
    nowhere = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5, socket_timeout=0.5)
    app = create_app(settings, engine=crm_engine, redis=nowhere)
    before = _unchecked()
    try:
        async with app.router.lifespan_context(app):
            async with session_scope(app.state.crm.sessions) as session:
                me = await create_user(session)
            assert me.id is not None
            headers = {"Authorization": f"Bearer {app.state.crm.tokens.issue(me.id, me.password_hash)}"}
            transport = httpx.ASGITransport(app=app, client=(random_address(), 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://crm.test") as client:
                answers = [(await client.get("/api/me", headers=headers)).status_code for _ in range(BURST * 3)]
    finally:
        await nowhere.aclose()
    assert answers == [200] * (BURST * 3)
    assert _unchecked() == before + BURST * 3


async def test_the_schema_documents_429_with_retry_after_where_requests_are_counted(api: Api) -> None:
    schema = (await api.client.get("/openapi.json")).json()
    counted = 0
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            refusal = operation["responses"].get("429")
            if not path.startswith("/api/"):
                assert refusal is None, f"{method} {path}"
                continue
            if path == "/api/events":
                # Not rate limited: its own 429 is the cap on open streams (tests/live/test_stream_cap.py).
                assert refusal is not None
                assert "Too many requests" not in refusal["description"], method
                continue
            counted += 1
            assert refusal is not None, f"{method} {path}"
            assert refusal["headers"]["Retry-After"]["required"] is True
            assert refusal["content"] == {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorMessage"}}}
    assert counted >= 30


async def test_behind_a_trusted_proxy_each_client_address_is_counted_on_its_own(
    settings: CrmSettings, crm_engine: AsyncEngine, redis: Redis
) -> None:
    proxy = random_address()
    app = create_app(settings.model_copy(update={"forwarded_allow_ips": proxy}), engine=crm_engine, redis=redis)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(proxy, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://crm.test") as ingress:
            first = {"X-Forwarded-For": "198.51.100.7"}
            answers = [(await ingress.get("/api/me", headers=first)).status_code for _ in range(BURST + 1)]
            other_client = await ingress.get("/api/me", headers={"X-Forwarded-For": "198.51.100.8"})
    # The ingress's own address is never the one counted: one client's burst leaves another's whole.
    assert answers == [401] * BURST + [429]
    assert other_client.status_code == 401


async def test_requests_at_the_same_instant_on_two_replicas_get_exactly_the_burst(
    settings: CrmSettings, crm_engine: AsyncEngine, redis: Redis
) -> None:
    # One a minute after the burst: nothing comes back while the requests are answered, however slowly.
    slow = settings.model_copy(update={"api_rate_per_minute": 1})
    replicas = [create_app(slow, engine=crm_engine, redis=redis) for _ in range(2)]
    async with replicas[0].router.lifespan_context(replicas[0]), replicas[1].router.lifespan_context(replicas[1]):
        async with session_scope(replicas[0].state.crm.sessions) as session:
            me = await create_user(session)
        assert me.id is not None
        headers = {"Authorization": f"Bearer {replicas[0].state.crm.tokens.issue(me.id, me.password_hash)}"}
        clients = [
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=replica, client=(random_address(), 40000)),
                base_url="http://crm.test",
            )
            for replica in replicas
        ]
        try:
            answers = await asyncio.gather(*(clients[n % 2].get("/api/me", headers=headers) for n in range(12)))
        finally:
            for client in clients:
                await client.aclose()
    statuses = sorted(answer.status_code for answer in answers)
    # One atomic check per request in Redis: no two replicas both spend the last one.
    assert statuses == [200] * BURST + [429] * (12 - BURST)
