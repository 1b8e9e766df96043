"""Claims on due transcripts and the analyses rows.

A replica *claims* a due transcript with a lease before analysing it (``FOR UPDATE SKIP
LOCKED``), so replicas never work on the same conversation at once; should a replica die,
the lease runs out and another takes over. The unique index on completed analyses
``(conversation_id, version, provider)`` is the final word: a transcript version is never
analysed into two results by the same provider.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from jggl_common.contracts import AnalysisResult, Provider

from .transcript import Previous

__all__ = [
    "Claim",
    "NewAnalysis",
    "claim_due",
    "count_due",
    "insert_analysis",
    "latest_gemini",
    "next_due",
    "release",
]


@dataclass(frozen=True, slots=True)
class Claim:
    """A transcript this replica may analyse until ``until``."""

    conversation_id: int
    version: int
    analysed_version: int
    gemini_version: int
    failures: int


@dataclass(frozen=True, slots=True)
class NewAnalysis:
    """An analysis row to insert (completed or failed)."""

    conversation_id: int
    deal_id: int
    version: int
    provider: Provider
    model: str | None
    first_message_id: int | None
    last_message_id: int | None
    result: AnalysisResult | None
    error: str | None
    attempts: int
    tokens_in: int
    tokens_out: int
    latency_ms: int
    created_at: datetime

    @property
    def status(self) -> str:
        """completed when it has a result, else failed."""
        return "completed" if self.result is not None else "failed"


async def claim_due(db: asyncpg.Connection, worker: str, now: datetime, lease: timedelta, limit: int) -> list[Claim]:
    """Claim up to ``limit`` transcripts whose analysis is due and nobody holds."""
    rows = await db.fetch(
        "UPDATE transcripts SET claimed_by = $1, claimed_until = $2 + $3, last_started_at = $2"
        " WHERE conversation_id IN ("
        "  SELECT conversation_id FROM transcripts"
        "  WHERE due_at <= $2 AND (claimed_until IS NULL OR claimed_until < $2)"
        "  ORDER BY due_at LIMIT $4 FOR UPDATE SKIP LOCKED)"
        " RETURNING conversation_id, version, analysed_version, gemini_version, failures",
        worker,
        now,
        lease,
        limit,
    )
    return [Claim(**dict(row)) for row in rows]


async def next_due(db: asyncpg.Connection, now: datetime) -> datetime | None:
    """The earliest time a transcript may be claimed: when it is due, or, for one claimed
    now, when its lease runs out (its analysis releases it sooner, and says so)."""
    due: datetime | None = await db.fetchval(
        "SELECT min(CASE WHEN claimed_until > $1 THEN claimed_until ELSE due_at END)"
        " FROM transcripts WHERE due_at IS NOT NULL",
        now,
    )
    return due


async def count_due(db: asyncpg.Connection, now: datetime) -> int:
    """Conversations whose analysis is due and not started."""
    return int(
        await db.fetchval(
            "SELECT count(*) FROM transcripts WHERE due_at <= $1 AND (claimed_until IS NULL OR claimed_until < $1)",
            now,
        )
    )


async def latest_gemini(db: asyncpg.Connection, conversation_id: int, below_version: int) -> Previous | None:
    """The newest Gemini analysis of an earlier version: what a long transcript carries forward."""
    row = await db.fetchrow(
        "SELECT result, last_message_id FROM analyses WHERE conversation_id = $1 AND status = 'completed'"
        " AND provider = 'gemini' AND version < $2 ORDER BY version DESC LIMIT 1",
        conversation_id,
        below_version,
    )
    if row is None:
        return None
    result = row["result"] if not isinstance(row["result"], str) else json.loads(row["result"])
    return Previous(AnalysisResult.model_validate(result), row["last_message_id"])


async def insert_analysis(db: asyncpg.Connection, analysis: NewAnalysis) -> int | None:
    """Insert an analysis row; returns its id, or None when this version already has a
    completed analysis by this provider (another replica's, after a lease ran out)."""
    analysis_id: int | None = await db.fetchval(
        "INSERT INTO analyses (conversation_id, deal_id, version, provider, model, first_message_id, last_message_id,"
        " status, result, error, attempts, tokens_in, tokens_out, latency_ms, created_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12, $13, $14, $15)"
        " ON CONFLICT (conversation_id, version, provider) WHERE status = 'completed' DO NOTHING RETURNING id",
        analysis.conversation_id,
        analysis.deal_id,
        analysis.version,
        analysis.provider,
        analysis.model,
        analysis.first_message_id,
        analysis.last_message_id,
        analysis.status,
        analysis.result.model_dump_json() if analysis.result is not None else None,
        analysis.error,
        analysis.attempts,
        analysis.tokens_in,
        analysis.tokens_out,
        analysis.latency_ms,
        analysis.created_at,
    )
    return analysis_id


async def release(
    db: asyncpg.Connection,
    conversation_id: int,
    *,
    analysed: int | None,
    provider: Provider | None,
    redo_at: datetime | None,
    failed: bool = False,
) -> None:
    """Let go of a claim. ``analysed`` is the version a result now covers (None: none);
    the transcript stays due if messages came meanwhile, else at ``redo_at`` (a Gemini
    redo of a heuristic result, or a retry), else it is owed nothing."""
    await db.execute(
        "UPDATE transcripts SET claimed_by = NULL, claimed_until = NULL,"
        " analysed_version = GREATEST(analysed_version, COALESCE($2, 0)),"
        " gemini_version = CASE WHEN $3 = 'gemini' THEN GREATEST(gemini_version, $2) ELSE gemini_version END,"
        " new_messages = CASE WHEN $2 IS NULL THEN new_messages ELSE GREATEST(version - $2, 0) END,"
        " failures = CASE WHEN $5 THEN failures + 1 ELSE 0 END,"
        " due_at = CASE WHEN version > GREATEST(analysed_version, COALESCE($2, 0))"
        "   THEN COALESCE(due_at, now()) ELSE $4 END"
        " WHERE conversation_id = $1",
        conversation_id,
        analysed,
        provider,
        redo_at,
        failed,
    )
