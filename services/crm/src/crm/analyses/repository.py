"""The deal's AI fields: reading them under the deal's row lock, applying a newer analysis
with one conditional UPDATE, and the timeline entry that goes with it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from crm.models import Activity, Deal
from jggl_common.contracts import utcnow

from .order import SUPERSEDES_SQL, AnalysisKey

__all__ = ["AI_FIELDS", "AnalysisRepository", "HeldAnalysis"]

AI_FIELDS: tuple[str, ...] = (
    "ai_summary",
    "ai_intent",
    "ai_temperature",
    "ai_score",
    "ai_source",
    "ai_next_action",
    "ai_language",
    "ai_manager_notes",
    "ai_model",
    "ai_version",
    "ai_analysis_id",
    "ai_analyzed_at",
)
"""The deal's columns an analysis fills, every one of them each time."""

_APPLY = sa.text(
    "UPDATE deals SET ai_summary = :ai_summary, ai_intent = :ai_intent, ai_temperature = :ai_temperature,"
    " ai_score = :ai_score, ai_source = :ai_source, ai_next_action = :ai_next_action,"
    " ai_language = :ai_language, ai_manager_notes = :ai_manager_notes, ai_model = :ai_model,"
    " ai_version = :ai_version, ai_analysis_id = :ai_analysis_id, ai_analyzed_at = :ai_analyzed_at,"
    " updated_at = :updated_at"
    " WHERE id = :deal_id AND " + SUPERSEDES_SQL + " RETURNING id"
).bindparams(
    sa.bindparam("ai_manager_notes", type_=JSONB),
    sa.bindparam("ai_analyzed_at", type_=sa.DateTime(timezone=True)),
    sa.bindparam("updated_at", type_=sa.DateTime(timezone=True)),
)


@dataclass(frozen=True)
class HeldAnalysis:
    """A deal's AI fields as they are, read under its row lock."""

    values: dict[str, Any]

    @property
    def key(self) -> AnalysisKey | None:
        """The analysis the deal holds; None when it holds none (or one from before versions)."""
        version, analysis_id = self.values["ai_version"], self.values["ai_analysis_id"]
        if version is None or analysis_id is None:
            return None
        return AnalysisKey(version, self.values["ai_source"] or "", analysis_id)


class AnalysisRepository:
    """The AI side of deals, in the caller's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock(self, deal_id: int) -> HeldAnalysis | None:
        """The deal's AI fields, its row locked until the transaction ends; None if there is no such deal."""
        columns = [getattr(Deal, name) for name in AI_FIELDS]
        query = sa.select(*columns).where(col(Deal.id) == deal_id).with_for_update()
        row = (await self.session.execute(query)).first()
        return None if row is None else HeldAnalysis(dict(zip(AI_FIELDS, row, strict=True)))

    async def apply(self, deal_id: int, key: AnalysisKey, values: dict[str, Any], at: datetime) -> bool:
        """Write ``values`` (every one of :data:`AI_FIELDS`) if the analysis ``key`` supersedes
        the one the deal holds, decided by the statement itself; returns whether it did."""
        params = {
            **values,
            "deal_id": deal_id,
            "updated_at": at,
            "version": key.version,
            "provider": key.provider,
            "analysis_id": key.analysis_id,
        }
        return (await self.session.execute(_APPLY, params)).first() is not None

    def add_activity(self, deal_id: int, data: dict[str, Any]) -> None:
        """A timeline entry by "AI" (written with the transaction)."""
        self.session.add(
            Activity(deal_id=deal_id, kind="ai_analysis", actor_label="AI", data=data, created_at=utcnow())
        )
