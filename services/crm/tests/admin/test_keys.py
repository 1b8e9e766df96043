"""Keys per purpose and per service: crm's own signing key, sealed values bound to their
setting, readers handed only their keys, and rotations of APP_KEY and AUTH_SIGNING_KEY."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator

import httpx
import jwt
import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm.auth.keys import derive_key
from crm.config import CrmSettings
from crm.models import Channel
from crm.settings.service import settings_box
from jggl_common.crypto import SecretBox
from jggl_common.db import session_scope
from jggl_common.live_settings import SERVICE_SETTINGS, LiveSettings

from ..api.factories import PASSWORD, create_user
from .conftest import Api, admin_settings, delete_bucket, eventually, running_api


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest_asyncio.fixture
async def nc(settings: CrmSettings) -> AsyncIterator[NatsClient]:
    client = await nats.connect(settings.nats_url)
    yield client
    await client.close()
    await delete_bucket(settings.nats_url, settings.settings_bucket)


async def _put_raw(nc: NatsClient, bucket: str, key: str, document: dict[str, object]) -> None:
    kv = await nc.jetstream().key_value(bucket)
    await kv.put(key, json.dumps(document).encode())


async def _login(api: Api, email: str) -> str:
    response = await api.client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


# ------------------------------------------------------------------ the signing key is crm's alone


async def test_app_key_alone_cannot_mint_a_token(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
    assert admin.id is not None
    # What anyone holding APP_KEY (every service) could sign before: refused now.
    forged = jwt.encode(
        {"sub": str(admin.id), "iss": "jggl-crm", "iat": 1, "exp": 4_000_000_000, "pwd": "x"},
        derive_key(api.settings.app_key, "access-token"),
        algorithm="HS256",
    )
    response = await api.client.get("/api/me", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert (await api.client.get("/api/me", headers=api.headers(admin))).status_code == 200


async def test_signing_key_rotation_keeps_sessions_until_they_expire(
    pg_schema: str, crm_engine: AsyncEngine, redis: Redis, sessions: async_sessionmaker[AsyncSession]
) -> None:
    old, new = new_key(), new_key()
    async with session_scope(sessions) as session:
        manager = await create_user(session)
        other = await create_user(session)
    before = admin_settings(pg_schema, auth_signing_key=old)
    async with running_api(before, crm_engine, redis, sessions) as api:
        bearer = await _login(api, other.email)
        signed_in = await api.client.post("/api/auth/session", json={"email": manager.email, "password": PASSWORD})
        cookie, csrf = api.client.cookies["jggl_session"], signed_in.json()["csrf_token"]

    rotated = admin_settings(pg_schema, auth_signing_key=new, auth_signing_key_previous=old)
    async with running_api(rotated, crm_engine, redis, sessions) as api:
        assert (await api.client.get("/api/me", headers={"Authorization": f"Bearer {bearer}"})).status_code == 200
        # The browser session keeps working, its CSRF token included.
        api.client.cookies.set("jggl_session", cookie)
        assert (await api.client.get("/api/me")).json()["id"] == manager.id
        assert (await api.client.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})).status_code == 204
        api.client.cookies.clear()
        fresh = await _login(api, manager.email)
        claims = jwt.decode(fresh, derive_key(new, "access-token"), algorithms=["HS256"], issuer="jggl-crm")
        assert claims["sub"] == str(manager.id)

    # Once the previous key is dropped, what it signed is refused; the new key's tokens work.
    after = admin_settings(pg_schema, auth_signing_key=new)
    async with running_api(after, crm_engine, redis, sessions) as api:
        assert (await api.client.get("/api/me", headers={"Authorization": f"Bearer {bearer}"})).status_code == 401
        assert (await api.client.get("/api/me", headers={"Authorization": f"Bearer {fresh}"})).status_code == 200


# ------------------------------------------------------------------ live settings: only sealed, only one's own


async def test_a_plaintext_secret_in_the_bucket_is_refused_without_logging_it(
    synced_api: Api, nc: NatsClient, settings: CrmSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    async with session_scope(synced_api.sessions) as session:
        admin = await create_user(session, role="admin")
    put = await synced_api.client.put(
        "/api/settings/meta.app_secret", json={"value": "the-real-secret"}, headers=synced_api.headers(admin)
    )
    assert put.status_code == 200
    ingest = LiveSettings(nc, settings.app_key, settings.settings_bucket, keys=SERVICE_SETTINGS["ingest"])
    await ingest.start()
    try:
        assert ingest.get("meta.app_secret") == "the-real-secret"
        capsys.readouterr()
        # Someone with broker access writes a plaintext secret around crm, both ways a
        # document can claim to be one.
        await _put_raw(nc, settings.settings_bucket, "meta.app_secret", {"secret": False, "value": "attacker-secret"})
        await _put_raw(nc, settings.settings_bucket, "meta.app_secret", {"secret": True, "value": "attacker-secret-2"})
        seen: list[str] = []

        async def refused_twice() -> bool:
            seen.append(capsys.readouterr().out)
            return "".join(seen).count("unsealed value of a secret live setting refused") >= 2

        await eventually(refused_twice, 5, "two refusals logged")
        assert ingest.get("meta.app_secret") == "the-real-secret"
    finally:
        await ingest.stop()
    seen.append(capsys.readouterr().out)
    refusals = [line for line in "".join(seen).splitlines() if "secret live setting refused" in line]
    assert refusals
    assert all("meta.app_secret" in line for line in refusals)
    assert "attacker-secret" not in "".join(seen)


async def test_a_service_is_handed_only_its_own_settings_and_a_sealed_value_cannot_change_key(
    synced_api: Api, nc: NatsClient, settings: CrmSettings
) -> None:
    async with session_scope(synced_api.sessions) as session:
        admin = await create_user(session, role="admin")
    headers = synced_api.headers(admin)
    for key, value in (("gemini.api_key", "gemini-secret"), ("meta.app_secret", "meta-secret"), ("sla.minutes", "20")):
        assert (await synced_api.client.put(f"/api/settings/{key}", json={"value": value}, headers=headers)).is_success

    ingest = LiveSettings(nc, settings.app_key, settings.settings_bucket, keys=SERVICE_SETTINGS["ingest"])
    ai = LiveSettings(nc, settings.app_key, settings.settings_bucket, keys=SERVICE_SETTINGS["ai"])
    await ingest.start()
    await ai.start()
    try:
        await eventually(lambda: _is(ingest, "meta.app_secret", "meta-secret"), 5, "ingest reading its secret")
        assert ingest.get("gemini.api_key") is None
        assert ingest.get("sla.minutes") is None
        await eventually(lambda: _is(ai, "gemini.api_key", "gemini-secret"), 5, "ai reading its key")
        assert ai.get("meta.app_secret") is None

        # The sealed Gemini key copied onto meta.app_secret does not open there.
        kv = await nc.jetstream().key_value(settings.settings_bucket)
        gemini = (await kv.get("gemini.api_key")).value
        assert gemini is not None
        await kv.put("meta.app_secret", gemini)
        await asyncio.sleep(0.5)
        assert ingest.get("meta.app_secret") == "meta-secret"
    finally:
        await ingest.stop()
        await ai.stop()


async def _is(live: LiveSettings, key: str, value: str | None) -> bool:
    return live.get(key) == value


# ------------------------------------------------------------------ APP_KEY rotation


async def test_app_key_rotation_keeps_every_secret_readable_and_reseals_it(
    pg_schema: str,
    crm_engine: AsyncEngine,
    redis: Redis,
    sessions: async_sessionmaker[AsyncSession],
    settings: CrmSettings,
    nc: NatsClient,
) -> None:
    old_key, new_key_ = settings.app_key, new_key()
    bucket = settings.settings_bucket
    async with session_scope(sessions) as session:
        admin = await create_user(session, role="admin")
        channel = Channel(platform="messenger", external_id="123456789", name="Page")
        # A channel token and a setting sealed the way they were before values were bound
        # to their key (v1), with the old key.
        channel.access_token_sealed = SecretBox(old_key).seal("page-token-1")
        session.add(channel)
    async with session_scope(sessions) as session:
        await session.execute(
            text(
                "INSERT INTO settings (key, value, is_secret, updated_at, updated_by_id, updated_by_email)"
                " VALUES ('telegram.bot_token', :legacy, true, now(), :admin, :email),"
                " ('gemini.api_key', :bound, true, now(), :admin, :email)"
            ),
            {
                "legacy": SecretBox(old_key).seal("bot-token-1"),
                "bound": settings_box(old_key).seal("gemini-key-1", name="gemini.api_key"),
                "admin": admin.id,
                "email": admin.email,
            },
        )

    # Every service first learns the new key and keeps the old one as previous; then crm starts.
    rotated = admin_settings(pg_schema, app_key=new_key_, app_key_previous=old_key, settings_bucket=bucket)
    async with running_api(rotated, crm_engine, redis, sessions, sync_interval=1.0) as api:
        await asyncio.wait_for(api.sync.reconciled.wait(), 15)
        listed = (await api.client.get("/api/settings", headers=api.headers(admin))).json()["items"]
        shown = {item["key"]: item for item in listed}
        assert shown["telegram.bot_token"]["problem"] is None
        assert shown["gemini.api_key"]["problem"] is None

    # Re-sealed at start: the rows now open with the new key alone, bound to their key.
    rows = {
        row["key"]: row["value"]
        for row in await api.rows(
            "SELECT key, value FROM settings WHERE key IN ('telegram.bot_token', 'gemini.api_key')"
        )
    }
    new_box = settings_box(new_key_)
    assert new_box.open(rows["telegram.bot_token"], name="telegram.bot_token") == "bot-token-1"
    assert new_box.open(rows["gemini.api_key"], name="gemini.api_key") == "gemini-key-1"
    (token_row,) = await api.rows("SELECT access_token_sealed FROM channels WHERE id = :id", id=channel.id)
    assert new_box.open(token_row["access_token_sealed"]) == "page-token-1"

    # The bucket too: a service that knows only the new key reads every value.
    notifier = LiveSettings(nc, new_key_, bucket, keys=SERVICE_SETTINGS["notifier"])
    await notifier.start()
    try:
        assert notifier.get("telegram.bot_token") == "bot-token-1"
    finally:
        await notifier.stop()

    # And crm without APP_KEY_PREVIOUS shows them as before.
    after = admin_settings(pg_schema, app_key=new_key_, settings_bucket=bucket)
    async with running_api(after, crm_engine, redis, sessions) as api:
        listed = (await api.client.get("/api/settings", headers=api.headers(admin))).json()["items"]
        assert {item["key"]: item["problem"] for item in listed}["telegram.bot_token"] is None


async def test_without_the_previous_key_old_values_are_reported_not_lost(
    pg_schema: str, crm_engine: AsyncEngine, redis: Redis, sessions: async_sessionmaker[AsyncSession]
) -> None:
    old_key = new_key()
    async with session_scope(sessions) as session:
        admin = await create_user(session, role="admin")
        await session.execute(
            text("INSERT INTO settings (key, value, is_secret, updated_at) VALUES ('gemini.api_key', :v, true, now())"),
            {"v": settings_box(old_key).seal("gemini-key-1", name="gemini.api_key")},
        )
    async with running_api(admin_settings(pg_schema), crm_engine, redis, sessions) as api:
        response = await api.client.get("/api/settings/gemini.api_key", headers=api.headers(admin))
    assert response.json()["problem"] == (
        "The stored value cannot be decrypted with APP_KEY (or APP_KEY_PREVIOUS); set it again."
    )
    assert response.json()["value"] is None
    assert httpx.codes.is_success(response.status_code)
