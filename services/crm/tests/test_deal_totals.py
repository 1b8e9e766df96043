"""The pipeline totals the triggers keep equal the deals, whatever writes them."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .api.factories import create_deal, stage_id


async def _kept(session: AsyncSession) -> dict[tuple[int, str], tuple[int, Decimal]]:
    rows = await session.execute(
        text(
            "SELECT stage_id, status, sum(deals), sum(amount) FROM deal_totals"
            " GROUP BY stage_id, status HAVING sum(deals) <> 0"
        )
    )
    return {(r[0], r[1]): (int(r[2]), Decimal(r[3])) for r in rows}


async def _counted(session: AsyncSession) -> dict[tuple[int, str], tuple[int, Decimal]]:
    rows = await session.execute(
        text("SELECT stage_id, status, count(*), coalesce(sum(amount), 0) FROM deals GROUP BY stage_id, status")
    )
    return {(r[0], r[1]): (int(r[2]), Decimal(r[3])) for r in rows}


async def test_totals_follow_inserts_moves_amounts_closes_deletes_and_truncates(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    rng = random.Random(7)
    async with sessions() as session:
        stages = [await stage_id(session, key) for key in ("new", "contacted", "qualified", "proposal")]
        keys = ("new", "contacted", "qualified", "proposal")
        ids: list[int] = []
        for _ in range(30):
            amount = rng.choice([None, "100.50", "999.99", "12"])
            deal = await create_deal(session, stage=rng.choice(keys), amount=amount)
            assert deal.id is not None
            ids.append(deal.id)
        # Several deals in one statement (closed ones: one open deal per conversation).
        await session.execute(
            text(
                "INSERT INTO deals (conversation_id, contact_id, channel_id, platform, stage_id, status, amount,"
                " created_at, updated_at, closed_at)"
                " SELECT conversation_id, contact_id, channel_id, platform, stage_id, 'won', 50, now(), now(), now()"
                " FROM deals WHERE id = ANY(:ids)"
            ),
            {"ids": ids[:10]},
        )
        await session.commit()
        assert await _kept(session) == await _counted(session)

        changes: list[tuple[str, dict[str, Any]]] = []
        for deal_id in rng.sample(ids, 20):
            changes.append(("UPDATE deals SET stage_id = :v WHERE id = :id", {"v": rng.choice(stages), "id": deal_id}))
        for deal_id in rng.sample(ids, 10):
            changes.append(
                ("UPDATE deals SET amount = :v WHERE id = :id", {"v": rng.choice([None, 5, 70000]), "id": deal_id})
            )
        for deal_id in rng.sample(ids, 8):
            status = rng.choice(["won", "lost"])
            changes.append(
                ("UPDATE deals SET status = :v, closed_at = now() WHERE id = :id", {"v": status, "id": deal_id})
            )
        # What the consumer writes all the time moves nothing.
        changes.append(
            ("UPDATE deals SET last_message_text = 'hi', stage_id = stage_id WHERE id = ANY(:ids)", {"ids": ids})
        )
        # One statement moving many deals, amounts and all.
        changes.append(
            ("UPDATE deals SET stage_id = :v, amount = coalesce(amount, 0) + 1 WHERE status = 'open'", {"v": stages[2]})
        )
        changes.append(("DELETE FROM deals WHERE id = ANY(:ids)", {"ids": rng.sample(ids, 5)}))
        rng.shuffle(changes)
        for sql, params in changes:
            await session.execute(text(sql), params)
            assert await _kept(session) == await _counted(session), sql
        await session.commit()

        # Rolled back: the totals go back with the deals.
        await session.execute(text("UPDATE deals SET status = 'lost', closed_at = now() WHERE status = 'open'"))
        await session.rollback()
        assert await _kept(session) == await _counted(session)

        await session.execute(text("TRUNCATE deals CASCADE"))
        await session.commit()
        assert await _kept(session) == {}
