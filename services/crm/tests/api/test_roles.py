"""What a manager may see and do: their own deals and unassigned ones, no administration."""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import col

from crm.models import Deal
from jggl_common.db import session_scope

from .conftest import Api
from .factories import create_deal, create_message, create_user


async def test_a_manager_never_reaches_another_managers_deal(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        me, other = await create_user(session), await create_user(session)
        mine = await create_deal(session, assignee=me, contact_name="Mine Customer")
        theirs = await create_deal(session, assignee=other, contact_name="Theirs Customer", comment="secret plan")
        free = await create_deal(session, contact_name="Free Customer")
        await create_message(session, theirs, text="private words")
    headers = api.headers(me)

    listed = (await api.client.get("/api/deals", headers=headers)).json()["items"]
    assert {item["id"] for item in listed} == {mine.id, free.id}
    assert (await api.client.get("/api/deals", params={"assignee_id": other.id}, headers=headers)).json()["items"] == []

    for method, path, body in (
        ("GET", f"/api/deals/{theirs.id}", None),
        ("GET", f"/api/deals/{theirs.id}/messages", None),
        ("GET", f"/api/deals/{theirs.id}/activities", None),
        ("PATCH", f"/api/deals/{theirs.id}", {"comment": "mine now"}),
        ("PATCH", f"/api/deals/{theirs.id}", {"assignee_id": me.id}),
        ("POST", f"/api/deals/{theirs.id}/take", None),
        ("GET", f"/api/contacts/{theirs.contact_id}", None),
    ):
        response = await api.client.request(method, path, json=body, headers=headers)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json() == {"detail": response.json()["detail"]}
    # Not even an answer that differs from a deal that does not exist.
    missing = await api.client.get("/api/deals/2000000000", headers=headers)
    assert missing.json() == (await api.client.get(f"/api/deals/{theirs.id}", headers=headers)).json()

    for q in ("Theirs", "secret", "private"):
        assert (await api.client.get("/api/search", params={"q": q}, headers=headers)).json()["items"] == []
    contacts = (await api.client.get("/api/contacts", headers=headers)).json()["items"]
    assert {item["id"] for item in contacts} == {mine.contact_id, free.contact_id}
    async with api.sessions() as session:
        untouched = (await session.execute(select(Deal).where(col(Deal.id) == theirs.id))).scalar_one()
    assert (untouched.assignee_id, untouched.comment) == (other.id, "secret plan")


async def test_a_manager_sees_unassigned_deals_and_can_take_them(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        me = await create_user(session)
        free = await create_deal(session, contact_name="Walk-in")
    headers = api.headers(me)
    assert (await api.client.get(f"/api/deals/{free.id}", headers=headers)).status_code == 200
    assert (await api.client.get(f"/api/deals/{free.id}/messages", headers=headers)).status_code == 200
    taken = await api.client.post(f"/api/deals/{free.id}/take", headers=headers)
    assert taken.status_code == 200
    assert taken.json()["assignee_id"] == me.id
    mine = (await api.client.get("/api/deals", params={"assignee_id": me.id}, headers=headers)).json()["items"]
    assert [item["id"] for item in mine] == [free.id]


async def test_a_manager_cannot_administer_users_or_stages(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        me = await create_user(session)
        other = await create_user(session)
    headers = api.headers(me)
    for method, path, body in (
        ("GET", "/api/users", None),
        ("POST", "/api/users", {"email": "x@example.test", "name": "X", "password": "long enough", "role": "admin"}),
        ("PATCH", f"/api/users/{other.id}", {"is_active": False}),
        ("PATCH", f"/api/users/{me.id}", {"role": "admin"}),
        ("GET", "/api/stages", None),
        ("POST", "/api/stages", {"key": "mine", "name": "Mine"}),
        ("PATCH", "/api/stages/1", {"name": "Renamed"}),
    ):
        response = await api.client.request(method, path, json=body, headers=headers)
        assert response.status_code == 403, (method, path)
        assert response.json() == {"detail": "Only admins may do this"}
    assert (await api.client.get("/api/me", headers=headers)).json()["role"] == "manager"
