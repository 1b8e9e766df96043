"""Profile enrichment: a customer's name and picture from the Graph API, once per contact.

Never on the path of a message: the consumer commits the deal first and then asks for a
fetch, which runs in the background with bounded concurrency; a periodic sweep picks
up whatever was missed (a restart, a full queue, a throttled call whose backoff ended).

A fetch is claimed in the database before the call (``profile_retry_at`` doubles as a
lease), so replicas never fetch the same contact at the same time, and no transaction
stays open while Meta answers. Outcomes: ``fetched``; still ``pending`` with a growing
backoff for throttling and outages; ``failed`` for errors retrying cannot fix (unknown
user, invalid token) or after too many attempts. The contact row is the cache.

A fetched profile that changes what users see of the customer (name, username, picture)
is announced as ``crm.contact.updated``, staged in the transaction that stores it, so open
pages show the name without waiting for the customer's next message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.channels.tokens import PageTokens
from crm.config import CrmSettings
from crm.conversation.repository import ContactRow, NewContact, table
from crm.graph import GraphClient, GraphError, Profile
from crm.models import Channel, Contact
from jggl_common.batching import Coalescer
from jggl_common.contracts import ContactDeal, Envelope, utcnow
from jggl_common.db import autocommit, driver_connection
from jggl_common.logs import correlation_id, get_logger
from jggl_common.outbox import Outbox, stage_all

from .events import contact_updated, visible_changes

__all__ = ["Outcome", "ProfileEnricher"]

log = get_logger(__name__)

Outcome = Literal["fetched", "retry", "failed", "skipped"]

_contacts = table(Contact)
_channels = table(Channel)


# Writes fetched profiles and answers each contact as it was and as it is now; ``lock``
# is how the contacts are locked first (``_SKIP_LOCKED``: only those nobody holds).
_STORE_PROFILES = (
    "WITH old AS MATERIALIZED (SELECT id, name, username, avatar_url FROM contacts"
    " WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE{lock})"
    " UPDATE contacts SET name = v.name, username = v.username, avatar_url = v.avatar_url,"
    " profile_status = 'fetched', profile_fetched_at = $5, profile_retry_at = NULL, profile_error = NULL"
    " FROM old, unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS v(id, name, username, avatar_url)"
    " WHERE contacts.id = old.id AND v.id = old.id"
    " RETURNING contacts.id, contacts.platform, contacts.external_id, v.name, v.username, v.avatar_url,"
    " old.name AS old_name, old.username AS old_username, old.avatar_url AS old_avatar_url"
)
_SKIP_LOCKED = " SKIP LOCKED"
_OPEN_DEALS = (
    "SELECT id, contact_id, assignee_id FROM deals WHERE contact_id = ANY($1::bigint[]) AND status = 'open'"
    " ORDER BY contact_id, id"
)


@dataclass(frozen=True, slots=True)
class _Fetched:
    """A profile Meta answered, with the correlation id of the work that asked for it."""

    contact_id: int
    profile: Profile
    correlation_id: str | None = None


def _columns(
    fetched: list[_Fetched],
) -> tuple[list[int], list[str | None], list[str | None], list[str | None]]:
    """The ids, names, usernames and pictures of ``fetched`` as statement arguments."""
    return (
        [f.contact_id for f in fetched],
        [(f.profile.name or "")[:300] or None for f in fetched],
        [(f.profile.username or "")[:300] or None for f in fetched],
        [f.profile.avatar_url for f in fetched],
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
        outbox: Outbox,
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
        self._outbox = outbox
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
        self._stores: Coalescer[_Fetched, None] = Coalescer(self._store_profiles, max_in_flight=1, max_batch=500)

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
        await self._stores.submit([_Fetched(claim.contact_id, profile, correlation_id())])
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

    async def _store_profiles(self, fetched: list[_Fetched]) -> list[None]:
        """Profiles fetched at about the same time are written in one transaction, with
        the ``crm.contact.updated`` of those that changed what users see.

        A statement that locks several contacts could deadlock with an inbound transaction
        locking them in another order, so this one never waits: it skips the contacts
        another transaction holds, and those are then written one by one, each in a
        transaction of its own (one waiting for one row while holding none cannot be part
        of a deadlock).
        """
        now = utcnow()
        done = await self._store(fetched, now, lock=_SKIP_LOCKED)
        for held in sorted((f for f in fetched if f.contact_id not in done), key=lambda f: f.contact_id):
            await self._store([held], now, lock="")
        return [None] * len(fetched)

    async def _store(self, fetched: list[_Fetched], now: datetime, *, lock: str) -> set[int]:
        """Write ``fetched`` (locking the contacts as ``lock`` says) and stage the events of
        those whose visible fields changed; returns the ids written."""
        correlation = {f.contact_id: f.correlation_id for f in fetched}
        async with self._outbox.transaction() as session:
            db = await driver_connection(session)
            rows = await db.fetch(_STORE_PROFILES.format(lock=lock), *_columns(fetched), now)
            changed = []
            for row in rows:
                new = ContactRow(
                    row["id"], row["platform"], row["external_id"], row["name"], row["username"], row["avatar_url"]
                )
                old = ContactRow(
                    new.id, new.platform, new.external_id, row["old_name"], row["old_username"], row["old_avatar_url"]
                )
                changes = visible_changes(old, new)
                if changes:
                    changed.append((new, changes))
            if changed:
                open_deals: dict[int, list[ContactDeal]] = {}
                for deal in await db.fetch(_OPEN_DEALS, [contact.id for contact, _ in changed]):
                    open_deals.setdefault(deal["contact_id"], []).append(
                        ContactDeal(id=deal["id"], assignee_id=deal["assignee_id"])
                    )
                events: list[tuple[Envelope, str | None]] = [
                    (
                        contact_updated(
                            contact,
                            changes,
                            open_deals.get(contact.id, []),
                            correlation_id=correlation.get(contact.id),
                        ),
                        None,
                    )
                    for contact, changes in changed
                ]
                await stage_all(session, events)
        return {row["id"] for row in rows}

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
