"""A manager's "awaiting reply" inbox: their waiting deals and the unassigned ones, merged
in order page by page (each set is read as its own index range)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from jggl_common.contracts import utcnow
from jggl_common.db import session_scope

from .conftest import Api
from .factories import create_deal, create_user


@pytest.mark.parametrize("sort", ["-last_message_at", "last_message_at"])
async def test_a_managers_waiting_inbox_pages_through_their_and_the_unassigned_deals_in_order(
    api: Api, sort: str
) -> None:
    now = utcnow()
    async with session_scope(api.sessions) as session:
        me = await create_user(session)
        other = await create_user(session)
        expected: list[tuple[Any, int]] = []
        for n in range(23):
            # Mine, unassigned and someone else's, interleaved in time; some at the same
            # moment (ties go by id), some without messages; and deals not waiting at all.
            owner = (me, None, other)[n % 3]
            at = None if n % 7 == 0 else now - timedelta(minutes=n // 2)
            deal = await create_deal(
                session, assignee=owner, last_message_at=at, awaiting_reply_since=now - timedelta(hours=1)
            )
            if owner is not other:
                assert deal.id is not None
                expected.append((at, deal.id))
            await create_deal(session, assignee=owner, last_message_at=now)
            await create_deal(session, assignee=owner, status="won", last_message_at=now, awaiting_reply_since=now)
    smallest = now - timedelta(days=10**4)
    expected.sort(key=lambda row: (row[0] or smallest, row[1]), reverse=sort.startswith("-"))

    seen: list[int] = []
    cursor = None
    for _ in range(20):
        params: dict[str, str | int] = {"status": "open", "awaiting_reply": "true", "sort": sort, "limit": 4}
        response = await api.client.get(
            "/api/deals", params={**params, **({"cursor": cursor} if cursor else {})}, headers=api.headers(me)
        )
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= 4
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [deal_id for _, deal_id in expected]
