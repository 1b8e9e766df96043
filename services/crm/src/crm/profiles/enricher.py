"""Profile enrichment: a customer's name and picture from the Graph API, once per contact.

Never on the path of a message: the consumer commits the deal first and then asks for a
fetch, which runs in the background with bounded concurrency; a periodic sweep picks
up whatever was missed (a restart, a full queue, a throttled call whose backoff ended).

A fetch is claimed in the database before the call (``profile_retry_at`` doubles as a
lease), so replicas never fetch the same contact at the same time, and no transaction
stays open while Meta answers. Outcomes: ``fetched``; still ``pending`` with a growing
backoff for throttling and outages; ``failed`` for errors retrying cannot fix (unknown
user, invalid token) or after too many attempts. The contact row is the cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.channels.tokens import PageTokens
from crm.config import CrmSettings
from crm.conversation.repository import NewContact, table
from crm.graph import GraphClient, GraphError, Profile
from crm.models import Channel, Contact
from jggl_common.batching import Coalescer
from jggl_common.contracts import utcnow
from jggl_common.db import autocommit
from jggl_common.logs import get_logger

__all__ = ["Outcome", "ProfileEnricher"]

log = get_logger(__name__)

Outcome = Literal["fetched", "retry", "failed", "skipped"]

_contacts = table(Contact)
_channels = table(Channel)


# Writes fetched profiles; ``only`` narrows the rows (``_NOT_LOCKED``: those nobody holds).
_STORE_PROFILES = (
    "UPDATE contacts SET name = v.name, username = v.username, avatar_url = v.avatar_url,"
    " profile_status = 'fetched', profile_fetched_at = $5, profile_retry_at = NULL, profile_error = NULL"
    " FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS v(id, name, username, avatar_url)"
    " WHERE contacts.id = v.id{only} RETURNING contacts.id"
)
_NOT_LOCKED = " AND contacts.id IN (SELECT id FROM contacts WHERE id = ANY($1) ORDER BY id FOR UPDATE SKIP LOCKED)"


def _columns(
    profiles: list[tuple[int, Profile]],
) -> tuple[list[int], list[str | None], list[str | None], list[str | None]]:
    """The ids, names, usernames and pictures of ``profiles`` as statement arguments."""
    return (
        [contact_id for contact_id, _ in profiles],
        [(p.name or "")[:300] or None for _, p in profiles],
        [(p.username or "")[:300] or None for _, p in profiles],
        [p.avatar_url for _, p in profiles],
    )


@dataclass(frozen=True, slots=True)
class _Claim:
    contact_id: int
    platform: str
    external_id: str
    attempts: int
    token: str | None


class ProfileEnricher:
    """Fetches customers' profiles in the background; one per process."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: CrmSettings,
        graph: GraphClient,
        *,
        concurrency: int | None = None,
        max_queued: int = 1000,
        max_attempts: int = 5,
        lease_seconds: float = 60.0,
        base_backoff_seconds: float = 30.0,
        max_backoff_seconds: float = 3600.0,
    ) -> None:
        self._sessions = sessions
        self._graph = graph
        self._settings = settings
        self._tokens = PageTokens(settings)
        self._limit = asyncio.Semaphore(concurrency or settings.profile_fetch_workers)
        self._max_queued = max_queued
        self._max_attempts = max_attempts
        self._lease = timedelta(seconds=lease_seconds)
        self._base_backoff = base_backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._tasks: set[asyncio.Task[Outcome]] = set()
        self._queued: set[int] = set()
        self._fetching = 0
        self._busy: Callable[[], bool] = lambda: False
        # One write at a time; profiles fetched meanwhile share the next one.
        self._stores: Coalescer[tuple[int, Profile], None] = Coalescer(
            self._store_profiles, max_in_flight=1, max_batch=500
        )

    @property
    def lease(self) -> timedelta:
        """How long a claimed fetch is reserved for the claimer before the sweep may take it."""
        return self._lease

    def schedule(self, contact_id: int) -> None:
        """Fetch this contact's profile soon, without waiting. A full queue is left to the sweep."""
        self._start(contact_id, None)

    def schedule_new(self, contact: NewContact) -> None:
        """Fetch the profile of a contact created with its first fetch claimed for us
        (``InboundService`` with ``profile_lease=enricher.lease``), without claiming it again."""
        claim = _Claim(contact.id, contact.platform, contact.external_id, 1, self._token(contact.sealed_token))
        self._start(contact.id, claim)

    def _start(self, contact_id: int, claim: _Claim | None) -> None:
        if contact_id in self._queued or len(self._tasks) >= self._max_queued:
            return
        self._queued.add(contact_id)
        task = asyncio.get_running_loop().create_task(self._guarded(contact_id, claim), name=f"profile-{contact_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until the scheduled fetches are done (for shutdown and tests)."""
        while self._tasks:
            await asyncio.wait_for(asyncio.gather(*list(self._tasks), return_exceptions=True), timeout)

    async def aclose(self, timeout: float = 10.0) -> None:
        """Let in-flight fetches finish for up to ``timeout`` seconds, then cancel the rest."""
        tasks = list(self._tasks)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def sweep_once(self, limit: int | None = None) -> int:
        """Schedule contacts whose profile is still to fetch and due, as many as the queue
        has room for (or ``limit``); returns how many."""
        room = self._max_queued - len(self._tasks)
        limit = room if limit is None else min(limit, room)
        if limit <= 0:
            return 0
        async with self._sessions() as session:
            ids = (
                (
                    await session.execute(
                        select(_contacts.c.id)
                        .where(
                            _contacts.c.profile_status == "pending",
                            sa.or_(_contacts.c.profile_retry_at.is_(None), _contacts.c.profile_retry_at <= utcnow()),
                        )
                        .order_by(_contacts.c.id)
                        .limit(limit)
                    )
                )
                .scalars()
                .all()
            )
        for contact_id in ids:
            self.schedule(int(contact_id))
        return len(ids)

    async def run(self, interval: float = 30.0, busy_interval: float = 1.0) -> None:
        """Forever: sweep every ``interval`` seconds, or every ``busy_interval`` while a
        sweep finds more than the queue can take (a backlog drains at fetching speed)."""
        while True:
            room = self._max_queued - len(self._tasks)
            try:
                found = await self.sweep_once()
            except Exception as exc:
                log.error("profile sweep failed", error=f"{type(exc).__name__}: {exc}")
                found = 0
            # The queue was full, or the sweep filled it: more may be due than it took.
            more = room <= 0 or found >= room
            await asyncio.sleep(busy_interval if more else interval)

    def yield_to(self, busy: Callable[[], bool]) -> None:
        """While ``busy()`` says the messages' path has a backlog, fetch one profile at a
        time: names can come a little later, deals should not."""
        self._busy = busy

    async def _guarded(self, contact_id: int, claim: _Claim | None) -> Outcome:
        try:
            async with self._limit:
                # The backlog is the consumer's state, not an event: looking every 50 ms costs nothing.
                while self._fetching and self._busy():  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                self._fetching += 1
                try:
                    return await self.enrich(contact_id, claim)
                finally:
                    self._fetching -= 1
        except Exception as exc:
            log.error("profile enrichment crashed", contact_id=contact_id, error=f"{type(exc).__name__}: {exc}")
            return "retry"
        finally:
            self._queued.discard(contact_id)

    async def enrich(self, contact_id: int, claim: _Claim | None = None) -> Outcome:
        """Fetch and store one contact's profile if it is due (or already ``claim``-ed);
        returns what happened."""
        claim = claim or await self._claim(contact_id)
        if claim is None:
            return "skipped"
        if not claim.token:
            return await self._store_failure(claim, "no page access token for this channel", retry=False)
        try:
            profile = await self._graph.get_profile(claim.platform, claim.external_id, claim.token)
        except GraphError as exc:
            log.warning(
                "profile fetch failed",
                contact_id=contact_id,
                code=exc.code,
                subcode=exc.subcode,
                throttled=exc.is_throttling,
                auth=exc.is_auth,
                error=str(exc),
            )
            return await self._store_failure(claim, str(exc), retry=exc.is_transient)
        await self._stores.submit([(claim.contact_id, profile)])
        return "fetched"

    async def _claim(self, contact_id: int) -> _Claim | None:
        now = utcnow()
        async with autocommit(self._sessions) as db:
            row = await db.fetchrow(
                "WITH claimed AS (UPDATE contacts SET profile_retry_at = $2, profile_attempts = profile_attempts + 1"
                " WHERE id = $1 AND profile_status = 'pending' AND (profile_retry_at IS NULL OR profile_retry_at <= $3)"
                " RETURNING id, platform, external_id, profile_attempts, channel_id)"
                " SELECT claimed.*, channels.access_token_sealed FROM claimed"
                " LEFT JOIN channels ON channels.id = claimed.channel_id",
                contact_id,
                now + self._lease,
                now,
            )
        if row is None:
            return None
        return _Claim(
            int(row["id"]),
            str(row["platform"]),
            str(row["external_id"]),
            int(row["profile_attempts"]),
            self._token(row["access_token_sealed"]),
        )

    def _token(self, sealed: str | None) -> str | None:
        """The channel's own page token, else the configured default one."""
        return self._tokens.token_for(sealed)

    async def _store_profiles(self, fetched: list[tuple[int, Profile]]) -> list[None]:
        """Profiles fetched at about the same time are written in one statement.

        A statement that locks several contacts could deadlock with an inbound transaction
        locking them in another order, so this one never waits: it skips the contacts
        another transaction holds, and those are then written one by one (a statement
        waiting for one row while holding none cannot be part of a deadlock).
        """
        now = utcnow()
        async with autocommit(self._sessions) as db:
            written = await db.fetch(_STORE_PROFILES.format(only=_NOT_LOCKED), *_columns(fetched), now)
            done = {row["id"] for row in written}
            for held in sorted((row for row in fetched if row[0] not in done), key=lambda row: row[0]):
                await db.execute(_STORE_PROFILES.format(only=""), *_columns([held]), now)
        return [None] * len(fetched)

    async def _store_failure(self, claim: _Claim, error: str, *, retry: bool) -> Outcome:
        give_up = not retry or claim.attempts >= self._max_attempts
        retry_at = (
            None
            if give_up
            else utcnow() + timedelta(seconds=min(self._base_backoff * 2 ** (claim.attempts - 1), self._max_backoff))
        )
        async with autocommit(self._sessions) as db:
            await db.execute(
                "UPDATE contacts SET profile_error = $2, profile_retry_at = $3,"
                " profile_status = CASE WHEN $4 THEN 'failed' ELSE profile_status END WHERE id = $1",
                claim.contact_id,
                error[:500],
                retry_at,
                give_up,
            )
        return "failed" if give_up else "retry"
