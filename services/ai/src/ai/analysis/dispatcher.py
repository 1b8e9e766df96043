"""The loop that finds conversations owed an analysis and hands them to the analyser.

It sleeps until the earliest due time (or until the transcript consumer says something is
due sooner), claims what is due, and runs at most ``parallel`` analyses at once. Every
replica runs one; claims keep them from working on the same conversation.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime, timedelta

from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jggl_common.contracts import utcnow
from jggl_common.db import autocommit
from jggl_common.logs import get_logger

from . import repository as repo
from .service import Analyser

__all__ = ["Dispatcher"]

log = get_logger(__name__)

WAITING = Gauge("ai_conversations_waiting", "Conversations whose analysis is due and not yet started")
IN_PROGRESS = Gauge("ai_analyses_in_progress", "Analyses running in this replica")
ROUNDS = Counter("ai_dispatch_rounds_total", "Times the dispatcher looked for due conversations")

LEASE = timedelta(minutes=5)
"""How long a claim lasts: longer than an analysis with all its retries takes."""


class Dispatcher:
    """Claims due transcripts and runs their analyses."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        analyser: Analyser,
        *,
        enabled: Callable[[], bool],
        parallel: Callable[[], int],
        idle_poll: float = 1.0,
    ) -> None:
        self._sessions = sessions
        self._analyser = analyser
        self._enabled = enabled
        self._parallel = parallel
        self._idle_poll = idle_poll
        self.worker = f"{socket.gethostname()[:40]}-{secrets.token_hex(4)}"
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()

    def due(self, when: datetime) -> None:
        """A conversation became due at ``when``: look sooner if that is earlier than planned."""
        if when <= utcnow() + timedelta(seconds=self._idle_poll):
            self._wake.set()

    async def run(self) -> None:
        """Forever; cancelling it lets running analyses finish for a few seconds."""
        try:
            while True:
                try:
                    wait = await self._round()
                except Exception as exc:
                    log.error("analysis dispatch failed", error=f"{type(exc).__name__}: {exc}")
                    wait = self._idle_poll
                self._wake.clear()
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
        finally:
            await self._drain()

    async def _round(self) -> float:
        """Claim and start what is due; returns how long to sleep."""
        ROUNDS.inc()
        now = utcnow()
        free = max(self._parallel() - len(self._running), 0)
        async with autocommit(self._sessions) as db:
            WAITING.set(await repo.count_due(db, now))
            if not self._enabled() or free == 0:
                return self._idle_poll
            claims = await repo.claim_due(db, self.worker, now, LEASE, free)
            for claim in claims:
                task = asyncio.create_task(self._analyse(claim), name=f"analyse-{claim.conversation_id}")
                self._running.add(task)
                task.add_done_callback(self._running.discard)
            IN_PROGRESS.set(len(self._running))
            if claims:
                return 0.0 if len(claims) == free else self._idle_poll
            next_due = await repo.next_due(db, now)
        if next_due is None:
            return self._idle_poll
        return min(max((next_due - utcnow()).total_seconds(), 0.0), self._idle_poll)

    async def _analyse(self, claim: repo.Claim) -> None:
        try:
            await self._analyser.analyse(claim)
        except Exception as exc:
            log.error("analysis failed", conversation_id=claim.conversation_id, error=f"{type(exc).__name__}: {exc}")
        finally:
            IN_PROGRESS.set(len(self._running) - 1)
            self._wake.set()

    async def _drain(self, timeout: float = 5.0) -> None:
        if not self._running:
            return
        _, pending = await asyncio.wait(set(self._running), timeout=timeout)
        for task in pending:
            task.cancel()
        for task in pending:
            with suppress(BaseException):
                await task
