"""Requests whose cost grows with what is asked are bounded: statistics over at most 366 days,
every page size capped (each ``limit`` in the schema has a maximum, and one past it is a 422)."""

from __future__ import annotations

from typing import Any

from jggl_common.db import session_scope

from .conftest import Api
from .factories import create_deal, create_user


def _limits(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    """Each list's path, its ``limit``, and a value for its other required parameters (text)."""
    return [
        (
            path,
            parameter["schema"],
            {
                other["name"]: "a"
                for other in operation["parameters"]
                if other["in"] == "query" and other.get("required")
            },
        )
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method == "get"
        for parameter in operation.get("parameters", ())
        if parameter["in"] == "query" and parameter["name"] == "limit"
    ]


async def test_statistics_cover_at_most_366_days(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
    headers = api.headers(admin)
    for report in ("/api/stats/managers", "/api/stats/funnel"):
        year = await api.client.get(
            report, params={"from": "2025-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}, headers=headers
        )
        assert year.status_code == 200, year.text
        longer = await api.client.get(
            report, params={"from": "2025-01-01T00:00:00Z", "to": "2026-01-02T00:00:01Z"}, headers=headers
        )
        assert longer.status_code == 422
        assert longer.json() == {"detail": "The range from 'from' to 'to' may be at most 366 days", "errors": []}
        since_long_ago = await api.client.get(report, params={"from": "2000-01-01T00:00:00Z"}, headers=headers)
        assert since_long_ago.status_code == 422


async def test_every_page_size_is_capped(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        deal = await create_deal(session)
    schema = (await api.client.get("/openapi.json")).json()
    limits = _limits(schema)
    assert len(limits) >= 6
    for path, limit, required in limits:
        assert 1 <= limit["maximum"] <= 1000, path
        url = path.replace("{deal_id}", str(deal.id))
        too_many = await api.client.get(
            url, params={**required, "limit": limit["maximum"] + 1}, headers=api.headers(admin)
        )
        assert too_many.status_code == 422, (path, too_many.text)
        assert "limit" in too_many.json()["detail"]
        most = await api.client.get(url, params={**required, "limit": limit["maximum"]}, headers=api.headers(admin))
        assert most.status_code == 200, (path, most.text)
