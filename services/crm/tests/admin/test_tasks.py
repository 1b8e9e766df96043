"""Tasks on deals: created, changed, completed, seen exactly where the deal is seen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlmodel import col

from crm.models import OutboxEvent, Task
from crm.tasks import announce_due_tasks, due_tasks, mark_due_notified
from jggl_common.contracts import TaskDue, utcnow
from jggl_common.db import session_scope

from ..api.factories import create_deal, create_user
from .conftest import Api


async def test_a_manager_plans_and_completes_tasks_on_their_deal(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        manager = await create_user(session, name="Olena")
        deal = await create_deal(session, assignee=manager)
    headers = api.headers(manager)
    due = "2026-03-02T09:30:00+02:00"

    created = await api.client.post(
        f"/api/deals/{deal.id}/tasks", json={"title": "  Call back about delivery ", "due_at": due}, headers=headers
    )
    assert created.status_code == 201, created.text
    task = created.json()
    assert task["title"] == "Call back about delivery"
    assert task["due_at"] == "2026-03-02T07:30:00Z"
    assert (task["assignee_id"], task["assignee"], task["created_by_id"]) == (
        manager.id,
        {"id": manager.id, "name": "Olena"},
        manager.id,
    )
    assert (task["done"], task["done_at"]) == (False, None)
    undated = await api.client.post(f"/api/deals/{deal.id}/tasks", json={"title": "Send catalogue"}, headers=headers)
    assert undated.json()["due_at"] is None

    listed = (await api.client.get(f"/api/deals/{deal.id}/tasks", headers=headers)).json()["items"]
    assert [item["title"] for item in listed] == ["Call back about delivery", "Send catalogue"]

    moved = await api.client.patch(
        f"/api/tasks/{task['id']}", json={"title": "Call back", "due_at": "2026-03-03T10:00:00Z"}, headers=headers
    )
    assert (moved.json()["title"], moved.json()["due_at"]) == ("Call back", "2026-03-03T10:00:00Z")
    done = await api.client.patch(f"/api/tasks/{task['id']}", json={"done": True}, headers=headers)
    assert done.status_code == 200
    assert (done.json()["done"], done.json()["done_by_id"]) == (True, manager.id)
    assert done.json()["done_at"] is not None
    listed = (await api.client.get(f"/api/deals/{deal.id}/tasks", headers=headers)).json()["items"]
    assert [item["title"] for item in listed] == ["Send catalogue", "Call back"]
    reopened = await api.client.patch(f"/api/tasks/{task['id']}", json={"done": False}, headers=headers)
    assert (reopened.json()["done"], reopened.json()["done_at"]) == (False, None)

    timeline = (await api.client.get(f"/api/deals/{deal.id}/activities", headers=headers)).json()["items"]
    assert [(item["kind"], item["data"].get("title")) for item in timeline] == [
        ("task_created", "Call back about delivery"),
        ("task_created", "Send catalogue"),
        ("task_completed", "Call back"),
        ("task_reopened", "Call back"),
    ]
    assert timeline[0]["actor_user_id"] == manager.id
    assert timeline[0]["data"]["due_at"] == "2026-03-02T07:30:00+00:00"

    for body in ({"title": "   "}, {"done": None}, {"title": None}, {"due_at": "tomorrow"}, {"colour": "red"}):
        assert (await api.client.patch(f"/api/tasks/{task['id']}", json=body, headers=headers)).status_code == 422
    assert (
        await api.client.post(f"/api/deals/{deal.id}/tasks", json={"title": "x" * 501}, headers=headers)
    ).status_code == 422


async def test_tasks_are_seen_exactly_where_their_deal_is(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        me, other = await create_user(session), await create_user(session)
        admin = await create_user(session, role="admin")
        theirs = await create_deal(session, assignee=other)
        free = await create_deal(session)
    their_task = await api.client.post(
        f"/api/deals/{theirs.id}/tasks", json={"title": "Theirs"}, headers=api.headers(other)
    )
    task_id = their_task.json()["id"]
    mine = api.headers(me)

    for method, path, body in (
        ("GET", f"/api/deals/{theirs.id}/tasks", None),
        ("POST", f"/api/deals/{theirs.id}/tasks", {"title": "Sneaky"}),
        ("PATCH", f"/api/tasks/{task_id}", {"done": True}),
        ("GET", "/api/deals/2000000000/tasks", None),
        ("PATCH", "/api/tasks/2000000000", {"done": True}),
    ):
        response = await api.client.request(method, path, json=body, headers=mine)
        assert response.status_code == 404, (method, path, response.text)
    async with api.sessions() as session:
        untouched = await session.get(Task, task_id)
    assert untouched is not None
    assert (untouched.done, untouched.title) == (False, "Theirs")

    # Unassigned deals are everyone's: both managers see and work their tasks.
    shared = await api.client.post(f"/api/deals/{free.id}/tasks", json={"title": "Qualify"}, headers=mine)
    assert shared.status_code == 201
    seen = (await api.client.get(f"/api/deals/{free.id}/tasks", headers=api.headers(other))).json()["items"]
    assert [item["title"] for item in seen] == ["Qualify"]
    # Admins see everything.
    assert (await api.client.get(f"/api/deals/{theirs.id}/tasks", headers=api.headers(admin))).status_code == 200


async def test_who_a_task_can_be_given_to(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        me, other = await create_user(session), await create_user(session)
        gone = await create_user(session, is_active=False)
        admin = await create_user(session, role="admin")
        mine = await create_deal(session, assignee=me)
    path = f"/api/deals/{mine.id}/tasks"

    refused = await api.client.post(path, json={"title": "For you", "assignee_id": other.id}, headers=api.headers(me))
    assert refused.status_code == 403
    assert refused.json() == {"detail": "Managers can assign tasks only to themselves"}
    blind = await api.client.post(path, json={"title": "Help", "assignee_id": other.id}, headers=api.headers(admin))
    assert blind.status_code == 422
    assert "cannot see this deal" in blind.json()["detail"]
    inactive = await api.client.post(path, json={"title": "Help", "assignee_id": gone.id}, headers=api.headers(admin))
    assert inactive.status_code == 422
    given = await api.client.post(path, json={"title": "Check stock", "assignee_id": me.id}, headers=api.headers(admin))
    assert given.status_code == 201
    assert (given.json()["assignee_id"], given.json()["created_by_id"]) == (me.id, admin.id)
    to_nobody = await api.client.patch(
        f"/api/tasks/{given.json()['id']}", json={"assignee_id": None}, headers=api.headers(me)
    )
    assert to_nobody.json()["assignee"] is None
    back = await api.client.patch(
        f"/api/tasks/{given.json()['id']}", json={"assignee_id": other.id}, headers=api.headers(me)
    )
    assert back.status_code == 403


async def test_due_tasks_are_found_once_until_their_due_time_changes(api: Api) -> None:
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    async with session_scope(api.sessions) as session:
        manager = await create_user(session)
        deal = await create_deal(session, assignee=manager)
        assert deal.id is not None
        for title, due_at, done in (
            ("overdue", now - timedelta(hours=2), False),
            ("due now", now, False),
            ("later", now + timedelta(minutes=1), False),
            ("undated", None, False),
            ("finished", now - timedelta(days=1), True),
        ):
            session.add(Task(deal_id=deal.id, title=title, due_at=due_at, done=done, assignee_id=manager.id))
    async with session_scope(api.sessions) as session:
        due = await due_tasks(session, now)
        assert [task.title for task in due] == ["overdue", "due now"]
        await mark_due_notified(session, [task.id for task in due if task.id is not None], utcnow())
    async with session_scope(api.sessions) as session:
        assert await due_tasks(session, now) == []
        assert [task.title for task in await due_tasks(session, now + timedelta(hours=1))] == ["later"]
    overdue = next(task for task in due if task.title == "overdue")
    rescheduled = await api.client.patch(
        f"/api/tasks/{overdue.id}",
        json={"due_at": (now - timedelta(minutes=5)).isoformat()},
        headers=api.headers(manager),
    )
    assert rescheduled.status_code == 200
    async with session_scope(api.sessions) as session:
        assert [task.title for task in await due_tasks(session, now)] == ["overdue"]


async def test_a_due_task_is_announced_once_with_its_deal_and_again_when_rescheduled(api: Api) -> None:
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    async with session_scope(api.sessions) as session:
        manager = await create_user(session)
        deal = await create_deal(session, assignee=manager, contact_name="Due Dana")
        assert deal.id is not None
        call = Task(deal_id=deal.id, title="Call <Dana> back", due_at=now - timedelta(minutes=1))
        session.add_all([call, Task(deal_id=deal.id, title="later", due_at=now + timedelta(hours=1))])

    async def announced() -> list[TaskDue]:
        async with session_scope(api.sessions) as session:
            payloads = await session.execute(
                select(col(OutboxEvent.payload)).where(col(OutboxEvent.subject) == TaskDue.subject)
            )
            return [TaskDue.model_validate_json(payload) for payload in payloads.scalars()]

    for _ in range(2):  # a repeated sweep announces nothing twice
        async with session_scope(api.sessions) as session:
            await announce_due_tasks(session, now)
    [event] = await announced()
    assert (event.data.task_id, event.data.title, event.data.due_at) == (call.id, "Call <Dana> back", call.due_at)
    assert event.data.assignee_id is None
    assert event.data.deal.assignee_id == manager.id
    assert event.data.deal.contact.display_name == "Due Dana"
    moved = await api.client.patch(
        f"/api/tasks/{call.id}",
        json={"due_at": (now + timedelta(minutes=30)).isoformat()},
        headers=api.headers(manager),
    )
    assert moved.status_code == 200
    async with session_scope(api.sessions) as session:
        assert await announce_due_tasks(session, now + timedelta(minutes=30)) == 1
    assert [e.data.due_at for e in await announced()] == [now - timedelta(minutes=1), now + timedelta(minutes=30)]
