"""The ways search and the contact list answer at scale, exercised on small data.

The thresholds that pick a way (how broad a search is, how many contacts the walk looks
at) are lowered here, so a handful of rows takes the paths a million would.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from crm.contacts import repository as contacts_repository
from crm.search import service as search_service
from crm.search import statistics as search_statistics
from crm.search.statistics import LexemeStatistics, lexeme_statistics
from jggl_common.contracts import utcnow
from jggl_common.db import session_scope

from .conftest import Api
from .factories import create_contact, create_deal, create_user


def statistics(**shares: float) -> LexemeStatistics:
    """Statistics in which each given lexeme is in that share of deals."""
    made = LexemeStatistics.of(
        list(shares), [*shares.values(), min(shares.values()), max(shares.values())], deals=1_000_000
    )
    assert made is not None
    return made


@pytest.fixture
def broad(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every word counts as very common; five candidates per search, a window of 100 deals."""

    async def common(_: AsyncSession) -> LexemeStatistics:
        return statistics(zelda=0.9, zeldas=0.5, ordinary=0.9)

    monkeypatch.setattr(search_service, "lexeme_statistics", common)
    monkeypatch.setattr(search_service, "MIN_CANDIDATES", 5)
    monkeypatch.setattr(search_service, "MAX_CANDIDATES", 5)
    monkeypatch.setattr(search_service, "RECENT_WINDOW", 100)


async def ids(api: Api, headers: dict[str, str], q: str, **params: Any) -> list[int]:
    response = await api.client.get("/api/search", params={"q": q, **params}, headers=headers)
    assert response.status_code == 200, response.text
    assert all("<mark>" in hit["snippet"] for hit in response.json()["items"])
    return [hit["id"] for hit in response.json()["items"]]


def test_word_shares_come_from_the_lexemes_with_that_prefix() -> None:
    stats = statistics(иван=0.08, иванов=0.05, ивановна=0.01, петров=0.02, ив=0.001)
    assert stats.word_share("иван") == pytest.approx(0.14 + 0.0005)
    assert stats.word_share("ив") == pytest.approx(0.141 + 0.0005)
    assert stats.word_share("петрова") == pytest.approx(0.0005)
    assert stats.word_share("zz") == pytest.approx(0.0005)
    assert stats.query_share(["иван", "петров"]) == pytest.approx(0.1405 * 0.0205)
    assert stats.index_entries(["иван", "петров"]) == pytest.approx((0.1405 + 0.0205) * 1_000_000)
    assert LexemeStatistics.of([], [], 0) is None


def test_a_broad_search_walks_twice_the_deals_expected_to_hold_its_candidates() -> None:
    assert search_service.recent_window(0.2, 50) == 500
    assert search_service.recent_window(0.005, 50) == 20_000
    assert search_service.recent_window(0.001, 50) is None
    assert search_service.recent_window(0.0, 50) is None
    assert search_service.candidate_count(20) == 50
    assert search_service.candidate_count(50) == 125


async def test_statistics_are_absent_before_analyze_and_read_after(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search_statistics, "REFRESH_SECONDS", 0.0)
    async with session_scope(api.sessions) as session:
        for i in range(30):
            await create_deal(session, contact_name=f"Zelda Analyzed {i}")
    async with api.sessions() as session:
        assert await lexeme_statistics(session) is None
        await session.execute(text("ANALYZE deals"))
        analysed = await lexeme_statistics(session)
    assert analysed is not None
    assert analysed.word_share("zeld") == pytest.approx(1.0)
    assert analysed.word_share("qqq") < 0.5


async def test_a_broad_search_ranks_the_newest_matches(api: Api, broad: None) -> None:
    start = utcnow() - timedelta(days=30)
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        old_name = await create_deal(session, contact_name="Zelda Old", created_at=start)
        mentions = [
            await create_deal(
                session, contact_name=f"Client {i}", last_message_text="zelda said hi", created_at=start + timedelta(i)
            )
            for i in range(1, 8)
        ]
        new_name = await create_deal(session, contact_name="Zelda New", created_at=start + timedelta(10))
    found = await ids(api, api.headers(admin), "zelda", limit=3)
    # The five newest matches are ranked: the name match first, then the newest mentions.
    assert found == [new_name.id, mentions[-1].id, mentions[-2].id]
    assert old_name.id not in await ids(api, api.headers(admin), "zelda", limit=5)


async def test_a_broad_search_keeps_to_what_a_manager_sees(api: Api, broad: None) -> None:
    start = utcnow() - timedelta(days=30)
    async with session_scope(api.sessions) as session:
        me, other = await create_user(session), await create_user(session)
        visible = []
        for i in range(12):
            assignee = (me, None, other)[i % 3]
            deal = await create_deal(
                session, contact_name=f"Zelda {i}", assignee=assignee, created_at=start + timedelta(i)
            )
            if assignee is not other:
                visible.append(deal.id)
    found = await ids(api, api.headers(me), "zelda", limit=5)
    assert sorted(found, reverse=True) == sorted((i for i in visible if i is not None), reverse=True)[:5]


async def test_a_broad_guess_with_few_matches_answers_exactly(api: Api, broad: None) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        named = await create_deal(session, contact_name="Ordinary Person")
        mentioned = await create_deal(session, contact_name="Someone", comment="an ordinary request")
        for i in range(150):
            await create_deal(session, contact_name=f"Filler {i}", created_at=utcnow() + timedelta(seconds=i))
    # Fewer than five matches among the newest hundred deals: every match is ranked.
    assert await ids(api, api.headers(admin), "ordinary") == [named.id, mentioned.id]


async def test_rare_words_drive_the_index_and_every_word_still_counts(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def shares(_: AsyncSession) -> LexemeStatistics:
        return statistics(order=0.3, delivery=0.2, rare=0.001)

    monkeypatch.setattr(search_service, "lexeme_statistics", shares)
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        wanted = await create_deal(session, contact_name="Buyer", last_message_text="order 123456 delivery")
        await create_deal(session, contact_name="Other", last_message_text="order 123999 delivery")
        await create_deal(session, contact_name="Third", last_message_text="invoice 123456")
    headers = api.headers(admin)
    assert await ids(api, headers, "order 123456") == [wanted.id]
    assert await ids(api, headers, "123456 deliv ord") == [wanted.id]
    assert len(await ids(api, headers, "order delivery")) == 2


@pytest.mark.parametrize("few_names", [1_000, 1], ids=["names-checked-one-by-one", "names-intersected"])
async def test_a_manager_contact_list_beyond_the_newest_contacts(
    api: Api, monkeypatch: pytest.MonkeyPatch, few_names: int
) -> None:
    monkeypatch.setattr(contacts_repository, "RECENT_CONTACTS", 3)
    monkeypatch.setattr(contacts_repository, "FEW_NAMES", few_names)
    async with session_scope(api.sessions) as session:
        me, other = await create_user(session), await create_user(session)
        expected: list[int] = []
        for i in range(14):
            contact = await create_contact(session, name=f"{'Ivan' if i % 2 else 'Olga'} {i}", platform="instagram")
            assert contact.id is not None
            assignee = (me, None, other)[i % 3]
            await create_deal(session, contact=contact, assignee=assignee)
            if i % 2 and assignee is not other:
                expected.append(contact.id)
        # Newest contacts nobody visible: the walk finds nothing and looks further back.
        for i in range(4):
            await create_deal(session, contact_name=f"Ivan newest {i}", assignee=other)
    expected.reverse()
    headers = api.headers(me)

    async def listing(**params: Any) -> tuple[list[int], str | None]:
        response = await api.client.get("/api/contacts", params=params, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        return [item["id"] for item in body["items"]], body["next_cursor"]

    assert (await listing(q="iv", limit=50))[0] == expected
    assert (await listing(q="iv", platform="instagram"))[0] == expected
    assert (await listing(q="iv", platform="messenger"))[0] == []
    first, cursor = await listing(q="iv", limit=2)
    second, _ = await listing(q="iv", limit=50, cursor=cursor)
    assert first + second == expected
    everyone, _ = await listing(limit=50)
    assert set(expected) <= set(everyone)
    assert len(everyone) == len(set(everyone)) == 10


async def test_a_managers_search_on_a_word_in_few_deals_ranks_every_match(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def shares(_: AsyncSession) -> LexemeStatistics:
        # Broad enough for the newest-first walk, yet in only ten thousand deals.
        return statistics(zelda=0.01, other=0.5)

    monkeypatch.setattr(search_service, "lexeme_statistics", shares)
    monkeypatch.setattr(search_service, "MIN_CANDIDATES", 2)
    monkeypatch.setattr(search_service, "MAX_CANDIDATES", 2)
    start = utcnow() - timedelta(days=30)
    async with session_scope(api.sessions) as session:
        me, other = await create_user(session), await create_user(session)
        old_name = await create_deal(session, contact_name="Zelda Old", assignee=me, created_at=start)
        mentions = [
            await create_deal(session, contact_name=f"Client {i}", comment="zelda", created_at=start + timedelta(i))
            for i in range(1, 4)
        ]
        await create_deal(session, contact_name="Zelda Theirs", assignee=other)
    found = await ids(api, api.headers(me), "zelda")
    assert found == [old_name.id, *(deal.id for deal in reversed(mentions))]
