"""Runtime settings: masked, encrypted at rest, audited, propagated live to every service."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import pytest
from nats.js.errors import KeyNotFoundError
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm.config import CrmSettings
from jggl_common.crypto import fingerprint
from jggl_common.db import session_scope
from jggl_common.live_settings import KNOWN_SETTINGS, LiveSettings
from jggl_common.testing import free_port, start_nats_server

from ..api.factories import create_user
from .conftest import Api, eventually, running_api

Reader = Callable[..., Awaitable[LiveSettings]]
SECRET = "EAAG-plaintext-app-secret-7f3a"


async def _everything_stored(api: Api) -> str:
    """What a database dump of crm's administration tables would show."""
    rows = await api.rows(
        "SELECT (SELECT coalesce(json_agg(s), '[]') FROM settings s)::text || "
        "(SELECT coalesce(json_agg(a), '[]') FROM audit_log a)::text || "
        "(SELECT coalesce(json_agg(o), '[]') FROM outbox o)::text AS dump"
    )
    return str(rows[0]["dump"])


async def test_a_secret_is_masked_encrypted_audited_and_reaches_other_services(
    synced_api: Api, reader: Reader, settings: CrmSettings
) -> None:
    api = synced_api
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
    headers = api.headers(admin)
    follower = await reader()

    response = await api.client.put("/api/settings/meta.app_secret", json={"value": SECRET}, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    first_mask = f"set · fp {fingerprint(SECRET)}"
    assert body["value"] == first_mask
    assert body["fingerprint"] == fingerprint(SECRET)
    assert "7f3a" not in response.text
    assert (body["source"], body["secret"], body["changed"], body["propagated"]) == ("database", True, True, True)
    assert body["updated_by"] == {"id": admin.id, "email": admin.email}

    listed = (await api.client.get("/api/settings", headers=headers)).json()["items"]
    assert [item["key"] for item in listed] == list(KNOWN_SETTINGS)
    shown = {item["key"]: item for item in listed}
    assert shown["meta.app_secret"]["value"] == first_mask
    assert SECRET not in json.dumps(listed)

    # At rest: sealed, and nowhere in clear.
    (row,) = await api.rows("SELECT value, is_secret FROM settings WHERE key = 'meta.app_secret'")
    assert row["is_secret"] is True
    assert row["value"].startswith("v2:")  # sealed, bound to its key
    assert SECRET not in await _everything_stored(api)

    # Audited, masked.
    audit = (await api.client.get("/api/audit-log", params={"key": "meta.app_secret"}, headers=headers)).json()
    (entry,) = audit["items"]
    assert entry["action"] == "setting.set"
    assert (entry["actor_user_id"], entry["actor_email"]) == (admin.id, admin.email)
    assert (entry["old_value"], entry["new_value"]) == (None, first_mask)
    assert entry["details"] == {"old_source": "unset", "new_source": "database"}
    assert entry["client_address"] == api.address

    # In the bucket: sealed; another service reads it in clear.
    nc = await nats.connect(settings.nats_url)
    try:
        entry = await (await nc.jetstream().key_value(settings.settings_bucket)).get("meta.app_secret")
        assert entry.value is not None
        stored = json.loads(entry.value)
    finally:
        await nc.close()
    assert stored["secret"] is True
    assert SECRET not in json.dumps(stored)
    await eventually(lambda: _is(follower, "meta.app_secret", SECRET), 5, "the follower seeing the secret")

    # A second change is audited with both sides masked.
    again = await api.client.put("/api/settings/meta.app_secret", json={"value": "second-secret-9911"}, headers=headers)
    second_mask = f"set · fp {fingerprint('second-secret-9911')}"
    assert again.json()["value"] == second_mask != first_mask
    latest = (await api.client.get("/api/audit-log", params={"key": "meta.app_secret"}, headers=headers)).json()
    assert (latest["items"][0]["old_value"], latest["items"][0]["new_value"]) == (first_mask, second_mask)
    assert "9911" not in json.dumps(latest)
    await eventually(lambda: _is(follower, "meta.app_secret", "second-secret-9911"), 5, "the follower seeing it")

    # The same value again changes nothing and is not audited.
    same = await api.client.put("/api/settings/meta.app_secret", json={"value": "second-secret-9911"}, headers=headers)
    assert same.json()["changed"] is False
    assert len((await api.client.get("/api/audit-log", headers=headers)).json()["items"]) == 2


async def _is(live: LiveSettings, key: str, value: str | None) -> bool:
    return live.get(key) == value


async def test_a_manager_is_refused_settings_and_both_logs(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        manager = await create_user(session)
    headers = api.headers(manager)
    for method, path, body in (
        ("GET", "/api/settings", None),
        ("GET", "/api/settings/sla.minutes", None),
        ("PUT", "/api/settings/sla.minutes", {"value": "5"}),
        ("DELETE", "/api/settings/sla.minutes", None),
        ("GET", "/api/audit-log", None),
        ("GET", "/api/system-log", None),
    ):
        response = await api.client.request(method, path, json=body, headers=headers)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json() == {"detail": "Only admins may do this"}
        assert (await api.client.request(method, path, json=body)).status_code == 401
    assert await api.rows("SELECT * FROM settings") == []


INVALID = [
    ("sla.minutes", "0", "whole number of minutes"),
    ("sla.minutes", "-5", "whole number of minutes"),
    ("sla.minutes", "fifteen", "whole number of minutes"),
    ("sla.minutes", "1.5", "whole number of minutes"),
    ("business.timezone", "Mars/Olympus_Mons", "IANA time zone"),
    ("business.timezone", "../../etc/passwd", "IANA time zone"),
    ("business.hours", "9-18", "HH:MM-HH:MM"),
    ("business.hours", "09:00-24:30", "HH:MM-HH:MM"),
    ("business.hours", "09:00-09:00", "different times"),
    ("meta.human_agent", "yes", "true or false"),
    ("gemini.model", "   ", "must not be empty"),
    ("gemini.model", "gemini pro", "model name"),
    ("meta.verify_token", "two words", "spaces"),
    ("telegram.bot_token", "tab\there", "control characters"),
    ("notify.unassigned_leads", "round robin", "everyone, admins or round_robin"),
    ("notify.unassigned_leads", "managers", "everyone, admins or round_robin"),
]


async def test_an_invalid_value_is_refused_with_a_reason_and_changes_nothing(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
    for key, value, reason in INVALID:
        response = await api.client.put(f"/api/settings/{key}", json={"value": value}, headers=api.headers(admin))
        assert response.status_code == 422, (key, value, response.text)
        assert reason in response.json()["detail"], (key, value)
        assert response.json()["detail"].endswith("."), (key, value)
    assert await api.rows("SELECT * FROM settings") == []
    assert await api.rows("SELECT * FROM audit_log") == []


async def test_values_are_stored_in_normal_form_and_unknown_keys_do_not_exist(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
    headers = api.headers(admin)
    for key, sent, stored in (
        ("meta.human_agent", "TRUE", "true"),
        ("meta.human_agent", False, "false"),
        ("sla.minutes", " 015 ", "15"),
        ("sla.minutes", 30, "30"),
        ("business.timezone", "Europe/Kyiv", "Europe/Kyiv"),
        ("business.hours", "22:00-06:00", "22:00-06:00"),
        ("gemini.model", "gemini-2.5-flash", "gemini-2.5-flash"),
        ("notify.unassigned_leads", " Round_Robin ", "round_robin"),
        ("notify.unassigned_leads", "ADMINS", "admins"),
    ):
        response = await api.client.put(f"/api/settings/{key}", json={"value": sent}, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["value"] == stored
        assert response.json()["propagated"] is False  # no sync runs in this app
    for method, body in (("GET", None), ("PUT", {"value": "x"}), ("DELETE", None)):
        response = await api.client.request(method, "/api/settings/no.such.key", json=body, headers=headers)
        assert response.status_code == 404
        assert response.json() == {"detail": "There is no setting 'no.such.key'"}
    bad_body = await api.client.put("/api/settings/sla.minutes", json={"value": 1.5}, headers=headers)
    assert bad_body.status_code == 422


async def test_deleting_an_override_falls_back_to_the_environment_everywhere(
    synced_api: Api, reader: Reader, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = synced_api
    monkeypatch.setenv("SLA_MINUTES", "45")
    monkeypatch.delenv("GEMINI_MODEL", raising=False)
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
    headers = api.headers(admin)
    follower = await reader()

    before = (await api.client.get("/api/settings/sla.minutes", headers=headers)).json()
    assert (before["value"], before["source"], before["updated_by"]) == ("45", "environment", None)
    unset = (await api.client.get("/api/settings/gemini.model", headers=headers)).json()
    assert (unset["value"], unset["source"]) == (None, "unset")

    assert (await api.client.put("/api/settings/sla.minutes", json={"value": "10"}, headers=headers)).status_code == 200
    await eventually(lambda: _is(follower, "sla.minutes", "10"), 5, "the follower seeing 10")

    reset = await api.client.delete("/api/settings/sla.minutes", headers=headers)
    assert reset.status_code == 200, reset.text
    assert (reset.json()["value"], reset.json()["source"], reset.json()["propagated"]) == ("45", "environment", True)
    await eventually(lambda: _is(follower, "sla.minutes", None), 5, "the follower dropping the override")
    assert await api.rows("SELECT * FROM settings") == []

    entries = (await api.client.get("/api/audit-log", params={"key": "sla.minutes"}, headers=headers)).json()["items"]
    assert [(e["action"], e["old_value"], e["new_value"]) for e in entries] == [
        ("setting.reset", "10", "45"),
        ("setting.set", "45", "10"),
    ]
    assert entries[0]["details"] == {"old_source": "database", "new_source": "environment"}

    # Nothing to reset any more: no change, no audit entry.
    again = await api.client.delete("/api/settings/sla.minutes", headers=headers)
    assert again.json()["changed"] is False
    assert len((await api.client.get("/api/audit-log", headers=headers)).json()["items"]) == 2


async def test_the_reconciler_puts_back_what_the_bucket_lost(synced_api: Api, reader: Reader) -> None:
    api = synced_api
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
    headers = api.headers(admin)
    await api.client.put("/api/settings/gemini.api_key", json={"value": "AIza-gemini-key-0042"}, headers=headers)
    await api.client.put("/api/settings/sla.minutes", json={"value": "7"}, headers=headers)
    follower = await reader()
    await eventually(lambda: _is(follower, "gemini.api_key", "AIza-gemini-key-0042"), 5, "the key arriving")

    # Someone wipes the values (or a broker loses them); and a stray value appears.
    nc = await nats.connect(api.settings.nats_url)
    try:
        kv = await nc.jetstream().key_value(api.settings.settings_bucket)
        await kv.delete("gemini.api_key")
        await kv.purge("sla.minutes")
        await kv.put("meta.human_agent", json.dumps({"secret": False, "value": "true"}).encode())
        await eventually(lambda: _is(follower, "gemini.api_key", None), 5, "the deletion arriving")
        api.sync.request_reconcile()
        await eventually(lambda: _is(follower, "gemini.api_key", "AIza-gemini-key-0042"), 5, "the key restored")
        await eventually(lambda: _is(follower, "sla.minutes", "7"), 5, "the minutes restored")
        await eventually(lambda: _is(follower, "meta.human_agent", None), 5, "the stray value removed")
        with pytest.raises(KeyNotFoundError):
            await kv.get("meta.human_agent")
    finally:
        await nc.close()


async def test_a_change_made_while_nats_is_down_reaches_the_services_when_it_is_back(
    settings: CrmSettings,
    crm_engine: AsyncEngine,
    redis: Redis,
    sessions: async_sessionmaker[AsyncSession],
    reader: Reader,
    tmp_path: Any,
) -> None:
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    settings = settings.model_copy(update={"nats_url": url})
    async with session_scope(sessions) as session:
        admin = await create_user(session, role="admin")
    async with running_api(settings, crm_engine, redis, sessions, sync_interval=0.5) as api:
        headers = api.headers(admin)
        response = await api.client.put("/api/settings/sla.minutes", json={"value": "25"}, headers=headers)
        assert response.status_code == 200
        assert (response.json()["value"], response.json()["propagated"]) == ("25", False)
        secret = await api.client.put(
            "/api/settings/meta.access_token", json={"value": "page-token-0031"}, headers=headers
        )
        assert secret.json()["propagated"] is False

        proc, _ = start_nats_server(tmp_path / "js", port)
        try:
            await asyncio.wait_for(api.sync.reconciled.wait(), 20)
            follower = await reader(url)
            await eventually(lambda: _is(follower, "sla.minutes", "25"), 10, "the change arriving late")
            await eventually(lambda: _is(follower, "meta.access_token", "page-token-0031"), 10, "the secret arriving")
        finally:
            proc.terminate()
            proc.wait(10)
