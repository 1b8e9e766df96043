"""Applying the AI service's analyses to deals.

A completed analysis fills the deal's AI fields if it is newer than the one the deal
holds (:mod:`crm.analyses.order`), under the deal's row lock and in one unit of work with
its timeline entry, ``crm.deal.updated`` and, when the deal just turned hot,
``crm.deal.hot_lead``. Event ids come from the deal and the analysis, and a repeat of an
analysis changes nothing, so however often one is delivered it is announced once.

A failed analysis leaves the deal as it is; one the AI service gives up on is written to
the system log for admins.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from crm.audit import record_integration_failure
from crm.deals.events import load_snapshot, row_key
from jggl_common.contracts import (
    AnalysisCompleted,
    AnalysisCompletedData,
    AnalysisFailed,
    DealHotLead,
    DealUpdated,
    DealUpdatedData,
    HotLeadData,
    stable_event_id,
    utcnow,
)
from jggl_common.logs import correlation_id, get_logger
from jggl_common.outbox import Outbox, stage_all

from .order import AnalysisKey, supersedes
from .repository import AI_FIELDS, AnalysisRepository

__all__ = ["ACTOR_LABEL", "AnalysisService", "analysis_key", "deal_fields"]

log = get_logger(__name__)

PRODUCER = "crm"
ACTOR_LABEL = "AI"
FAILURE_SOURCE = "ai.analysis"
_MODEL_LENGTH = 100


def _text(value: str) -> str:
    # PostgreSQL's text and jsonb refuse NUL, and a model may echo one from a customer.
    return value.replace("\x00", "")


def analysis_key(data: AnalysisCompletedData) -> AnalysisKey:
    """The analysis's place in the order of a deal's analyses."""
    return AnalysisKey(data.version, data.provider, data.analysis_id)


def deal_fields(data: AnalysisCompletedData) -> dict[str, Any]:
    """The deal's AI columns as ``data`` fills them."""
    result = data.result
    analyzed_at = data.analyzed_at if data.analyzed_at.tzinfo else data.analyzed_at.replace(tzinfo=UTC)
    return {
        "ai_summary": _text(result.summary),
        "ai_intent": result.intent,
        "ai_temperature": result.temperature,
        "ai_score": result.manager_score,
        "ai_source": data.provider,
        "ai_next_action": _text(result.next_action),
        "ai_language": _text(result.language),
        "ai_manager_notes": {name: _text(note) for name, note in result.manager_notes.model_dump().items()},
        "ai_model": _text(data.model)[:_MODEL_LENGTH] if data.model is not None else None,
        "ai_version": data.version,
        "ai_analysis_id": data.analysis_id,
        "ai_analyzed_at": analyzed_at,
    }


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


class AnalysisService:
    """Handles ``ai.analysis.completed`` and ``ai.analysis.failed``."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    async def completed(self, event: AnalysisCompleted) -> bool:
        """Apply the analysis if it is newer than the deal's; returns whether it was applied."""
        data = event.data
        key = analysis_key(data)
        values = deal_fields(data)
        async with self._outbox.transaction() as session:
            repository = AnalysisRepository(session)
            held = await repository.lock(data.deal_id)
            if held is None:
                # The deal may have been deleted since; nothing will ever make this succeed.
                log.warning("analysis of an unknown deal ignored", deal_id=data.deal_id, analysis_id=data.analysis_id)
                return False
            if not supersedes(key, held.key):
                log.info(
                    "analysis not newer than the deal's, ignored",
                    deal_id=data.deal_id,
                    analysis_id=data.analysis_id,
                    version=data.version,
                    provider=data.provider,
                    held=held.key.rank() if held.key else None,
                )
                return False
            if not await repository.apply(data.deal_id, key, values, utcnow()):
                # The statement's own condition is the final word (a test keeps both equal).
                log.error("the analysis order rule and its SQL disagree", deal_id=data.deal_id, key=key.rank())
                return False
            changes = {
                field: (_plain(held.values[field]), _plain(values[field]))
                for field in AI_FIELDS
                if held.values[field] != values[field]
            }
            result = data.result
            repository.add_activity(
                data.deal_id,
                {
                    "analysis_id": data.analysis_id,
                    "provider": data.provider,
                    "model": data.model,
                    "intent": result.intent,
                    "temperature": result.temperature,
                    "score": result.manager_score,
                    "version": data.version,
                },
            )
            deal = await load_snapshot(session, data.deal_id)
            # The analysis as a whole: a heuristic and a Gemini analysis may share an id.
            identity = f"{row_key(deal.id, deal.created_at)}:{data.analysis_id}:{data.version}:{data.provider}"
            events: list[DealUpdated | DealHotLead] = [
                DealUpdated(
                    id=stable_event_id(f"crm.deal.updated:ai:{identity}"),
                    producer=PRODUCER,
                    correlation_id=correlation_id() or event.correlation_id,
                    data=DealUpdatedData(deal=deal, changes=changes, actor_label=ACTOR_LABEL),
                )
            ]
            if result.temperature == "hot" and held.values["ai_temperature"] != "hot":
                events.append(
                    DealHotLead(
                        id=stable_event_id(f"crm.deal.hot_lead:{identity}"),
                        producer=PRODUCER,
                        correlation_id=correlation_id() or event.correlation_id,
                        data=HotLeadData(
                            deal=deal,
                            summary=values["ai_summary"],
                            intent=result.intent,
                            next_action=values["ai_next_action"],
                            provider=data.provider,
                            analysis_version=data.version,
                        ),
                    )
                )
            await stage_all(session, [(announced, None) for announced in events])
        log.info(
            "analysis applied",
            deal_id=data.deal_id,
            analysis_id=data.analysis_id,
            version=data.version,
            provider=data.provider,
            hot_lead=len(events) > 1,
        )
        return True

    async def failed(self, event: AnalysisFailed) -> bool:
        """Note an analysis the AI service gave up on in the system log (the deal is left as
        it is); returns whether an entry was written. Failures it retries are not noted."""
        data = event.data
        if data.will_retry:
            return False
        async with self._outbox.transaction() as session:
            return await record_integration_failure(
                session,
                FAILURE_SOURCE,
                f"analysis of deal {data.deal_id} failed for good after {data.attempts} attempts"
                f" ({data.provider}): {data.error}",
                {
                    "deal_id": data.deal_id,
                    "conversation_id": data.conversation_id,
                    "analysis_id": data.analysis_id,
                    "version": data.version,
                    "provider": data.provider,
                    "model": data.model,
                    "attempts": data.attempts,
                },
                dedupe_key=f"ai.analysis.failed:{data.analysis_id}:{data.version}:{data.provider}:{data.attempts}",
                occurred_at=data.failed_at if data.failed_at.tzinfo else data.failed_at.replace(tzinfo=UTC),
            )
