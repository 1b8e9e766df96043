"""Full-text search over deals: prefixes, any language, weights, highlighting, roles."""

from __future__ import annotations

from typing import Any

import pytest

from crm.search.service import prefix_query, render_snippet
from jggl_common.db import session_scope

from .conftest import Api
from .factories import create_contact, create_deal, create_user


async def search(api: Api, headers: dict[str, str], q: str, **params: Any) -> list[dict[str, Any]]:
    response = await api.client.get("/api/search", params={"q": q, **params}, headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_search_by_name_prefix_message_word_and_comment(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        ivan = await create_deal(session, contact_name="Иван Петров")
        by_message = await create_deal(session, contact_name="Olga", last_message_text="Нужна доставка в Минск завтра")
        by_comment = await create_deal(session, contact_name="Pavel", comment="prefers wholesale pricing")
        by_summary = await create_deal(session, contact_name="Anna", ai_summary="Клиент спрашивает про гарантию")
    headers = api.headers(admin)

    found = await search(api, headers, "Ив")
    assert [hit["id"] for hit in found] == [ivan.id]
    assert "<mark>Иван</mark>" in found[0]["snippet"]
    assert found[0]["contact"]["display_name"] == "Иван Петров"
    assert [hit["id"] for hit in await search(api, headers, "иван петр")] == [ivan.id]
    assert [hit["id"] for hit in await search(api, headers, "иван olga")] == []

    message_hits = await search(api, headers, "доставка")
    assert [hit["id"] for hit in message_hits] == [by_message.id]
    assert "<mark>доставка</mark>" in message_hits[0]["snippet"]
    assert [hit["id"] for hit in await search(api, headers, "МИНСК")] == [by_message.id]
    assert [hit["id"] for hit in await search(api, headers, "wholesale")] == [by_comment.id]
    assert [hit["id"] for hit in await search(api, headers, "гарант")] == [by_summary.id]


async def test_a_name_match_ranks_above_a_message_match(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        # Created first, so a plain id order would put it last.
        named = await create_deal(session, contact_name="Марина Соколова")
        mentioned = await create_deal(
            session, contact_name="Dmitry", last_message_text="Марина посоветовала вас, Марина сказала что хорошо"
        )
    hits = await search(api, api.headers(admin), "марина")
    assert [hit["id"] for hit in hits] == [named.id, mentioned.id]
    assert hits[0]["rank"] > hits[1]["rank"]
    assert all("<mark>" in hit["snippet"] for hit in hits)


async def test_search_respects_roles_and_limits(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        me, other = await create_user(session), await create_user(session)
        contact = await create_contact(session, name="Zelda Common")
        mine = await create_deal(session, contact=contact, assignee=me, status="won")
        free = await create_deal(session, contact_name="Zelda Free")
        await create_deal(session, contact_name="Zelda Hidden", assignee=other)
    assert {hit["id"] for hit in await search(api, api.headers(me), "zelda")} == {mine.id, free.id}
    assert len(await search(api, api.headers(admin), "zelda")) == 3
    assert len(await search(api, api.headers(admin), "zelda", limit=1)) == 1


async def test_hostile_and_empty_queries(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        deal = await create_deal(session, contact_name="O'Brien", comment="price < 5 & size > 2, ask brien")
    headers = api.headers(admin)
    for q in ("", "   "):
        response = await api.client.get("/api/search", params={"q": q}, headers=headers)
        assert response.status_code == 422
    assert (await api.client.get("/api/search", headers=headers)).status_code == 422
    for q in ("!!!", "&|():*'\\<->", "o'brien:*", "a & !b", "x" * 200, "%00", "))((", "brien)|(script"):
        assert (await api.client.get("/api/search", params={"q": q}, headers=headers)).status_code == 200, q
    hits = await search(api, headers, "brien")
    assert [hit["id"] for hit in hits] == [deal.id]
    snippet = hits[0]["snippet"]
    assert "&lt; 5 &amp; size &gt; 2" in snippet
    assert snippet.replace("<mark>", "").replace("</mark>", "").count("<") == 0
    assert [hit["id"] for hit in await search(api, headers, "o'brien")] == [deal.id]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Ив", "ив:*"),
        ("  иван   ПЕТР ", "иван:* & петр:*"),
        ("a&b|!c:*'d", "a:* & b:* & c:* & d:*"),
        ("!!! ()", None),
    ],
)
def test_prefix_query_keeps_only_words(text: str, expected: str | None) -> None:
    assert prefix_query(text) == expected


def test_snippets_are_escaped_html_with_marks() -> None:
    assert render_snippet("<b>\ue000x\ue001</b> & y") == "&lt;b&gt;<mark>x</mark>&lt;/b&gt; &amp; y"
