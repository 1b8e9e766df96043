"""Analysing one claimed transcript: Gemini when it can, the heuristic when it cannot.

* Gemini calls go through the :class:`~ai.analysis.limits.CallLimiter` (quota) and the
  :class:`~ai.analysis.limits.CircuitBreaker`. 429 waits what Gemini asked (``retryDelay``),
  503 and timeouts back off exponentially, up to ``AI_MAX_ATTEMPTS`` calls.
* An answer that is not the schema (invalid or empty JSON, a leaked prompt) is a failure:
  recorded as a failed analysis and announced (``ai.analysis.failed``), then retried. It
  never reaches a deal.
* When Gemini cannot answer (no key, disabled, breaker open, attempts used up), the
  heuristic answers for new messages at once, marked ``heuristic``, and the transcript is
  due again for Gemini later: its analysis replaces the heuristic one.
* A result is stored and its event staged in one unit of work (the shared outbox).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai.transcripts.repository import load_transcript
from jggl_common.contracts import (
    AnalysisCompleted,
    AnalysisCompletedData,
    AnalysisFailed,
    AnalysisFailedData,
    AnalysisResult,
    Provider,
    stable_event_id,
    utcnow,
)
from jggl_common.db import driver_connection
from jggl_common.logs import get_logger
from jggl_common.outbox import Outbox, stage

from . import heuristic
from . import repository as repo
from .gemini import GeminiClient, GeminiFailure
from .limits import CallLimiter, CircuitBreaker
from .prompt import InvalidAnswer, build_prompt, parse_answer
from .transcript import Transcript

__all__ = ["ANALYSES", "Analyser", "GeminiSettings"]

log = get_logger(__name__)
PRODUCER = "ai"

REFUSED_ROUNDS = 3
"""Rounds of answers that are not analyses after which a version is left heuristic."""
REDO_MAX_SECONDS = 3600.0

ANALYSES = Counter("ai_analyses_total", "Analyses by provider and status", ["provider", "status"])
GEMINI_CALLS = Counter("ai_gemini_calls_total", "Gemini calls by outcome", ["outcome"])
ANALYSIS_SECONDS = Histogram(
    "ai_analysis_seconds",
    "Time to an analysis result, retries included",
    ["provider"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
TOKENS = Counter("ai_gemini_tokens_total", "Gemini tokens by direction", ["direction"])
BREAKER_STATE = Gauge("ai_breaker_state", "Gemini circuit breaker: 0 closed, 1 half-open, 2 open")
_BREAKER_VALUES = {"closed": 0, "half_open": 1, "open": 2}


@dataclass(frozen=True, slots=True)
class GeminiSettings:
    """What the analyser reads at each analysis (live settings may change it)."""

    client: GeminiClient | None
    """None: no key configured, the heuristic answers everything"""
    token_budget: int
    max_attempts: int
    retry_max_seconds: float
    redo_after: float
    """seconds before a heuristic result is offered to Gemini again"""


@dataclass(slots=True)
class _Outcome:
    result: AnalysisResult | None = None
    first_message_id: int | None = None
    last_message_id: int | None = None
    attempts: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: int = 0
    error: str | None = None
    invalid: bool = False
    """the last failure was an answer that is not an analysis (not an outage)"""


class Analyser:
    """Turns claims into analyses; one per process."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        outbox: Outbox,
        gemini: Callable[[], GeminiSettings],
        limiter: CallLimiter,
        breaker: CircuitBreaker,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._sessions = sessions
        self._outbox = outbox
        self._gemini = gemini
        self.limiter = limiter
        self.breaker = breaker
        self._sleep = sleep

    async def analyse(self, claim: repo.Claim) -> None:
        """Analyse a claimed transcript and release the claim, whatever happens."""
        try:
            await self._analyse(claim)
        except BaseException:
            # Let another attempt (or replica) take it soon; a result, if any, was committed.
            await asyncio.shield(self._release(claim, utcnow() + timedelta(seconds=30), failed=True))
            raise

    async def _analyse(self, claim: repo.Claim) -> None:
        async with self._sessions() as session:
            db = await driver_connection(session)
            transcript = await load_transcript(db, claim.conversation_id)
            previous = await repo.latest_gemini(db, claim.conversation_id, transcript.version) if transcript else None
        settings = self._gemini()
        if transcript is None:
            await self._release(claim, None)
            return
        if previous is not None:
            transcript = Transcript(
                transcript.conversation_id, transcript.deal_id, transcript.version, transcript.lines, previous
            )
        version = transcript.version
        new = version > claim.analysed_version
        redo = settings.client is not None and claim.gemini_version < version
        if not new and not redo:
            await self._release(claim, None)
            return
        asked = give_up = False
        if settings.client is not None and self.breaker.allow():
            asked = True
            started = utcnow()
            outcome = await self._ask_gemini(settings, transcript)
            ANALYSIS_SECONDS.labels("gemini").observe((utcnow() - started).total_seconds())
            if outcome.result is not None:
                await self._store(transcript, "gemini", settings.client.model, outcome, redo_at=None)
                return
            # A model that keeps answering this transcript with no analysis will not change
            # its mind; an outage, however long, ends.
            give_up = outcome.invalid and not new and claim.failures + 1 >= REFUSED_ROUNDS
            await self._store(
                transcript, "gemini", settings.client.model, outcome, redo_at=None, will_retry=not give_up
            )
        if not new:
            if give_up:
                log.warning(
                    "Gemini gave no analysis of this version, left heuristic", conversation_id=claim.conversation_id
                )
                await self._release(claim, None, failed=True)
            else:
                # Gemini could not redo a heuristic result now: offer it again later.
                await self._release(claim, utcnow() + self._redo_wait(settings, claim.failures), failed=asked)
            return
        started = utcnow()
        result = heuristic.analyse(transcript, started)
        ANALYSIS_SECONDS.labels("heuristic").observe((utcnow() - started).total_seconds())
        lines = transcript.lines
        outcome = _Outcome(result, lines[0].message_id, lines[-1].message_id, attempts=1)
        redo_at = utcnow() + self._redo_wait(settings, 0) if settings.client is not None else None
        await self._store(transcript, "heuristic", None, outcome, redo_at=redo_at)

    def _redo_wait(self, settings: GeminiSettings, failures: int) -> timedelta:
        """How long before Gemini is asked again: the breaker's cool-down, doubling with
        every failed round of this conversation, at most an hour."""
        base = max(self.breaker.retry_in(), settings.redo_after)
        return timedelta(seconds=min(base * 2 ** min(failures, 12), REDO_MAX_SECONDS))

    async def _ask_gemini(self, settings: GeminiSettings, transcript: Transcript) -> _Outcome:
        assert settings.client is not None
        prompt = build_prompt(transcript, settings.token_budget)
        outcome = _Outcome(first_message_id=prompt.first_message_id, last_message_id=prompt.last_message_id)
        delay = 1.0
        while outcome.attempts < settings.max_attempts:
            outcome.attempts += 1
            try:
                async with self.limiter.slot():
                    answer = await settings.client.generate(prompt.text)
            except GeminiFailure as exc:
                outcome.invalid = False
                self.breaker.failed()
                BREAKER_STATE.set(_BREAKER_VALUES[self.breaker.state])
                GEMINI_CALLS.labels("throttled" if exc.retry_after is not None else "failed").inc()
                outcome.error = str(exc)
                log.warning("Gemini call failed", conversation_id=transcript.conversation_id, error=str(exc))
                if not exc.transient or outcome.attempts >= settings.max_attempts or self.breaker.state == "open":
                    return outcome
                wait = exc.retry_after if exc.retry_after is not None else delay * random.uniform(0.8, 1.2)
                await self._sleep(min(wait, settings.retry_max_seconds))
                delay *= 2
                continue
            self.breaker.succeeded()
            BREAKER_STATE.set(0)
            outcome.tokens_in += answer.tokens_in
            outcome.tokens_out += answer.tokens_out
            outcome.latency_ms += answer.latency_ms
            TOKENS.labels("in").inc(answer.tokens_in)
            TOKENS.labels("out").inc(answer.tokens_out)
            try:
                outcome.result = parse_answer(answer.text)
            except InvalidAnswer as exc:
                GEMINI_CALLS.labels("invalid").inc()
                outcome.error = str(exc)
                outcome.invalid = True
                log.warning("Gemini answered no analysis", conversation_id=transcript.conversation_id, error=str(exc))
                if outcome.attempts < settings.max_attempts:  # the last one is recorded by the caller
                    await self._store(
                        transcript,
                        "gemini",
                        settings.client.model,
                        outcome,
                        redo_at=None,
                        will_retry=True,
                    )
                continue
            GEMINI_CALLS.labels("ok").inc()
            outcome.error = None
            return outcome
        return outcome

    async def _store(
        self,
        transcript: Transcript,
        provider: Provider,
        model: str | None,
        outcome: _Outcome,
        *,
        redo_at: datetime | None,
        will_retry: bool = False,
    ) -> None:
        """Record a result (and release the claim) or a failure, with its event."""
        now = utcnow()
        row = repo.NewAnalysis(
            conversation_id=transcript.conversation_id,
            deal_id=transcript.deal_id,
            version=transcript.version,
            provider=provider,
            model=model,
            first_message_id=outcome.first_message_id,
            last_message_id=outcome.last_message_id,
            result=outcome.result,
            error=None if outcome.result is not None else (outcome.error or "no answer")[:2000],
            attempts=max(outcome.attempts, 1),
            tokens_in=outcome.tokens_in,
            tokens_out=outcome.tokens_out,
            latency_ms=outcome.latency_ms,
            created_at=now,
        )
        async with self._outbox.transaction() as session:
            db = await driver_connection(session)
            analysis_id = await repo.insert_analysis(db, row)
            if analysis_id is not None:
                ANALYSES.labels(provider, row.status).inc()
                await stage(session, _event(analysis_id, row, will_retry))
                if outcome.result is not None:
                    log.info(
                        "conversation analysed",
                        conversation_id=row.conversation_id,
                        version=row.version,
                        provider=provider,
                        intent=outcome.result.intent,
                        temperature=outcome.result.temperature,
                    )
            if outcome.result is not None:
                await repo.release(db, row.conversation_id, analysed=row.version, provider=provider, redo_at=redo_at)

    async def _release(self, claim: repo.Claim, redo_at: datetime | None, *, failed: bool = False) -> None:
        """Let go of a claim without a new result."""
        async with self._sessions() as session:
            db = await driver_connection(session)
            await repo.release(db, claim.conversation_id, analysed=None, provider=None, redo_at=redo_at, failed=failed)
            await session.commit()


def _event(analysis_id: int, row: repo.NewAnalysis, will_retry: bool) -> AnalysisCompleted | AnalysisFailed:
    if row.result is not None:
        return AnalysisCompleted(
            id=stable_event_id(f"ai.analysis.completed:{analysis_id}"),
            producer=PRODUCER,
            data=AnalysisCompletedData(
                analysis_id=analysis_id,
                conversation_id=row.conversation_id,
                deal_id=row.deal_id,
                version=row.version,
                first_message_id=row.first_message_id,
                last_message_id=row.last_message_id,
                provider=row.provider,
                model=row.model,
                result=row.result,
                tokens_in=row.tokens_in,
                tokens_out=row.tokens_out,
                latency_ms=row.latency_ms,
                analyzed_at=row.created_at,
            ),
        )
    return AnalysisFailed(
        id=stable_event_id(f"ai.analysis.failed:{analysis_id}"),
        producer=PRODUCER,
        data=AnalysisFailedData(
            analysis_id=analysis_id,
            conversation_id=row.conversation_id,
            deal_id=row.deal_id,
            version=row.version,
            provider=row.provider,
            model=row.model,
            error=row.error or "no answer",
            attempts=row.attempts,
            will_retry=will_retry,
            failed_at=row.created_at,
        ),
    )
