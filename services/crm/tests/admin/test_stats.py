"""Statistics over a scripted conversation with known timings: exact medians and p90s."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from crm.conversation.repository import recompute_deal
from crm.models import Deal, User
from jggl_common.contracts import utcnow
from jggl_common.db import session_scope

from ..api.factories import create_deal, create_message, create_user
from .conftest import Api

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
RANGE = {"from": (T0 - timedelta(hours=1)).isoformat(), "to": (T0 + timedelta(days=1)).isoformat()}


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def _script(api: Api) -> dict[str, Any]:
    """Two managers, an admin, a deactivated manager and Meta's inbox answering customers.

    Response times (seconds), as the response tracking derives them from the messages:
    Anna 60, 120, 300, 600, 240 plus a follow-up that answers nobody; Boris 30 after a
    failed send; Meta inbox 900. First responses: Anna 60 and 300, Boris 30, Meta inbox 900.
    """
    async with session_scope(api.sessions) as session:
        anna = await create_user(session, name="Anna")
        boris = await create_user(session, name="Boris")
        admin = await create_user(session, role="admin", name="Zoe Admin")
        await create_user(session, name="Gone", is_active=False)

        won = await create_deal(session, assignee=anna, status="won", closed_at=at(3600))
        await _talk(session, won, [("in", 0, None), ("out", 60, anna), ("in", 600, None), ("out", 720, anna)])

        busy = await create_deal(session, assignee=anna)
        await _talk(
            session,
            busy,
            [("in", 1000, None), ("out", 1300, anna), ("in", 2000, None), ("out", 2600, anna), ("out", 2700, anna)],
        )

        lost = await create_deal(session, assignee=boris, status="lost", closed_at=at(7200), lost_reason="price")
        await _talk(session, lost, [("in", 100, None), ("failed", 110, boris), ("out", 130, boris)])

        echoed = await create_deal(session, assignee=anna)
        await _talk(session, echoed, [("in", 200, None), ("echo", 1100, None), ("in", 3000, None), ("out", 3240, anna)])

        await create_deal(session, assignee=boris)  # open, nothing said yet

        # Outside the range: counted nowhere.
        old = await create_deal(session, assignee=anna, status="won", closed_at=at(-9 * 86400))
        await _talk(session, old, [("in", -10 * 86400, None), ("out", -10 * 86400 + 50, anna)])
    return {"anna": anna, "boris": boris, "admin": admin, "deals": [won, busy, lost, echoed, old]}


async def _talk(session: Any, deal: Deal, script: list[tuple[str, int, User | None]]) -> None:
    """Messages at the given offsets, with the response times the tracking would give them."""
    waiting: int | None = None
    first: tuple[int, datetime] | None = None
    for kind, offset, author in script:
        if kind == "in":
            waiting = offset if waiting is None else waiting
            await create_message(session, deal, direction="in", sent_at=at(offset))
            continue
        if kind == "failed":
            await create_message(session, deal, direction="out", sent_at=at(offset), author=author, status="failed")
            continue
        response = offset - waiting if waiting is not None else None
        if response is not None and first is None:
            first = (response, at(offset))
        waiting = None
        await create_message(
            session,
            deal,
            direction="out",
            sent_at=at(offset),
            author=author,
            author_label="Meta inbox" if kind == "echo" else None,
            response_seconds=response,
        )
    if first is not None:
        deal.first_response_seconds, deal.first_response_at = first
    await session.flush()


def _rows(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: {key: value for key, value in row.items() if key not in ("name",)} for row in body["items"]}


EXPECTED_ANNA = {
    "replies": 6,
    "median_response_seconds": 240.0,
    "p90_response_seconds": 480.0,  # 300 + 0.6 * (600 - 300), interpolated
    "first_responses": 2,
    "median_first_response_seconds": 180.0,
    "deals_won": 1,
    "deals_lost": 0,
    "open_deals": 2,
    "ai_scored_deals": 0,
    "ai_score_average": None,
}
EXPECTED_BORIS = {
    "replies": 1,
    "median_response_seconds": 30.0,
    "p90_response_seconds": 30.0,
    "first_responses": 1,
    "median_first_response_seconds": 30.0,
    "deals_won": 0,
    "deals_lost": 1,
    "open_deals": 1,
    "ai_scored_deals": 0,
    "ai_score_average": None,
}
EXPECTED_META_INBOX = {
    "user_id": None,
    "role": None,
    "replies": 1,
    "median_response_seconds": 900.0,
    "p90_response_seconds": 900.0,
    "first_responses": 1,
    "median_first_response_seconds": 900.0,
    "deals_won": 0,
    "deals_lost": 0,
    "open_deals": 0,
    "ai_scored_deals": 0,
    "ai_score_average": None,
}


async def test_manager_statistics_match_the_scripted_timings_exactly(api: Api) -> None:
    script = await _script(api)
    anna, boris, admin = script["anna"], script["boris"], script["admin"]

    response = await api.client.get("/api/stats/managers", params=RANGE, headers=api.headers(admin))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from"], body["to"]) == ("2026-03-02T09:00:00Z", "2026-03-03T10:00:00Z")
    rows = _rows(body)
    assert list(rows) == ["Anna", "Boris", "Zoe Admin", "Meta inbox"]
    assert rows["Anna"] == {"user_id": anna.id, "role": "manager", **EXPECTED_ANNA}
    assert rows["Boris"] == {"user_id": boris.id, "role": "manager", **EXPECTED_BORIS}
    assert rows["Meta inbox"] == EXPECTED_META_INBOX
    assert rows["Zoe Admin"]["replies"] == 0
    assert rows["Zoe Admin"]["median_response_seconds"] is None

    # A manager sees their own row only.
    own = _rows((await api.client.get("/api/stats/managers", params=RANGE, headers=api.headers(boris))).json())
    assert own == {"Boris": {"user_id": boris.id, "role": "manager", **EXPECTED_BORIS}}

    # crm's own response tracking derives exactly these timings from the same messages.
    async with session_scope(api.sessions) as session:
        for deal in script["deals"]:
            await recompute_deal(session, deal.id)
    again = (await api.client.get("/api/stats/managers", params=RANGE, headers=api.headers(admin))).json()
    assert again == body

    empty = (await api.client.get("/api/stats/managers", headers=api.headers(anna))).json()
    assert _rows(empty)["Anna"]["replies"] == 0  # the default range is the last 30 days
    assert _rows(empty)["Anna"]["open_deals"] == 2
    backwards = await api.client.get(
        "/api/stats/managers", params={"from": RANGE["to"], "to": RANGE["from"]}, headers=api.headers(anna)
    )
    assert backwards.status_code == 422


async def test_the_funnel_counts_how_far_deals_got(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        manager = await create_user(session)
        other = await create_user(session)
        stayed = await create_deal(session, assignee=manager)
        climbing = await create_deal(session, assignee=other)
        fell_back = await create_deal(session, assignee=manager)
        closer = await create_deal(session)
        dropped = await create_deal(session, assignee=manager)
        await create_deal(session, assignee=manager, stage="proposal", created_at=utcnow() - timedelta(days=40))
    headers = api.headers(admin)

    async def patch(deal: Deal, **changes: Any) -> None:
        response = await api.client.patch(f"/api/deals/{deal.id}", json=changes, headers=headers)
        assert response.status_code == 200, response.text

    await patch(climbing, stage="contacted")
    await patch(climbing, stage="qualified")
    await patch(fell_back, stage="proposal")
    await patch(fell_back, stage="contacted")
    await patch(closer, stage="negotiation")
    await patch(closer, status="won")
    await patch(dropped, status="lost", lost_reason="no budget")
    assert stayed.id

    funnel = (await api.client.get("/api/stats/funnel", headers=headers)).json()
    assert (funnel["deals"], funnel["open"], funnel["won"], funnel["lost"], funnel["win_rate"]) == (5, 3, 1, 1, 0.5)
    stages = {stage["key"]: stage for stage in funnel["stages"]}
    assert [stage["key"] for stage in funnel["stages"]] == ["new", "contacted", "qualified", "proposal", "negotiation"]
    assert [stages[key]["reached"] for key in stages] == [5, 3, 3, 2, 1]
    assert [stages[key]["conversion_to_next"] for key in stages] == [0.6, 1.0, 0.6667, 0.5, None]
    assert (stages["new"]["open"], stages["new"]["lost"]) == (1, 1)
    assert (stages["contacted"]["open"], stages["qualified"]["open"]) == (1, 1)
    assert stages["negotiation"]["won"] == 1

    # A manager's funnel covers the deals they may see: not the one assigned to someone else.
    mine = (await api.client.get("/api/stats/funnel", headers=api.headers(manager))).json()
    assert mine["deals"] == 4
    assert [stage["reached"] for stage in mine["stages"]] == [4, 2, 2, 2, 1]
