"""Which analysis a deal keeps: the rule on its own, and the UPDATE's condition agreeing
with it case by case on the real database."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.analyses.order import AnalysisKey, supersedes
from crm.analyses.repository import AI_FIELDS, AnalysisRepository
from jggl_common.contracts import utcnow
from jggl_common.db import session_scope

from ..api.factories import create_deal


def key(version: int, provider: str = "gemini", analysis_id: int = 1) -> AnalysisKey:
    return AnalysisKey(version, provider, analysis_id)


@pytest.mark.parametrize(
    ("new", "held", "expected"),
    [
        (key(1), None, True),  # a deal without an analysis takes any
        (key(1, "heuristic"), None, True),
        (key(3), key(2), True),  # a longer transcript wins
        (key(3, "heuristic"), key(2, "gemini"), True),  # whoever analysed it
        (key(2), key(3), False),  # a late, older analysis loses
        (key(2, "gemini"), key(3, "heuristic"), False),
        (key(4, "gemini", 7), key(4, "heuristic", 6), True),  # Gemini replaces the heuristic
        (key(4, "gemini", 7), key(4, "heuristic", 9), True),  # whatever their ids
        (key(4, "heuristic", 9), key(4, "gemini", 7), False),  # never the reverse
        (key(4, "gemini", 7), key(4, "gemini", 7), False),  # a repeat changes nothing
        (key(4, "heuristic", 7), key(4, "heuristic", 7), False),
        (key(4, "gemini", 8), key(4, "gemini", 7), True),  # otherwise equal: the later one
        (key(4, "gemini", 6), key(4, "gemini", 7), False),
        (key(4, "heuristic", 1), key(4, "mystery", 5), False),  # unknown providers rank lowest
        (key(4, "gemini", 1), key(4, "mystery", 5), True),
    ],
)
def test_the_rule(new: AnalysisKey, held: AnalysisKey | None, expected: bool) -> None:
    assert supersedes(new, held) is expected


def test_the_rule_is_a_total_order_so_any_delivery_order_ends_alike() -> None:
    keys = [key(v, p, i) for v in (1, 2) for p in ("heuristic", "gemini") for i in (1, 2)]
    for permutation in itertools.permutations(keys, 4):
        held: AnalysisKey | None = None
        for new in permutation:
            if supersedes(new, held):
                held = new
        assert held == max(permutation, key=AnalysisKey.rank)


HELD = [None, key(3, "heuristic", 30), key(3, "gemini", 31), key(3, "gemini", 35)]
NEW = [key(v, p, i) for v in (2, 3, 4) for p in ("heuristic", "gemini") for i in (30, 31, 35)]


async def test_the_update_condition_decides_as_the_rule_does(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with session_scope(sessions) as session:
        deal = await create_deal(session)
    assert deal.id is not None
    values = dict.fromkeys(AI_FIELDS)
    decided = []
    for held in HELD:
        for new in NEW:
            async with sessions() as session:
                repository = AnalysisRepository(session)
                if held is not None:
                    await session.execute(
                        text("UPDATE deals SET ai_version = :v, ai_source = :p, ai_analysis_id = :i WHERE id = :d"),
                        {"v": held.version, "p": held.provider, "i": held.analysis_id, "d": deal.id},
                    )
                locked = await repository.lock(deal.id)
                assert locked is not None
                assert locked.key == held
                applied = await repository.apply(
                    deal.id,
                    new,
                    {**values, "ai_version": new.version, "ai_source": new.provider, "ai_analysis_id": new.analysis_id},
                    utcnow(),
                )
                decided.append((new, held, applied, supersedes(new, held)))
                await session.rollback()
    assert [case for case in decided if case[2] != case[3]] == []
    assert {case[2] for case in decided} == {True, False}


async def test_a_deal_analysed_before_versions_existed_takes_any_analysis(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with session_scope(sessions) as session:
        deal = await create_deal(session, ai_summary="old", ai_source="gemini", ai_temperature="hot")
    assert deal.id is not None
    async with session_scope(sessions) as session:
        repository = AnalysisRepository(session)
        held = await repository.lock(deal.id)
        assert held is not None
        assert held.key is None
        assert held.values["ai_temperature"] == "hot"
        new = key(1, "heuristic")
        assert await repository.apply(
            deal.id,
            new,
            {**dict.fromkeys(AI_FIELDS), "ai_version": 1, "ai_source": "heuristic", "ai_analysis_id": 1},
            utcnow(),
        )
    async with sessions() as session:
        assert await AnalysisRepository(session).lock(12_345_678) is None
