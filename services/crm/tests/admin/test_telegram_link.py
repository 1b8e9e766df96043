"""`/api/me/telegram-link`: a one-time code announced by hash, never stored in clear; and unlinking."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import nats
import pytest
from sqlalchemy import text

from crm.telegram_link.service import ALPHABET, CODE_LENGTH
from jggl_common.bus import EventPublisher
from jggl_common.contracts import TelegramLinkRequested, TelegramUnlinkRequested, link_code_hash, utcnow
from jggl_common.db import session_scope
from jggl_common.outbox import Outbox
from jggl_common.streams import CRM, ensure_streams

from ..api.factories import create_user
from .conftest import Api


async def test_a_user_gets_a_code_the_notifier_can_match_and_nobody_can_read_back(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        manager = await create_user(session, name="Olena")
    before = utcnow()
    response = await api.client.post("/api/me/telegram-link", headers=api.headers(manager))
    assert response.status_code == 201, response.text
    body = response.json()
    code = body["code"]
    assert len(code) == CODE_LENGTH
    assert set(code) <= set(ALPHABET)
    assert body["deep_link"] == f"https://t.me/jggl_bot?start={code}"
    expires_at = datetime.fromisoformat(body["expires_at"])
    assert before + timedelta(minutes=15) <= expires_at <= utcnow() + timedelta(minutes=15)

    (stored,) = await api.rows("SELECT user_id, code_hash, expires_at FROM telegram_link_codes")
    assert (stored["user_id"], stored["code_hash"], stored["expires_at"]) == (
        manager.id,
        link_code_hash(code),
        expires_at,
    )
    (event_row,) = await api.rows("SELECT subject, payload FROM outbox")
    assert event_row["subject"] == "crm.telegram.link_requested"
    event = TelegramLinkRequested.model_validate_json(event_row["payload"])
    assert event.data.model_dump() == {
        "user_id": manager.id,
        "name": "Olena",
        "email": manager.email,
        "role": "manager",
        "code_hash": link_code_hash(code),
        "expires_at": expires_at,
    }
    # What the manager types matches whatever the letter case.
    assert link_code_hash(f" {code.lower()} ") == event.data.code_hash
    # The code itself is nowhere in the database.
    dump = await api.rows(
        "SELECT (SELECT json_agg(t) FROM telegram_link_codes t)::text || (SELECT json_agg(o) FROM outbox o)::text AS d"
    )
    assert code not in dump[0]["d"]
    assert code.lower() not in dump[0]["d"].lower()
    assert json.loads(event_row["payload"])["type"] == "crm.telegram.link_requested"

    second = (await api.client.post("/api/me/telegram-link", headers=api.headers(manager))).json()
    assert second["code"] != code


async def test_the_deep_link_names_the_configured_bot_and_codes_are_limited(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_USERNAME", "@acme_sales_bot")
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
    headers = api.headers(admin)
    codes = []
    for _ in range(5):
        response = await api.client.post("/api/me/telegram-link", headers=headers)
        assert response.status_code == 201
        assert response.json()["deep_link"].startswith("https://t.me/acme_sales_bot?start=")
        codes.append(response.json()["code"])
    assert len(set(codes)) == 5
    refused = await api.client.post("/api/me/telegram-link", headers=headers)
    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= 15 * 60
    # Expired codes no longer count.
    async with api.sessions() as session:
        await session.execute(text("UPDATE telegram_link_codes SET expires_at = now() - interval '1 second'"))
        await session.commit()
    assert (await api.client.post("/api/me/telegram-link", headers=headers)).status_code == 201
    assert len(await api.rows("SELECT id FROM telegram_link_codes")) == 1
    assert (await api.client.post("/api/me/telegram-link")).status_code == 401


async def _unlink_events(api: Api) -> list[TelegramUnlinkRequested]:
    """The unlink events the requests staged, as found on the CRM stream once the outbox published them."""
    rows = await api.rows("SELECT event_id FROM outbox WHERE subject = 'crm.telegram.unlink_requested' ORDER BY id")
    if not rows:
        return []
    wanted = [row["event_id"] for row in rows]
    nc = await nats.connect(api.settings.nats_url)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        await Outbox(api.sessions, EventPublisher(nc)).flush()
        # Other tests publish on the same subject: read it from the start, keep ours.
        sub = await js.subscribe("crm.telegram.unlink_requested", stream=CRM.name, ordered_consumer=True)
        found: dict[str, TelegramUnlinkRequested] = {}
        while len(found) < len(wanted):
            message = await sub.next_msg(timeout=10)
            event = TelegramUnlinkRequested.model_validate_json(message.data)
            if event.id in wanted:
                found[event.id] = event
        await sub.unsubscribe()
    finally:
        await nc.close()
    return [found[event_id] for event_id in wanted]


async def test_a_user_unlinks_their_telegram_and_their_codes_stop_working(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        manager = await create_user(session, name="Olena")
    assert (await api.client.post("/api/me/telegram-link", headers=api.headers(manager))).status_code == 201
    response = await api.client.delete("/api/me/telegram-link", headers=api.headers(manager))
    assert response.status_code == 204, response.text
    assert await api.rows("SELECT id FROM telegram_link_codes") == []
    (event,) = await _unlink_events(api)
    assert event.data.model_dump() == {"user_id": manager.id, "reason": "self", "actor_user_id": manager.id}
    assert event.producer == "crm"
    assert (await api.client.delete("/api/me/telegram-link")).status_code == 401


async def test_an_admin_unlinks_anyone_a_manager_nobody_else(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        manager = await create_user(session, name="Olena")
        other = await create_user(session, name="Petro")
    refused = await api.client.delete(f"/api/users/{other.id}/telegram-link", headers=api.headers(manager))
    assert refused.status_code == 403
    missing = await api.client.delete("/api/users/999999/telegram-link", headers=api.headers(admin))
    assert missing.status_code == 404
    assert await _unlink_events(api) == []

    response = await api.client.delete(f"/api/users/{manager.id}/telegram-link", headers=api.headers(admin))
    assert response.status_code == 204, response.text
    (event,) = await _unlink_events(api)
    assert event.data.model_dump() == {"user_id": manager.id, "reason": "admin", "actor_user_id": admin.id}


async def test_deactivating_a_user_unlinks_their_telegram(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        manager = await create_user(session, name="Olena")
    assert (await api.client.post("/api/me/telegram-link", headers=api.headers(manager))).status_code == 201
    renamed = await api.client.patch(f"/api/users/{manager.id}", json={"name": "O."}, headers=api.headers(admin))
    assert renamed.status_code == 200, renamed.text
    assert await _unlink_events(api) == []
    response = await api.client.patch(f"/api/users/{manager.id}", json={"is_active": False}, headers=api.headers(admin))
    assert response.status_code == 200, response.text
    (event,) = await _unlink_events(api)
    assert event.data.model_dump() == {"user_id": manager.id, "reason": "deactivated", "actor_user_id": admin.id}
    assert await api.rows("SELECT id FROM telegram_link_codes") == []


def test_the_openapi_documents_the_unlink_statuses(api: Api) -> None:
    paths = api.app.openapi()["paths"]
    assert set(paths["/api/me/telegram-link"]["delete"]["responses"]) >= {"204", "401"}
    assert set(paths["/api/users/{user_id}/telegram-link"]["delete"]["responses"]) >= {"204", "401", "403", "404"}
