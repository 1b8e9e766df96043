"""Unread counts: the customer's messages no manager has read, shared by the team.

Messages arrive through crm's real inbound path (ingest's parser, the inbound service),
so the wait, the last customer message and the reply tracking are crm's own; the counts
and the read marker are read and moved through the HTTP API.
"""

from __future__ import annotations

import random
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from crm.inbound import InboundService
from crm.models import Channel, Deal, OutboxEvent, User
from jggl_common.contracts import DealUpdated, MetaItemReceived, stable_event_id
from jggl_common.db import session_scope
from jggl_common.meta import split_webhook
from jggl_common.outbox import Outbox
from jggl_sandbox.meta_webhooks import Customer, JSONObject, webhook

from .conftest import Api
from .factories import create_user


class _Recording:
    """Stands in for JetStream under the inbound service (its events are not what is tested)."""

    async def publish_raw(self, messages: Any) -> list[None]:
        return [None] * len(list(messages))


class Chat:
    """One customer writing to a page of their own, through crm's inbound service."""

    def __init__(self, api: Api) -> None:
        self.page = str(10**14 + secrets.randbelow(9 * 10**14))
        self.customer = Customer.new("messenger", random.Random(secrets.randbits(32)), page_id=self.page)
        self.service = InboundService(api.sessions, Outbox(api.sessions, _Recording()))  # type: ignore[arg-type]
        self.api = api

    async def send(self, *items: JSONObject) -> None:
        for item in items:
            _, datas = split_webhook(webhook("messenger", self.page, [item], time_ms=self.customer.clock_ms))
            for data in datas:
                await self.service.handle(
                    MetaItemReceived(id=stable_event_id(data.dedupe_key), producer="ingest", data=data)
                )

    async def writes(self, count: int) -> None:
        await self.send(*(self.customer.text(f"message {n}") for n in range(count)))

    async def deal(self) -> Deal:
        """The customer's deal."""
        async with self.api.sessions() as session:
            query = select(Deal).join(Channel, col(Channel.id) == col(Deal.channel_id))
            return (await session.execute(query.where(col(Channel.external_id) == self.page))).scalar_one()


def _ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


async def _listed(api: Api, user: User, deal_id: int) -> dict[str, Any]:
    response = await api.client.get("/api/deals", params={"status": "open", "limit": 200}, headers=api.headers(user))
    assert response.status_code == 200, response.text
    (item,) = [item for item in response.json()["items"] if item["id"] == deal_id]
    found: dict[str, Any] = item
    return found


async def _read_events(api: Api, deal_id: int) -> list[DealUpdated]:
    async with api.sessions() as session:
        rows = (await session.execute(select(OutboxEvent).order_by(OutboxEvent.id))).scalars().all()  # type: ignore[arg-type]
    events = [DealUpdated.model_validate_json(row.payload) for row in rows if row.subject == "crm.deal.updated"]
    return [e for e in events if e.data.deal.id == deal_id and "manager_read_at" in e.data.changes]


async def test_a_conversations_unread_messages_are_counted_cleared_by_reading_or_replying_for_everyone(
    api: Api,
) -> None:
    async with session_scope(api.sessions) as session:
        first = await create_user(session)
        second = await create_user(session)
        admin = await create_user(session, role="admin")
    chat = Chat(api)
    await chat.writes(3)
    deal = await chat.deal()
    assert deal.id is not None
    last_written = _ms(chat.customer.clock_ms)

    # Unassigned: both managers see the three messages unread, in the list and the deal.
    assert (await _listed(api, first, deal.id))["unread"] == 3
    assert (await _listed(api, second, deal.id))["unread"] == 3
    detail = (await api.client.get(f"/api/deals/{deal.id}", headers=api.headers(second))).json()
    assert detail["unread"] == 3
    assert datetime.fromisoformat(detail["last_inbound_at"]) == last_written

    # One manager opens it: nobody has anything unread any more, and it is announced once.
    read = await api.client.post(f"/api/deals/{deal.id}/read", headers=api.headers(first))
    assert read.status_code == 200, read.text
    assert read.json()["unread"] == 0
    assert (await _listed(api, second, deal.id))["unread"] == 0
    assert (await _listed(api, admin, deal.id))["unread"] == 0
    (event,) = await _read_events(api, deal.id)
    old, new = event.data.changes["manager_read_at"]
    assert old is None
    assert datetime.fromisoformat(new) == last_written
    assert event.data.actor_user_id == first.id
    # Reading again changes nothing and announces nothing.
    assert (await api.client.post(f"/api/deals/{deal.id}/read", headers=api.headers(second))).json()["unread"] == 0
    assert len(await _read_events(api, deal.id)) == 1

    # The customer writes again: only the new messages are unread.
    await chat.writes(2)
    assert (await _listed(api, second, deal.id))["unread"] == 2

    # A reply (here from Meta's inbox) answers them: read, without anyone opening the deal.
    await chat.send(chat.customer.echo("Thanks, we are on it"))
    assert (await _listed(api, first, deal.id))["unread"] == 0
    detail = (await api.client.get(f"/api/deals/{deal.id}", headers=api.headers(first))).json()
    assert detail["unread"] == 0
    # The reply window still counts from the customer's last message, not the reply.
    assert datetime.fromisoformat(detail["last_inbound_at"]) < datetime.fromisoformat(detail["last_message_at"])

    await chat.writes(1)
    assert (await _listed(api, first, deal.id))["unread"] == 1
    assert datetime.fromisoformat(
        (await api.client.get(f"/api/deals/{deal.id}", headers=api.headers(first))).json()["last_inbound_at"]
    ) == _ms(chat.customer.clock_ms)


async def test_counts_stop_at_100_and_a_deal_you_may_not_see_cannot_be_marked_read(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        owner = await create_user(session)
        other = await create_user(session)
    chat = Chat(api)
    await chat.writes(105)
    deal = await chat.deal()
    assert deal.id is not None
    take = await api.client.post(f"/api/deals/{deal.id}/take", headers=api.headers(owner))
    assert take.status_code == 200, take.text
    assert take.json()["unread"] == 100

    # Another manager's deal: not found, and still unread for its owner.
    refused = await api.client.post(f"/api/deals/{deal.id}/read", headers=api.headers(other))
    assert refused.status_code == 404
    assert (await _listed(api, owner, deal.id))["unread"] == 100
    assert await _read_events(api, deal.id) == []
    for path in ("/api/deals/0/read", "/api/deals/abc/read"):
        assert (await api.client.post(path, headers=api.headers(owner))).status_code == 422
    assert (await api.client.post("/api/deals/999999/read", headers=api.headers(owner))).status_code == 404

    assert (await api.client.post(f"/api/deals/{deal.id}/read", headers=api.headers(owner))).json()["unread"] == 0
    assert (await _listed(api, owner, deal.id))["unread"] == 0
