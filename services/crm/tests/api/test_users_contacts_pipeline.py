"""Users (admin), contacts, the pipeline board and stage administration."""

from __future__ import annotations

import asyncio
import os
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import col

from crm import cli
from crm.models import User
from jggl_common.db import session_scope
from jggl_common.testing import TEST_DATABASE_URL

from .conftest import Api
from .factories import create_channel, create_contact, create_deal, create_user, unique_email


async def test_admin_creates_lists_and_changes_users(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin", name="Alice Admin")
    headers = api.headers(admin)
    email = unique_email("New.Manager")
    created = await api.client.post(
        "/api/users", json={"email": email, "name": " Bob ", "password": "long enough"}, headers=headers
    )
    assert created.status_code == 201, created.text
    bob = created.json()
    assert (bob["email"], bob["name"], bob["role"], bob["is_active"]) == (email.lower(), "Bob", "manager", True)
    duplicate = await api.client.post(
        "/api/users", json={"email": email.upper(), "name": "Bob 2", "password": "long enough"}, headers=headers
    )
    assert duplicate.status_code == 409
    for body in (
        {"email": unique_email(), "name": "Weak", "password": "short"},
        {"email": "not-an-email", "name": "X", "password": "long enough"},
        {"email": unique_email(), "name": "   ", "password": "long enough"},
        {"email": unique_email(), "name": "X", "password": "long enough", "role": "owner"},
    ):
        assert (await api.client.post("/api/users", json=body, headers=headers)).status_code == 422, body
    listed = (await api.client.get("/api/users", headers=headers)).json()["items"]
    assert [user["email"] for user in listed][:1] == [admin.email]
    assert email.lower() in {user["email"] for user in listed}
    changed = await api.client.patch(
        f"/api/users/{bob['id']}", json={"name": "Robert", "role": "admin"}, headers=headers
    )
    assert (changed.json()["name"], changed.json()["role"]) == ("Robert", "admin")
    assert (await api.client.patch("/api/users/999999", json={"name": "X"}, headers=headers)).status_code == 404
    for change in ({"is_active": False}, {"role": "manager"}):
        own = await api.client.patch(f"/api/users/{admin.id}", json=change, headers=headers)
        assert own.status_code == 409


async def test_contacts_list_by_name_prefix_and_detail_with_visible_deals(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        me, other = await create_user(session), await create_user(session)
        channel = await create_channel(session, platform="instagram")
        ivan = await create_contact(session, channel, name="Иван Петров")
        ivanna = await create_contact(session, name="ивАнна")
        olga = await create_contact(session, name="Olga")
        mine = await create_deal(session, contact=ivan, assignee=me, status="won")
        await create_deal(session, contact=ivan, assignee=other)
        await create_deal(session, contact=ivanna, assignee=other)
        await create_deal(session, contact=olga)
    as_admin, as_me = api.headers(admin), api.headers(me)

    async def names(headers: dict[str, str], **params: str | int) -> list[str | None]:
        response = await api.client.get("/api/contacts", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return [item["name"] for item in response.json()["items"]]

    assert await names(as_admin, q="ИВ") == ["ивАнна", "Иван Петров"]
    assert await names(as_admin, q="иван ") == ["ивАнна", "Иван Петров"]
    assert await names(as_admin, q="%") == []
    assert await names(as_admin, platform="instagram") == ["Иван Петров"]
    assert await names(as_me) == ["Olga", "Иван Петров"]
    first = (await api.client.get("/api/contacts", params={"limit": 1}, headers=as_admin)).json()
    second = await api.client.get(
        "/api/contacts", params={"limit": 1, "cursor": first["next_cursor"]}, headers=as_admin
    )
    assert second.json()["items"][0]["id"] != first["items"][0]["id"]
    tampered = await api.client.get("/api/contacts", params={"cursor": first["next_cursor"] + "x"}, headers=as_admin)
    assert tampered.status_code == 400

    detail = (await api.client.get(f"/api/contacts/{ivan.id}", headers=as_me)).json()
    assert detail["display_name"] == "Иван Петров"
    assert [deal["id"] for deal in detail["deals"]] == [mine.id]
    assert len((await api.client.get(f"/api/contacts/{ivan.id}", headers=as_admin)).json()["deals"]) == 2
    assert (await api.client.get(f"/api/contacts/{ivanna.id}", headers=as_me)).status_code == 404


async def test_pipeline_totals_respect_roles(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        me, other = await create_user(session), await create_user(session)
        await create_deal(session, amount="100", assignee=me)
        await create_deal(session, amount="50.25")
        await create_deal(session, stage="proposal", amount="1000", assignee=other)
        await create_deal(session, stage="proposal")
        await create_deal(session, status="won", amount="700", assignee=me)
        await create_deal(session, status="lost", amount="5", assignee=other, lost_reason="price")
    board = (await api.client.get("/api/pipeline", headers=api.headers(admin))).json()
    stages = {stage["key"]: stage for stage in board["stages"]}
    assert [stage["key"] for stage in board["stages"]][:2] == ["new", "contacted"]
    assert (stages["new"]["count"], Decimal(stages["new"]["amount"])) == (2, Decimal("150.25"))
    assert (stages["proposal"]["count"], Decimal(stages["proposal"]["amount"])) == (2, Decimal("1000"))
    assert (board["open"]["count"], Decimal(board["open"]["amount"])) == (4, Decimal("1150.25"))
    assert (board["won"]["count"], board["lost"]["count"]) == (1, 1)
    mine = (await api.client.get("/api/pipeline", headers=api.headers(me))).json()
    stages = {stage["key"]: stage for stage in mine["stages"]}
    assert (stages["new"]["count"], stages["proposal"]["count"]) == (2, 1)
    assert (mine["won"]["count"], mine["lost"]["count"]) == (1, 0)


async def test_admin_manages_stages(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
    headers = api.headers(admin)
    created = await api.client.post("/api/stages", json={"key": "demo_call", "name": "Demo call"}, headers=headers)
    assert created.status_code == 201, created.text
    stage = created.json()
    stages = (await api.client.get("/api/stages", headers=headers)).json()["items"]
    assert stages[-1]["key"] == "demo_call"
    assert (
        await api.client.post("/api/stages", json={"key": "demo_call", "name": "Again"}, headers=headers)
    ).status_code == 409
    for body in ({"key": "Bad Key", "name": "X"}, {"key": "ok", "name": " "}):
        assert (await api.client.post("/api/stages", json=body, headers=headers)).status_code == 422
    moved = await api.client.patch(
        f"/api/stages/{stage['id']}", json={"position": 0, "name": "Demo", "is_active": False}, headers=headers
    )
    assert (moved.json()["position"], moved.json()["name"], moved.json()["is_active"]) == (0, "Demo", False)
    board = (await api.client.get("/api/pipeline", headers=headers)).json()
    assert "demo_call" not in [s["key"] for s in board["stages"]]
    new_stage = next(s for s in stages if s["key"] == "new")
    refused = await api.client.patch(f"/api/stages/{new_stage['id']}", json={"is_active": False}, headers=headers)
    assert refused.status_code == 409
    assert (await api.client.patch("/api/stages/999999", json={"name": "X"}, headers=headers)).status_code == 404


async def test_the_cli_creates_an_admin_and_updates_only_when_asked(
    api: Api, pg_schema: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    email = unique_email("cli-admin")
    env = {**os.environ, "DATABASE_URL": TEST_DATABASE_URL, "DB_SCHEMA": pg_schema}
    # The installed console command, once, end to end.
    command = [str(Path(sys.executable).parent / "crm-admin"), "create-admin", "--email", email]
    process = await asyncio.create_subprocess_exec(
        *command, "--password", "cli secret 1", "--name", "Ops",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert (process.returncode, output.decode()) == (0, f"admin {email} created\n")

    monkeypatch.setenv("DATABASE_URL", TEST_DATABASE_URL)
    monkeypatch.setenv("DB_SCHEMA", pg_schema)

    async def run(*args: str) -> int | str | None:
        # main() runs its own event loop, so it gets a thread of its own here.
        try:
            return await asyncio.to_thread(cli.main, list(args))
        except SystemExit as exc:
            return exc.code

    exists = await run("create-admin", "--email", email, "--password", "cli secret 2")
    assert isinstance(exists, str)
    assert "already exists" in exists
    assert await run("create-admin", "--email", email, "--password", "short") == 2
    assert await run("create-admin", "--email", "nobody", "--password", "long enough") == 2
    capsys.readouterr()
    assert await run("create-admin", "--email", email.upper(), "--password", "cli secret 2", "--update") == 0
    assert capsys.readouterr().out == f"admin {email} updated\n"
    async with api.sessions() as session:
        user = (await session.execute(select(User).where(col(User.email) == email))).scalar_one()
    assert (user.role, user.is_active, user.name) == ("admin", True, "Admin")
    login = await api.client.post("/api/auth/login", json={"email": email, "password": "cli secret 2"})
    assert login.status_code == 200
