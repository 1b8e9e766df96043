"""Listing, reading, changing and taking deals."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlmodel import col

from crm.api import create_app
from crm.models import Activity, Deal, OutboxEvent, Task
from crm.sla import BusinessHours, sweep_sla
from jggl_common.bus import BusUnavailable
from jggl_common.contracts import DealUpdated, utcnow
from jggl_common.db import session_scope
from jggl_common.outbox import Outbox

from .conftest import Api, api_settings
from .factories import create_contact, create_deal, create_message, create_user

SORTS = ["created_at", "-created_at", "last_message_at", "-last_message_at", "amount", "-amount"]


async def walk(api: Api, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    """Every item of a listing, page by page."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await api.client.get("/api/deals", params=query, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination did not end")


def expected_order(deals: list[Deal], sort: str) -> list[int]:
    field = sort.lstrip("-")
    smallest: Any = {"created_at": None, "last_message_at": utcnow() - timedelta(days=10**5), "amount": Decimal(-1)}

    def key(deal: Deal) -> tuple[Any, int]:
        value = getattr(deal, field)
        assert deal.id is not None
        return (smallest[field] if value is None else value), deal.id

    return [deal.id for deal in sorted(deals, key=key, reverse=sort.startswith("-"))]  # type: ignore[misc]


@pytest.mark.parametrize("sort", SORTS)
async def test_keyset_pages_walk_every_deal_once_in_order(api: Api, sort: str) -> None:
    now = utcnow()
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        deals = []
        for index in range(23):
            deals.append(
                await create_deal(
                    session,
                    # Ties on the sort value make the id tie-breaker matter.
                    created_at=now - timedelta(minutes=index // 3),
                    amount=None if index % 4 == 0 else Decimal(index % 5) * 10,
                    last_message_at=None if index % 3 == 0 else now - timedelta(hours=index % 4),
                )
            )
    items = await walk(api, api.headers(admin), sort=sort, limit=4)
    ids = [item["id"] for item in items]
    assert len(ids) == len(set(ids)) == 23
    assert ids == expected_order(deals, sort)


async def test_filters_narrow_the_list(api: Api) -> None:
    now = utcnow()
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        manager = await create_user(session)
        new_open = await create_deal(session, created_at=now - timedelta(days=3))
        won = await create_deal(
            session, status="won", stage="proposal", assignee=manager, created_at=now - timedelta(days=2)
        )
        waiting = await create_deal(
            session,
            awaiting_reply_since=now,
            platform="instagram",
            assignee=manager,
            created_at=now - timedelta(days=1),
        )
    headers = api.headers(admin)

    async def ids(**params: Any) -> set[int]:
        return {item["id"] for item in await walk(api, headers, **params)}

    everything = {new_open.id, won.id, waiting.id}
    assert await ids() == everything
    assert await ids(stage="proposal") == {won.id}
    assert await ids(stage="no-such-stage") == set()
    assert await ids(status="won") == {won.id}
    assert await ids(status="open") == {new_open.id, waiting.id}
    assert await ids(assignee_id=manager.id) == {won.id, waiting.id}
    assert await ids(unassigned="true") == {new_open.id}
    assert await ids(awaiting_reply="true") == {waiting.id}
    assert await ids(awaiting_reply="false") == {new_open.id, won.id}
    assert await ids(platform="instagram") == {waiting.id}
    assert await ids(created_from=(now - timedelta(days=2, minutes=1)).isoformat()) == {won.id, waiting.id}
    assert await ids(created_to=(now - timedelta(days=2, minutes=1)).isoformat()) == {new_open.id}
    conflicting = await api.client.get("/api/deals", params={"unassigned": "true", "assignee_id": 1}, headers=headers)
    assert conflicting.status_code == 422
    for bad in ({"status": "pending"}, {"sort": "name"}, {"limit": 0}, {"limit": 201}, {"assignee_id": 2**40}):
        assert (await api.client.get("/api/deals", params=bad, headers=headers)).status_code == 422, bad


async def test_an_altered_or_foreign_cursor_is_a_400(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        for _ in range(3):
            await create_deal(session)
    headers = api.headers(admin)
    page = (await api.client.get("/api/deals", params={"limit": 1}, headers=headers)).json()
    cursor = page["next_cursor"]
    body, _, signature = cursor.partition(".")
    altered = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + signature
    for bad, params in (
        (altered, {}),
        (cursor, {"sort": "amount"}),  # a cursor of another sort order
        ("garbage", {}),
        ("a.b", {}),
        ("%%%.!!!", {}),
    ):
        response = await api.client.get("/api/deals", params={"limit": 1, "cursor": bad, **params}, headers=headers)
        assert response.status_code == 400, (bad, response.text)
        assert "cursor" in response.json()["detail"]


async def test_deal_detail_and_messages_oldest_first(api: Api) -> None:
    now = utcnow()
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        contact = await create_contact(session, name=None, username="shopper")
        deal = await create_deal(
            session, contact=contact, amount="150.50", comment="wants delivery", first_response_seconds=42, ai_score=7
        )
        late = await create_message(session, deal, text="second", sent_at=now)
        early = await create_message(session, deal, text="first", sent_at=now - timedelta(minutes=5))
        reply = await create_message(
            session, deal, text="answer", direction="out", sent_at=now, author_label="Meta inbox"
        )
    headers = api.headers(admin)
    detail = (await api.client.get(f"/api/deals/{deal.id}", headers=headers)).json()
    assert detail["contact"]["display_name"] == "@shopper"
    assert detail["contact"]["external_id"] == contact.external_id
    assert detail["stage"]["key"] == "new"
    assert detail["amount"] == "150.50"
    assert detail["comment"] == "wants delivery"
    assert detail["first_response_seconds"] == 42
    assert detail["ai_score"] == 7
    assert detail["conversation_id"] == deal.conversation_id
    messages = (await api.client.get(f"/api/deals/{deal.id}/messages", headers=headers)).json()
    assert [m["id"] for m in messages["items"]] == [early.id, late.id, reply.id]
    assert messages["items"][2]["direction"] == "out"
    assert messages["items"][2]["author_label"] == "Meta inbox"
    assert set(messages["items"][0]) >= {
        "id", "mid", "direction", "kind", "text", "attachments", "status", "sent_at", "reactions", "is_edited",
        "is_deleted", "delivered_at", "read_at", "author_user_id", "author_label", "reply_to_mid",
        "quick_reply_payload", "postback_payload",
    }  # fmt: skip
    first_page = (await api.client.get(f"/api/deals/{deal.id}/messages?limit=2", headers=headers)).json()
    assert [m["id"] for m in first_page["items"]] == [late.id, reply.id]
    older = await api.client.get(
        f"/api/deals/{deal.id}/messages", params={"limit": 2, "before": first_page["next_cursor"]}, headers=headers
    )
    assert [m["id"] for m in older.json()["items"]] == [early.id]
    assert older.json()["next_cursor"] is None
    for path in ("/api/deals/999999", "/api/deals/999999/messages", "/api/deals/999999/activities"):
        assert (await api.client.get(path, headers=headers)).status_code == 404
    for path in ("/api/deals/abc", "/api/deals/0", f"/api/deals/{2**31}"):
        assert (await api.client.get(path, headers=headers)).status_code == 422


async def outbox_events(api: Api, deal_id: int) -> list[DealUpdated]:
    async with api.sessions() as session:
        rows = (await session.execute(select(OutboxEvent).order_by(OutboxEvent.id))).scalars().all()  # type: ignore[arg-type]
    events = [DealUpdated.model_validate_json(row.payload) for row in rows if row.subject == "crm.deal.updated"]
    return [event for event in events if event.data.deal.id == deal_id]


async def test_patch_moves_sets_closes_and_records_everything(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        manager = await create_user(session)
        deal = await create_deal(session, assignee=manager)
    headers = api.headers(manager)
    response = await api.client.patch(
        f"/api/deals/{deal.id}",
        json={"stage": "qualified", "amount": "1200.5", "comment": "ready to buy"},
        headers={**headers, "X-Correlation-ID": "corr-patch-1"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["stage"]["key"], body["amount"], body["comment"]) == ("qualified", "1200.50", "ready to buy")

    events = await outbox_events(api, deal.id)  # type: ignore[arg-type]
    assert len(events) == 1
    event = events[0]
    assert event.data.changes == {
        "stage": ("new", "qualified"),
        "amount": (None, "1200.50"),
        "comment": (None, "ready to buy"),
    }
    assert event.data.actor_user_id == manager.id
    assert event.data.deal.stage == "qualified"
    assert event.data.deal.amount == "1200.50"
    assert event.correlation_id == "corr-patch-1"
    assert event.producer == "crm"

    no_reason = await api.client.patch(f"/api/deals/{deal.id}", json={"status": "lost"}, headers=headers)
    assert no_reason.status_code == 422
    blank_reason = await api.client.patch(
        f"/api/deals/{deal.id}", json={"status": "lost", "lost_reason": "  "}, headers=headers
    )
    assert blank_reason.status_code == 422
    lost = await api.client.patch(
        f"/api/deals/{deal.id}", json={"status": "lost", "lost_reason": "too expensive"}, headers=headers
    )
    assert lost.status_code == 200
    assert (lost.json()["status"], lost.json()["lost_reason"]) == ("lost", "too expensive")
    assert lost.json()["closed_at"] is not None
    reopened = await api.client.patch(f"/api/deals/{deal.id}", json={"status": "open"}, headers=headers)
    assert (reopened.json()["status"], reopened.json()["lost_reason"], reopened.json()["closed_at"]) == (
        "open",
        None,
        None,
    )
    won = await api.client.patch(f"/api/deals/{deal.id}", json={"status": "won"}, headers=headers)
    assert won.json()["status"] == "won"
    unchanged = await api.client.patch(f"/api/deals/{deal.id}", json={"status": "won"}, headers=headers)
    assert unchanged.status_code == 200

    timeline = (await api.client.get(f"/api/deals/{deal.id}/activities", headers=headers)).json()["items"]
    assert [item["kind"] for item in timeline] == [
        "stage_changed",
        "amount_changed",
        "comment_changed",
        "lost",
        "reopened",
        "won",
    ]
    assert timeline[0]["data"] == {"from": "new", "to": "qualified"}
    assert timeline[3]["data"] == {"reason": "too expensive"}
    assert all(item["actor_user_id"] == manager.id for item in timeline)
    assert [e.data.changes.get("status") for e in await outbox_events(api, deal.id)] == [  # type: ignore[arg-type]
        None,
        ("open", "lost"),
        ("lost", "open"),
        ("open", "won"),
    ]


async def test_patch_refuses_bad_values(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        inactive = await create_user(session, is_active=False)
        deal = await create_deal(session)
    headers = api.headers(admin)
    for body in (
        {"amount": -1},
        {"amount": "1e20"},
        {"amount": "NaN"},
        {"amount": "1.234"},
        {"stage": None},
        {"status": "closed"},
        {"status": "won", "lost_reason": "why"},
        {"lost_reason": "only a reason"},
        {"stage": "no-such-stage"},
        {"assignee_id": inactive.id},
        {"assignee_id": 999999},
        {"comment": "nul\x00byte"},
        {"unknown": 1},
    ):
        response = await api.client.patch(f"/api/deals/{deal.id}", json=body, headers=headers)
        assert response.status_code == 422, (body, response.text)
    assert await outbox_events(api, deal.id) == []  # type: ignore[arg-type]


async def test_reopening_is_refused_while_the_conversation_has_another_open_deal(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        contact = await create_contact(session, name="Returning customer")
        closed = await create_deal(session, contact=contact, status="lost", lost_reason="no budget")
        await create_deal(session, contact=contact)
    response = await api.client.patch(f"/api/deals/{closed.id}", json={"status": "open"}, headers=api.headers(admin))
    assert response.status_code == 409
    assert "another open deal" in response.json()["detail"]


async def test_take_assigns_once_even_when_two_managers_race(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        first, second = await create_user(session), await create_user(session)
        deal = await create_deal(session)
    responses = await asyncio.gather(
        api.client.post(f"/api/deals/{deal.id}/take", headers=api.headers(first)),
        api.client.post(f"/api/deals/{deal.id}/take", headers=api.headers(second)),
    )
    statuses = sorted(response.status_code for response in responses)
    # The loser no longer sees the deal (it is someone else's now), so it gets 404.
    assert statuses == [200, 404]
    winner = first if responses[0].status_code == 200 else second
    assert responses[0 if winner is first else 1].json()["assignee_id"] == winner.id
    again = await api.client.post(f"/api/deals/{deal.id}/take", headers=api.headers(winner))
    assert again.status_code == 200
    by_admin = await api.client.post(f"/api/deals/{deal.id}/take", headers=api.headers(admin))
    assert by_admin.status_code == 409
    async with api.sessions() as session:
        kinds = (
            (await session.execute(select(col(Activity.kind)).where(col(Activity.deal_id) == deal.id))).scalars().all()
        )
    assert kinds == ["assigned"]
    events = await outbox_events(api, deal.id)  # type: ignore[arg-type]
    assert [event.data.changes for event in events] == [{"assignee_id": (None, winner.id)}]


async def test_assignment_rules(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        manager, other = await create_user(session), await create_user(session)
        deal = await create_deal(session)
    as_manager = api.headers(manager)
    to_other = await api.client.patch(f"/api/deals/{deal.id}", json={"assignee_id": other.id}, headers=as_manager)
    assert to_other.status_code == 403
    to_self = await api.client.patch(f"/api/deals/{deal.id}", json={"assignee_id": manager.id}, headers=as_manager)
    assert to_self.status_code == 200
    assert to_self.json()["assignee"] == {"id": manager.id, "name": manager.name}
    let_go = await api.client.patch(f"/api/deals/{deal.id}", json={"assignee_id": None}, headers=as_manager)
    assert let_go.json()["assignee_id"] is None
    by_admin = await api.client.patch(
        f"/api/deals/{deal.id}", json={"assignee_id": other.id}, headers=api.headers(admin)
    )
    assert by_admin.json()["assignee_id"] == other.id
    assert (await api.client.get(f"/api/deals/{deal.id}", headers=as_manager)).status_code == 404


async def test_deactivating_a_manager_returns_their_open_deals_to_the_pool(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        leaving, colleague = await create_user(session), await create_user(session)
        open_deal = await create_deal(session, assignee=leaving)
        won_deal = await create_deal(session, assignee=leaving, status="won")
    assert (await api.client.get(f"/api/deals/{open_deal.id}", headers=api.headers(colleague))).status_code == 404
    response = await api.client.patch(f"/api/users/{leaving.id}", json={"is_active": False}, headers=api.headers(admin))
    assert response.status_code == 200
    detail = await api.client.get(f"/api/deals/{open_deal.id}", headers=api.headers(colleague))
    assert detail.status_code == 200
    assert detail.json()["assignee_id"] is None
    async with api.sessions() as session:
        assert (await session.get(Deal, won_deal.id)).assignee_id == leaving.id  # type: ignore[union-attr]
    events = await outbox_events(api, open_deal.id)  # type: ignore[arg-type]
    assert [json.loads(event.model_dump_json())["data"]["changes"] for event in events] == [
        {"assignee_id": [leaving.id, None]}
    ]


class RecordingPublisher:
    """Stands in for JetStream: records what the outbox publishes, or fails like a broker that is down."""

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.published: list[tuple[str, bytes, dict[str, str]]] = []

    async def publish_raw(self, messages: Any) -> list[None]:
        if self.fail:
            raise BusUnavailable("broker down")
        batch = list(messages)
        self.published += batch
        return [None for _ in batch]


@pytest.mark.parametrize("broker_up", [True, False])
async def test_events_are_published_right_after_commit_or_left_to_the_relay(
    crm_engine: AsyncEngine, redis: Redis, sessions: async_sessionmaker[AsyncSession], pg_schema: str, broker_up: bool
) -> None:
    publisher = RecordingPublisher(fail=not broker_up)
    outbox = Outbox(sessions, publisher)  # type: ignore[arg-type]
    app = create_app(api_settings(pg_schema), engine=crm_engine, redis=redis, outbox=outbox)
    async with session_scope(sessions) as session:
        admin = await create_user(session, role="admin")
        deal = await create_deal(session)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://crm.test") as client:
            token = app.state.crm.tokens.issue(admin.id, admin.password_hash)
            response = await client.patch(
                f"/api/deals/{deal.id}", json={"amount": 5}, headers={"Authorization": f"Bearer {token}"}
            )
    assert response.status_code == 200
    async with sessions() as session:
        row = (await session.execute(select(OutboxEvent))).scalar_one()
    # Published from memory or not, the row is marked by the relay, not by the request.
    assert row.published_at is None
    if not broker_up:
        assert publisher.published == []
        publisher.fail = False
        await outbox.relay_once()  # the relay's next pass, with the broker back
    else:
        assert await outbox.mark_published() == 1
    [(subject, payload, headers)] = publisher.published
    assert subject == "crm.deal.updated"
    assert headers["Nats-Msg-Id"] == row.event_id
    assert DealUpdated.model_validate_json(payload).data.changes == {"amount": (None, "5.00")}
    async with sessions() as session:
        assert (await session.execute(select(col(OutboxEvent.published_at)))).scalar_one() is not None


async def test_a_late_wait_shows_as_breached_then_escalated_until_it_ends(api: Api) -> None:
    always = BusinessHours.from_settings("00:00-23:59", "UTC", frozenset(range(7)))
    now = datetime(2026, 12, 9, 12, 0, tzinfo=UTC)  # midday: no closing minute in the waits
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        late = await create_deal(session, awaiting_reply_since=now - timedelta(minutes=40))
        on_time = await create_deal(session, awaiting_reply_since=now - timedelta(minutes=5))
    headers = api.headers(admin)

    async def sla(deal: Deal) -> Any:
        response = await api.client.get(f"/api/deals/{deal.id}", headers=headers)
        assert response.status_code == 200, response.text
        return response.json()["sla"]

    assert (await sla(late), await sla(on_time)) == (None, None)  # nothing announced yet
    async with session_scope(api.sessions) as session:
        await sweep_sla(session, always, 30, now)
    assert (await sla(late), await sla(on_time)) == ("breached", None)
    async with session_scope(api.sessions) as session:
        await sweep_sla(session, always, 30, now + timedelta(minutes=25))
    assert (await sla(late), await sla(on_time)) == ("escalated", "breached")
    # The customer was answered: the wait, and its breach, are over.
    async with session_scope(api.sessions) as session:
        stored = await session.get(Deal, late.id)
        assert stored is not None
        stored.awaiting_reply_since = None
    assert await sla(late) is None
    listed = {item["id"]: item["sla"] for item in await walk(api, headers)}
    assert listed == {late.id: None, on_time.id: "breached"}
    assert [item["id"] for item in await walk(api, headers, sla="breached")] == [on_time.id]
    assert await walk(api, headers, sla="escalated") == []
    assert (await api.client.get("/api/deals", params={"sla": "late"}, headers=headers)).status_code == 422


async def test_deals_with_overdue_tasks_are_found_by_the_filter(api: Api) -> None:
    now = utcnow()
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        overdue, upcoming, finished, none = [await create_deal(session) for _ in range(4)]
        assert overdue.id is not None
        assert upcoming.id is not None
        assert finished.id is not None
        assert none.id is not None
        session.add_all(
            [
                Task(deal_id=overdue.id, title="call back", due_at=now - timedelta(hours=1)),
                Task(deal_id=overdue.id, title="later", due_at=now + timedelta(days=1)),
                Task(deal_id=upcoming.id, title="later", due_at=now + timedelta(hours=1)),
                Task(deal_id=finished.id, title="done", due_at=now - timedelta(hours=1), done=True),
                Task(deal_id=none.id, title="someday", due_at=None),
            ]
        )
    headers = api.headers(admin)
    assert [item["id"] for item in await walk(api, headers, overdue_tasks="true")] == [overdue.id]
    assert {item["id"] for item in await walk(api, headers, overdue_tasks="false")} == {
        upcoming.id,
        finished.id,
        none.id,
    }


async def test_a_timeline_names_the_users_it_mentions_to_a_manager_too(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin", name="Ada Admin")
        manager = await create_user(session, name="Mia Manager")
        deal = await create_deal(session)
    assigned = await api.client.patch(
        f"/api/deals/{deal.id}", json={"assignee_id": manager.id}, headers=api.headers(admin)
    )
    assert assigned.status_code == 200, assigned.text
    timeline = (await api.client.get(f"/api/deals/{deal.id}/activities", headers=api.headers(manager))).json()
    (entry,) = [item for item in timeline["items"] if item["kind"] == "assigned"]
    assert (entry["actor_user_id"], entry["data"]) == (admin.id, {"from": None, "to": manager.id})
    assert timeline["user_names"] == {str(admin.id): "Ada Admin", str(manager.id): "Mia Manager"}
