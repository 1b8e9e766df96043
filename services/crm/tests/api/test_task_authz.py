"""Who a task belongs to: a manager never takes or drops a colleague's task, and a task goes
with its deal to whoever the deal goes to, so nobody keeps a task on a deal they cannot see."""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import col

from crm.models import Activity, Task
from jggl_common.db import session_scope

from .conftest import Api
from .factories import create_deal, create_user


async def _assignees(api: Api, deal_id: int | None) -> dict[str, int | None]:
    async with api.sessions() as session:
        tasks = (await session.execute(select(Task).where(col(Task.deal_id) == deal_id))).scalars().all()
    return {task.title: task.assignee_id for task in tasks}


async def test_a_manager_cannot_clear_or_take_a_colleagues_task_on_a_shared_deal(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        olena, petro = await create_user(session), await create_user(session)
        admin = await create_user(session, role="admin")
        shared = await create_deal(session)
    created = await api.client.post(
        f"/api/deals/{shared.id}/tasks", json={"title": "Call back"}, headers=api.headers(olena)
    )
    assert created.status_code == 201, created.text
    task = f"/api/tasks/{created.json()['id']}"

    for change in ({"assignee_id": None}, {"assignee_id": petro.id}):
        refused = await api.client.patch(task, json=change, headers=api.headers(petro))
        assert refused.status_code == 403, (change, refused.text)
        assert refused.json() == {"detail": "This task is assigned to someone else; only an admin can reassign it"}
    assert await _assignees(api, shared.id) == {"Call back": olena.id}
    # Petro still works the task of a deal he sees: only its owner changes hands.
    renamed = await api.client.patch(task, json={"title": "Call back today"}, headers=api.headers(petro))
    assert (renamed.status_code, renamed.json()["assignee_id"]) == (200, olena.id)

    # Olena lets go of her own; then it is nobody's, and Petro may take it.
    released = await api.client.patch(task, json={"assignee_id": None}, headers=api.headers(olena))
    assert (released.status_code, released.json()["assignee"]) == (200, None)
    taken = await api.client.patch(task, json={"assignee_id": petro.id}, headers=api.headers(petro))
    assert (taken.status_code, taken.json()["assignee_id"]) == (200, petro.id)
    # An admin reassigns anyone's task.
    moved = await api.client.patch(task, json={"assignee_id": olena.id}, headers=api.headers(admin))
    assert (moved.status_code, moved.json()["assignee_id"]) == (200, olena.id)
    assert await _assignees(api, shared.id) == {"Call back today": olena.id}


async def test_a_deals_tasks_go_with_it_to_the_manager_an_admin_gives_it_to(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        olena, petro, ivan = await create_user(session), await create_user(session), await create_user(session)
        admin = await create_user(session, role="admin")
        shared = await create_deal(session)
    for user, title in ((olena, "Olena's"), (petro, "Petro's"), (ivan, "Ivan's"), (admin, "Admin's")):
        created = await api.client.post(
            f"/api/deals/{shared.id}/tasks", json={"title": title}, headers=api.headers(user)
        )
        assert created.status_code == 201, created.text
    done = (await api.client.get(f"/api/deals/{shared.id}/tasks", headers=api.headers(petro))).json()["items"]
    petros = next(item["id"] for item in done if item["title"] == "Petro's")
    assert (await api.client.patch(f"/api/tasks/{petros}", json={"done": True}, headers=api.headers(petro))).is_success

    given = await api.client.patch(f"/api/deals/{shared.id}", json={"assignee_id": ivan.id}, headers=api.headers(admin))
    assert given.status_code == 200, given.text

    # Olena and Petro no longer see the deal: their tasks, open or done, are Ivan's now;
    # the admin still sees it and keeps theirs.
    assert await _assignees(api, shared.id) == {
        "Olena's": ivan.id,
        "Petro's": ivan.id,
        "Ivan's": ivan.id,
        "Admin's": admin.id,
    }
    listed = (await api.client.get(f"/api/deals/{shared.id}/tasks", headers=api.headers(ivan))).json()["items"]
    assert {item["title"]: item["assignee"]["id"] for item in listed}["Olena's"] == ivan.id
    assert (await api.client.get(f"/api/deals/{shared.id}/tasks", headers=api.headers(olena))).status_code == 404

    # Given back to nobody, the deal is everyone's again: the tasks stay with Ivan.
    freed = await api.client.patch(f"/api/deals/{shared.id}", json={"assignee_id": None}, headers=api.headers(admin))
    assert freed.status_code == 200, freed.text
    assert set((await _assignees(api, shared.id)).values()) == {ivan.id, admin.id}


async def test_a_deals_tasks_go_with_it_to_the_manager_who_takes_it(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        olena, petro = await create_user(session), await create_user(session)
        shared = await create_deal(session)
    created = await api.client.post(
        f"/api/deals/{shared.id}/tasks", json={"title": "Quote"}, headers=api.headers(olena)
    )
    assert created.status_code == 201, created.text

    taken = await api.client.post(f"/api/deals/{shared.id}/take", headers=api.headers(petro))
    assert taken.status_code == 200, taken.text

    assert await _assignees(api, shared.id) == {"Quote": petro.id}
    mine = (await api.client.get(f"/api/deals/{shared.id}/tasks", headers=api.headers(petro))).json()["items"]
    assert [(item["title"], item["assignee"]["id"]) for item in mine] == [("Quote", petro.id)]


async def test_a_deactivated_managers_tasks_go_to_nobody(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        olena, petro = await create_user(session), await create_user(session)
        admin = await create_user(session, role="admin")
        hers = await create_deal(session, assignee=olena)
        shared = await create_deal(session)
    for deal, title in ((hers, "Quote"), (shared, "Call back")):
        created = await api.client.post(
            f"/api/deals/{deal.id}/tasks", json={"title": title}, headers=api.headers(olena)
        )
        assert created.status_code == 201, created.text
    assert (
        await api.client.post(f"/api/deals/{shared.id}/tasks", json={"title": "Petro's"}, headers=api.headers(petro))
    ).status_code == 201

    deactivated = await api.client.patch(
        f"/api/users/{olena.id}", json={"is_active": False}, headers=api.headers(admin)
    )
    assert deactivated.status_code == 200, deactivated.text

    assert await _assignees(api, hers.id) == {"Quote": None}
    assert await _assignees(api, shared.id) == {"Call back": None, "Petro's": petro.id}
    # Nobody's now, on deals the team sees: a colleague takes them.
    listed = (await api.client.get(f"/api/deals/{hers.id}/tasks", headers=api.headers(petro))).json()["items"]
    taken = await api.client.patch(
        f"/api/tasks/{listed[0]['id']}", json={"assignee_id": petro.id}, headers=api.headers(petro)
    )
    assert (taken.status_code, taken.json()["assignee_id"]) == (200, petro.id)


async def test_a_demoted_admins_open_tasks_on_colleagues_deals_go_to_those_deals_assignees(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        olena, petro = await create_user(session), await create_user(session)
        ada, boss = await create_user(session, role="admin"), await create_user(session, role="admin")
        hers, his = await create_deal(session, assignee=olena), await create_deal(session, assignee=petro)
        adas, shared = await create_deal(session, assignee=ada), await create_deal(session)
    for deal, title in ((hers, "Quote"), (hers, "Old call"), (his, "Invoice"), (adas, "Own"), (shared, "Qualify")):
        created = await api.client.post(f"/api/deals/{deal.id}/tasks", json={"title": title}, headers=api.headers(ada))
        assert created.status_code == 201, created.text
        if title == "Old call":
            done = await api.client.patch(
                f"/api/tasks/{created.json()['id']}", json={"done": True}, headers=api.headers(ada)
            )
            assert done.status_code == 200, done.text

    demoted = await api.client.patch(f"/api/users/{ada.id}", json={"role": "manager"}, headers=api.headers(boss))
    assert demoted.status_code == 200, demoted.text

    # Ada no longer sees Olena's and Petro's deals: what she still had to do there is theirs
    # now; what she finished stays hers, and so do the tasks of deals she still sees.
    assert await _assignees(api, hers.id) == {"Quote": olena.id, "Old call": ada.id}
    assert await _assignees(api, his.id) == {"Invoice": petro.id}
    assert await _assignees(api, adas.id) == {"Own": ada.id}
    assert await _assignees(api, shared.id) == {"Qualify": ada.id}
    listed = (await api.client.get(f"/api/deals/{hers.id}/tasks", headers=api.headers(olena))).json()["items"]
    assert {item["title"]: item["assignee"]["id"] for item in listed}["Quote"] == olena.id

    # Made an admin again and then a manager with nothing left elsewhere: nothing moves.
    for role in ("admin", "manager"):
        changed = await api.client.patch(f"/api/users/{ada.id}", json={"role": role}, headers=api.headers(boss))
        assert changed.status_code == 200, changed.text
    assert await _assignees(api, adas.id) == {"Own": ada.id}
    assert await _assignees(api, hers.id) == {"Quote": olena.id, "Old call": ada.id}


async def test_every_change_of_hands_of_a_task_is_on_its_deals_timeline(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        olena = await create_user(session, name="Olena")
        petro = await create_user(session, name="Petro")
        ada = await create_user(session, role="admin", name="Ada")
        boss = await create_user(session, role="admin", name="Boss")
        deal = await create_deal(session)
    tasks = f"/api/deals/{deal.id}/tasks"
    quote = (await api.client.post(tasks, json={"title": "Quote"}, headers=api.headers(olena))).json()["id"]
    for user, assignee in ((olena, None), (petro, petro.id)):
        moved = await api.client.patch(f"/api/tasks/{quote}", json={"assignee_id": assignee}, headers=api.headers(user))
        assert moved.status_code == 200, moved.text
    given = await api.client.patch(f"/api/deals/{deal.id}", json={"assignee_id": olena.id}, headers=api.headers(boss))
    assert given.status_code == 200, given.text
    invoice = await api.client.post(tasks, json={"title": "Invoice"}, headers=api.headers(ada))
    assert invoice.status_code == 201, invoice.text
    for change, who in (({"role": "manager"}, ada), ({"is_active": False}, olena)):
        changed = await api.client.patch(f"/api/users/{who.id}", json=change, headers=api.headers(boss))
        assert changed.status_code == 200, changed.text

    answer = (await api.client.get(f"/api/deals/{deal.id}/activities", headers=api.headers(boss))).json()
    fields = ("title", "from", "to", "reason")
    entries = [
        (item["kind"], item["actor_user_id"], *(item["data"].get(field) for field in fields))
        for item in answer["items"]
        if item["kind"] in ("assigned", "task_reassigned")
    ]
    assert entries == [
        ("task_reassigned", olena.id, "Quote", olena.id, None, None),
        ("task_reassigned", petro.id, "Quote", None, petro.id, None),
        ("assigned", boss.id, None, None, olena.id, None),
        ("task_reassigned", boss.id, "Quote", petro.id, olena.id, "deal_assigned"),
        ("task_reassigned", boss.id, "Invoice", ada.id, olena.id, "demoted"),
        ("assigned", boss.id, None, olena.id, None, "deactivated"),
        ("task_reassigned", boss.id, "Quote", olena.id, None, "deactivated"),
        ("task_reassigned", boss.id, "Invoice", olena.id, None, "deactivated"),
    ]
    assert {item["data"]["task_id"] for item in answer["items"] if item["kind"] == "task_reassigned"} == {
        quote,
        invoice.json()["id"],
    }
    # The page names everyone a task moved between.
    assert {olena.id, petro.id, ada.id, boss.id} <= {int(key) for key in answer["user_names"]}
    assert answer["user_names"][str(ada.id)] == "Ada"

    # The entries are rows of the deal's timeline, written with the moves.
    async with api.sessions() as session:
        rows = (
            (
                await session.execute(
                    select(Activity)
                    .where(col(Activity.deal_id) == deal.id, col(Activity.kind) == "task_reassigned")
                    .order_by(col(Activity.id))
                )
            )
            .scalars()
            .all()
        )
    assert [(row.actor_user_id, row.data["to"]) for row in rows] == [
        (olena.id, None),
        (petro.id, petro.id),
        (boss.id, olena.id),
        (boss.id, olena.id),
        (boss.id, None),
        (boss.id, None),
    ]
