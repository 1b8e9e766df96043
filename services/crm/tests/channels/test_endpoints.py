"""``/api/channels``: admins see every channel with its health, set a page token (stored
sealed, audited without its value, never returned) and rename or (de)activate a channel."""

from __future__ import annotations

from crm.channels.tokens import PageTokens
from jggl_common.db import session_scope

from ..api.factories import create_user
from .conftest import World

SECRET_TOKEN = "EAAG-very-secret-page-token-0123456789"


async def test_only_admins_see_channels(world: World) -> None:
    await world.add_channel()
    assert (await world.client.get("/api/channels")).status_code == 401
    async with session_scope(world.sessions) as session:
        manager = await create_user(session)
    for answer in (
        await world.client.get("/api/channels", headers=world.headers(manager)),
        await world.client.put("/api/channels/1/token", json={"token": "x"}, headers=world.headers(manager)),
        await world.client.patch("/api/channels/1", json={"name": "x"}, headers=world.headers(manager)),
    ):
        assert answer.status_code == 403, answer.text
        assert answer.json() == {"detail": answer.json()["detail"]}


async def test_the_list_shows_each_channel_and_its_health_but_no_token(world: World) -> None:
    first = await world.add_channel(name="Shop & Co")
    second = await world.add_channel(name="Insta shop", platform="instagram")
    put = await world.client.put(
        f"/api/channels/{second.id}/token", json={"token": SECRET_TOKEN}, headers=world.headers()
    )
    assert put.status_code == 200, put.text
    listed = await world.client.get("/api/channels", headers=world.headers())
    assert listed.status_code == 200
    items = {item["id"]: item for item in listed.json()["items"]}
    assert items[first.id] == {
        "id": first.id,
        "platform": "messenger",
        "external_id": first.external_id,
        "name": "Shop & Co",
        "is_active": True,
        "needs_reauth": False,
        "has_own_token": False,
        "last_webhook_at": items[first.id]["last_webhook_at"],
        "created_at": items[first.id]["created_at"],
        "health_status": "unknown",
        "health_problems": [],
        "health_checked_at": None,
        "token_expires_at": None,
    }
    assert items[first.id]["last_webhook_at"] is not None
    assert items[second.id]["platform"] == "instagram"
    assert items[second.id]["has_own_token"] is True
    assert SECRET_TOKEN not in listed.text
    assert "v1:" not in listed.text  # nor its sealed form


async def test_setting_a_token_seals_it_clears_reauth_and_audits_without_the_value(world: World) -> None:
    channel = await world.add_channel()
    await world.execute("UPDATE channels SET needs_reauth = true WHERE id = :id", id=channel.id)
    answer = await world.client.put(
        f"/api/channels/{channel.id}/token", json={"token": f"  {SECRET_TOKEN}\n"}, headers=world.headers()
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["needs_reauth"] is False
    assert answer.json()["has_own_token"] is True
    assert SECRET_TOKEN not in answer.text
    [row] = await world.rows("SELECT access_token_sealed, needs_reauth FROM channels WHERE id = :id", id=channel.id)
    assert row["needs_reauth"] is False
    assert SECRET_TOKEN not in row["access_token_sealed"]
    assert PageTokens(world.settings).token_for(row["access_token_sealed"]) == SECRET_TOKEN  # trimmed
    audit = await world.client.get("/api/audit-log", headers=world.headers())
    [entry] = audit.json()["items"]
    assert entry["action"] == "channel.token.set"
    assert entry["key"] == f"channel:{channel.id}:access_token"
    assert entry["actor_user_id"] == world.admin.id
    assert entry["old_value"] is None
    assert entry["new_value"] is None
    assert entry["details"]["cleared_needs_reauth"] is True
    assert SECRET_TOKEN[-4:] not in audit.text


async def test_a_bad_token_is_refused_without_echoing_it(world: World) -> None:
    channel = await world.add_channel()
    path = f"/api/channels/{channel.id}/token"
    for body in ({"token": "   "}, {"token": "two words-secret"}, {"token": "x" * 5000}, {"token": "tab\tsecret"}):
        answer = await world.client.put(path, json=body, headers=world.headers())
        assert answer.status_code == 422, answer.text
        assert "secret" not in answer.text.replace("page access token", "")
    assert (await world.client.put(path, json={}, headers=world.headers())).status_code == 422
    missing = await world.client.put("/api/channels/999999/token", json={"token": "t"}, headers=world.headers())
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Channel not found"}
    assert (
        await world.client.put("/api/channels/0/token", json={"token": "t"}, headers=world.headers())
    ).status_code == 422
    [row] = await world.rows("SELECT access_token_sealed FROM channels WHERE id = :id", id=channel.id)
    assert row["access_token_sealed"] is None
    assert (await world.client.get("/api/audit-log", headers=world.headers())).json()["items"] == []


async def test_renaming_and_deactivating_are_audited_field_by_field(world: World) -> None:
    channel = await world.add_channel(name="Old name")
    path = f"/api/channels/{channel.id}"
    changed = await world.client.patch(path, json={"name": " New name ", "is_active": False}, headers=world.headers())
    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "New name"
    assert changed.json()["is_active"] is False
    same = await world.client.patch(path, json={"name": "New name"}, headers=world.headers())
    assert same.status_code == 200
    audit = (await world.client.get("/api/audit-log", headers=world.headers())).json()["items"]
    assert sorted((e["key"], e["old_value"], e["new_value"]) for e in audit) == [
        (f"channel:{channel.id}:is_active", "true", "false"),
        (f"channel:{channel.id}:name", "Old name", "New name"),
    ]
    assert {e["action"] for e in audit} == {"channel.update"}
    for bad in ({"name": "  "}, {"name": "x" * 201}, {"is_active": "sometimes"}, {"name": "nul\u0000"}):
        assert (await world.client.patch(path, json=bad, headers=world.headers())).status_code == 422, bad
    assert (await world.client.patch("/api/channels/999999", json={}, headers=world.headers())).status_code == 404
    assert (await world.channel(channel.id))["name"] == "New name"
