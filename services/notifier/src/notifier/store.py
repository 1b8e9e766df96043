"""The statements the notifier runs on its schema: link codes, links, the notification log
and the managers' preferences.

A few hand-written statements on the asyncpg connection; each entry point owns its
transaction. The unique keys carry the guarantees: ``links.user_id`` and ``links.chat_id``
(one chat per manager and one manager per chat), ``notifications (event_id, chat_id)``
(one notification per event and chat, whatever the redeliveries and replicas) and
``handled_updates.update_id`` (a Telegram update answered once). A deferred notification
(quiet hours) keeps its text and keyboard on its row until a sweeper claims it, with an
atomic ``UPDATE ... RETURNING`` over rows locked ``FOR UPDATE SKIP LOCKED``, so two
replicas never take the same one. The round robin of unassigned leads keeps whose turn
it was (``rotations``, locked while a turn is given) and to whom it gave each deal
(``deals.offered_to``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jggl_common.contracts import TelegramLinkRequestedData, utcnow
from jggl_common.db import autocommit, driver_connection, session_scope
from notifier.preferences import Preferences

__all__ = ["Claim", "Deferred", "Link", "LinkOutcome", "LinkResult", "Naming", "Rename", "Store"]

LinkOutcome = Literal["linked", "already_linked", "unknown", "used", "expired"]


@dataclass(frozen=True, slots=True)
class LinkResult:
    """What ``/start <code>`` did."""

    outcome: LinkOutcome
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Link:
    """A manager's linked chat."""

    user_id: int
    chat_id: int
    name: str
    role: str
    blocked_at: datetime | None = None
    """When Telegram said the user blocked the bot (notifications are skipped until ``/start``)."""


@dataclass(frozen=True, slots=True)
class Naming:
    """The deal a notification is about and the customer's name its text shows, with the
    ``occurred_at`` of the event that name came from (a newer one replaces it)."""

    deal_id: int
    name: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Rename:
    """A sent notification taken to be edited: its text shows ``shown``, the newest name
    is ``to`` (as of ``at``)."""

    id: int
    chat_id: int
    message_id: int
    text: str
    markup: dict[str, Any] | None
    shown: str
    to: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Claim:
    """A notification row this process may send now (``attempts`` counts this one)."""

    id: int
    attempts: int


@dataclass(frozen=True, slots=True)
class Deferred:
    """A deferred notification claimed for sending (``attempts`` counts this one)."""

    id: int
    event_id: str
    chat_id: int
    user_id: int
    kind: str
    text: str
    markup: dict[str, Any] | None
    attempts: int
    about: Naming | None = None


_LINK = "user_id, chat_id, name, role, blocked_at"
_PREFERENCES = "user_id, muted, muted_kinds, quiet_start, quiet_end"
BLOCKED_REASON = "the chat blocked the bot (cleared by /start)"
LEADS = "new_lead"
"""The rotation the round robin hands unassigned deals out in."""

_CLAIM = """
INSERT INTO notifications (event_id, chat_id, user_id, kind, status, attempts, created_at, claimed_at,
                           text, markup, deal_id, contact_name, contact_at)
VALUES ($1, $2, $3, $4, 'pending', 1, $5, $5, $7, $8, $9, $10, $11)
ON CONFLICT (event_id, chat_id) DO UPDATE
   SET status = 'pending', attempts = notifications.attempts + 1, claimed_at = EXCLUDED.claimed_at, error = NULL,
       text = EXCLUDED.text, markup = EXCLUDED.markup, deal_id = EXCLUDED.deal_id,
       contact_name = EXCLUDED.contact_name, contact_at = EXCLUDED.contact_at
 WHERE (notifications.status = 'failed' AND notifications.retryable)
    OR (notifications.status = 'pending' AND notifications.claimed_at < $6)
RETURNING id, attempts
"""

_RENAMABLE = """
notifications AS n
JOIN deals AS d ON d.deal_id = n.deal_id
JOIN unnest($1::bigint[], $2::bigint[]) AS o(deal_id, assignee_id) ON o.deal_id = n.deal_id
JOIN links AS l ON l.chat_id = n.chat_id AND l.user_id = n.user_id AND l.blocked_at IS NULL
WHERE n.deal_id = ANY($1::bigint[]) AND n.text IS NOT NULL
  AND d.contact_at > n.contact_at AND d.contact_name <> n.contact_name
  AND (o.assignee_id IS NULL OR o.assignee_id = n.user_id OR l.role = 'admin')
"""
"""Notifications about these deals whose text shows an older name than the projection's,
in a chat that may see the deal (the FROM and WHERE of the statements on them)."""


class Store:
    """The notifier's rows, over its session factory."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    # ------------------------------------------------------------------ link codes and links

    async def remember_code(self, data: TelegramLinkRequestedData) -> None:
        """Store a one-time code crm handed out (by hash); a repeat changes nothing but the
        details, never a use already made."""
        async with autocommit(self.sessions) as db:
            await db.execute(
                """
                INSERT INTO link_codes (code_hash, user_id, name, role, expires_at)
                VALUES ($1, $2, $3, $4, $5)
                ON CONFLICT (code_hash) DO UPDATE
                   SET user_id = EXCLUDED.user_id, name = EXCLUDED.name, role = EXCLUDED.role,
                       expires_at = EXCLUDED.expires_at
                """,
                data.code_hash,
                data.user_id,
                data.name,
                data.role,
                data.expires_at,
            )

    async def link(self, code_hash: str, chat_id: int, now: datetime | None = None) -> LinkResult:
        """Link ``chat_id`` to the manager whose code this is, using the code up.

        The same ``/start`` handled again (a redelivered update) finds the code used by this
        very chat and answers as before. A manager linking from another chat moves the
        link; a chat linked to someone else is taken over by the new manager.
        """
        now = now or utcnow()
        async with session_scope(self.sessions) as session:
            db = await driver_connection(session)
            code = await db.fetchrow(
                "SELECT user_id, name, role, expires_at, used_at FROM link_codes WHERE code_hash = $1 FOR UPDATE",
                code_hash,
            )
            if code is None:
                return LinkResult("unknown")
            if code["used_at"] is not None:
                linked_chat = await db.fetchval("SELECT chat_id FROM links WHERE user_id = $1", code["user_id"])
                if linked_chat == chat_id:
                    return LinkResult("already_linked", code["name"])
                return LinkResult("used")
            if code["expires_at"] <= now:
                return LinkResult("expired")
            await db.execute("UPDATE link_codes SET used_at = $2 WHERE code_hash = $1", code_hash, now)
            await db.execute("DELETE FROM links WHERE chat_id = $1 AND user_id <> $2", chat_id, code["user_id"])
            await db.execute(
                """
                INSERT INTO links (user_id, chat_id, name, role, linked_at) VALUES ($1, $2, $3, $4, $5)
                ON CONFLICT (user_id) DO UPDATE
                   SET chat_id = EXCLUDED.chat_id, name = EXCLUDED.name, role = EXCLUDED.role,
                       linked_at = EXCLUDED.linked_at, blocked_at = NULL
                """,
                code["user_id"],
                chat_id,
                code["name"],
                code["role"],
                now,
            )
            return LinkResult("linked", code["name"])

    async def link_of_chat(self, chat_id: int) -> Link | None:
        """Who ``chat_id`` belongs to, if anyone."""
        async with autocommit(self.sessions) as db:
            row = await db.fetchrow(f"SELECT {_LINK} FROM links WHERE chat_id = $1", chat_id)
        return Link(**dict(row)) if row else None

    async def unlink_chat(self, chat_id: int) -> Link | None:
        """Remove the link of ``chat_id``; returns what it was."""
        async with autocommit(self.sessions) as db:
            row = await db.fetchrow(f"DELETE FROM links WHERE chat_id = $1 RETURNING {_LINK}", chat_id)
        return Link(**dict(row)) if row else None

    async def unlink_user(
        self, event_id: str, user_id: int, kind: str, *, skip_reason: str | None, now: datetime | None = None
    ) -> None:
        """crm unlinked ``user_id``: remove their link and unused codes, and in the same
        transaction log the goodbye owed to the chat they had (``event_id``, that chat):
        to be sent (a retryable row :meth:`claim` takes), or skipped with ``skip_reason``.
        A redelivery finds no link and changes nothing; :meth:`unlink_notices` still finds
        the row."""
        now = now or utcnow()
        async with session_scope(self.sessions) as session:
            db = await driver_connection(session)
            await db.execute("DELETE FROM link_codes WHERE user_id = $1 AND used_at IS NULL", user_id)
            link = await db.fetchrow(f"DELETE FROM links WHERE user_id = $1 RETURNING {_LINK}", user_id)
            if link is None:
                return
            reason = skip_reason or (BLOCKED_REASON if link["blocked_at"] is not None else None)
            await db.execute(
                """
                INSERT INTO notifications (event_id, chat_id, user_id, kind, status, retryable, attempts, error,
                                           created_at)
                VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8)
                ON CONFLICT (event_id, chat_id) DO NOTHING
                """,
                event_id,
                link["chat_id"],
                user_id,
                kind,
                "skipped" if reason else "failed",
                reason is None,
                reason or "not sent yet",
                now,
            )

    async def unlink_notices(self, event_id: str, kind: str) -> list[Link]:
        """The chats owed a goodbye for ``event_id`` (whatever their status), as links."""
        async with autocommit(self.sessions) as db:
            rows = await db.fetch(
                "SELECT user_id, chat_id FROM notifications WHERE event_id = $1 AND kind = $2 ORDER BY chat_id",
                event_id,
                kind,
            )
        return [Link(user_id=row["user_id"], chat_id=row["chat_id"], name="", role="") for row in rows]

    async def recipients(self, assignee_id: int | None) -> list[Link]:
        """The assignee's linked chat, or every linked chat while nobody is assigned."""
        async with autocommit(self.sessions) as db:
            if assignee_id is None:
                rows = await db.fetch(f"SELECT {_LINK} FROM links ORDER BY user_id")
            else:
                rows = await db.fetch(f"SELECT {_LINK} FROM links WHERE user_id = $1", assignee_id)
        return [Link(**dict(row)) for row in rows]

    async def links_with_role(self, role: str) -> list[Link]:
        """Every linked chat of the users with ``role`` (admin or manager)."""
        async with autocommit(self.sessions) as db:
            rows = await db.fetch(f"SELECT {_LINK} FROM links WHERE role = $1 ORDER BY user_id", role)
        return [Link(**dict(row)) for row in rows]

    async def mark_blocked(self, chat_id: int, now: datetime | None = None) -> None:
        """Remember that the chat blocked the bot (kept from the first time until cleared)."""
        async with autocommit(self.sessions) as db:
            await db.execute(
                "UPDATE links SET blocked_at = COALESCE(blocked_at, $2) WHERE chat_id = $1", chat_id, now or utcnow()
            )

    async def clear_blocked(self, chat_id: int) -> None:
        """The chat talks to the bot again (``/start``): notify it again."""
        async with autocommit(self.sessions) as db:
            await db.execute(
                "UPDATE links SET blocked_at = NULL WHERE chat_id = $1 AND blocked_at IS NOT NULL", chat_id
            )

    # ------------------------------------------------------------------ Telegram updates

    async def was_handled(self, update_id: int) -> bool:
        """Whether the update was handled already (a redelivery: answer nothing twice)."""
        async with autocommit(self.sessions) as db:
            return bool(await db.fetchval("SELECT 1 FROM handled_updates WHERE update_id = $1", update_id))

    async def mark_handled(self, update_id: int) -> None:
        """Remember a handled update (after its answers went out: at least once, not at most)."""
        async with autocommit(self.sessions) as db:
            await db.execute(
                "INSERT INTO handled_updates (update_id, handled_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                update_id,
                utcnow(),
            )

    # ------------------------------------------------------------------ notification log

    async def claim(
        self,
        event_id: str,
        link: Link,
        kind: str,
        *,
        stale_before: datetime,
        now: datetime | None = None,
        about: Naming | None = None,
        text: str | None = None,
        markup: dict[str, Any] | None = None,
    ) -> Claim | None:
        """Take the (event, chat) notification for sending: a new row, or one whose earlier
        attempt failed in a way worth retrying, or one left ``pending`` before
        ``stale_before`` (its process died mid-send). None: already sent, skipped, given up,
        or being sent right now by another consumer. With ``about`` (a notification about a
        deal), its text, keyboard and the name it shows are kept on the row."""
        now = now or utcnow()
        kept = about is not None
        async with autocommit(self.sessions) as db:
            row = await db.fetchrow(
                _CLAIM,
                event_id,
                link.chat_id,
                link.user_id,
                kind,
                now,
                stale_before,
                text if kept else None,
                json.dumps(markup) if kept and markup is not None else None,
                *_naming(about),
            )
        return Claim(row["id"], row["attempts"]) if row else None

    async def status(self, event_id: str, chat_id: int) -> str | None:
        """The status of the (event, chat) notification, None when there is none."""
        async with autocommit(self.sessions) as db:
            value = await db.fetchval(
                "SELECT status FROM notifications WHERE event_id = $1 AND chat_id = $2", event_id, chat_id
            )
        return None if value is None else str(value)

    async def record_skipped(self, event_id: str, link: Link, kind: str, reason: str) -> bool:
        """Record a notification that is not sent (no bot token, a blocked chat); False if one existed."""
        async with autocommit(self.sessions) as db:
            row = await db.fetchval(
                """
                INSERT INTO notifications (event_id, chat_id, user_id, kind, status, attempts, error, created_at)
                VALUES ($1, $2, $3, $4, 'skipped', 0, $5, $6)
                ON CONFLICT (event_id, chat_id) DO NOTHING
                RETURNING id
                """,
                event_id,
                link.chat_id,
                link.user_id,
                kind,
                reason,
                utcnow(),
            )
        return row is not None

    async def record_sent(
        self, notification_id: int, telegram_message_id: int, *, text: str | None = None, about: Naming | None = None
    ) -> None:
        """The notification reached the chat; with ``about``, the ``text`` sent and the name
        it shows are kept (the name may have changed since it was held)."""
        async with autocommit(self.sessions) as db:
            if about is None:
                await db.execute(
                    "UPDATE notifications SET status = 'sent', telegram_message_id = $2, sent_at = $3, error = NULL "
                    "WHERE id = $1",
                    notification_id,
                    telegram_message_id,
                    utcnow(),
                )
                return
            await db.execute(
                "UPDATE notifications SET status = 'sent', telegram_message_id = $2, sent_at = $3, error = NULL,"
                " text = $4, deal_id = $5, contact_name = $6, contact_at = $7 WHERE id = $1",
                notification_id,
                telegram_message_id,
                utcnow(),
                text,
                *_naming(about),
            )

    async def record_failed(self, notification_id: int, error: str, *, retryable: bool) -> None:
        async with autocommit(self.sessions) as db:
            await db.execute(
                "UPDATE notifications SET status = 'failed', error = $2, retryable = $3 WHERE id = $1",
                notification_id,
                error[:2000],
                retryable,
            )

    # ------------------------------------------------------------------ deferred notifications

    async def record_deferred(
        self,
        event_id: str,
        link: Link,
        kind: str,
        text: str,
        markup: dict[str, Any] | None,
        not_before: datetime,
        *,
        about: Naming | None = None,
    ) -> bool:
        """Hold a notification until ``not_before`` (quiet hours), with what it will say (and,
        about a deal, the name it shows). A row already there stays as it is, except an
        attempt that failed for a passing reason, which now waits too. False when nothing
        was written."""
        async with autocommit(self.sessions) as db:
            row = await db.fetchval(
                """
                INSERT INTO notifications (event_id, chat_id, user_id, kind, status, attempts, created_at, text,
                                           markup, not_before, deal_id, contact_name, contact_at)
                VALUES ($1, $2, $3, $4, 'deferred', 0, $5, $6, $7, $8, $9, $10, $11)
                ON CONFLICT (event_id, chat_id) DO UPDATE
                   SET status = 'deferred', text = EXCLUDED.text, markup = EXCLUDED.markup,
                       not_before = EXCLUDED.not_before, claimed_at = NULL, retryable = false,
                       deal_id = EXCLUDED.deal_id, contact_name = EXCLUDED.contact_name,
                       contact_at = EXCLUDED.contact_at
                 WHERE notifications.status = 'failed' AND notifications.retryable
                RETURNING id
                """,
                event_id,
                link.chat_id,
                link.user_id,
                kind,
                utcnow(),
                text,
                None if markup is None else json.dumps(markup),
                not_before,
                *_naming(about),
            )
        return row is not None

    async def claim_deferred(self, now: datetime, lease_until: datetime, limit: int) -> list[Deferred]:
        """Take every due deferred notification of up to ``limit`` chats for sending, leasing
        them until ``lease_until`` (a replica that dies mid-send leaves them to be taken again
        then). A chat is taken whole, under a transaction-scoped advisory lock, so what waited
        for one chat is sent by one replica, in the order it came. Those of a muted user wait
        for ``/unmute``."""
        async with autocommit(self.sessions) as db:
            rows = await db.fetch(
                """
                WITH due AS MATERIALIZED (
                     SELECT DISTINCT d.chat_id FROM notifications AS d
                      WHERE d.status = 'deferred' AND d.not_before <= $1
                        AND NOT EXISTS (SELECT 1 FROM preferences AS p WHERE p.user_id = d.user_id AND p.muted)
                      LIMIT $3),
                     mine AS MATERIALIZED (
                     SELECT chat_id FROM due
                      WHERE pg_try_advisory_xact_lock(
                            hashtext(current_schema() || ':deferred'), (chat_id % 2147483647)::int))
                UPDATE notifications AS n
                   SET attempts = n.attempts + 1, claimed_at = $1, not_before = $2
                 WHERE n.chat_id IN (SELECT chat_id FROM mine) AND n.status = 'deferred' AND n.not_before <= $1
                   AND NOT EXISTS (SELECT 1 FROM preferences AS p WHERE p.user_id = n.user_id AND p.muted)
                RETURNING n.id, n.event_id, n.chat_id, n.user_id, n.kind, n.text, n.markup, n.attempts,
                          n.deal_id, n.contact_name, n.contact_at
                """,
                now,
                lease_until,
                limit,
            )
        ordered = sorted(rows, key=lambda row: row["id"])  # the order they were stored in
        return [
            Deferred(
                id=row["id"],
                event_id=row["event_id"],
                chat_id=row["chat_id"],
                user_id=row["user_id"],
                kind=row["kind"],
                text=row["text"],
                markup=_json(row["markup"]),
                attempts=row["attempts"],
                about=_naming_of(row),
            )
            for row in ordered
        ]

    async def defer_again(self, notification_id: int, not_before: datetime, error: str | None = None) -> None:
        """Put a claimed deferred notification back to wait until ``not_before`` (quiet hours
        again, or a passing failure's backoff, whose ``error`` is kept)."""
        async with autocommit(self.sessions) as db:
            await db.execute(
                "UPDATE notifications SET not_before = $2, claimed_at = NULL, error = $3 "
                "WHERE id = $1 AND status = 'deferred'",
                notification_id,
                not_before,
                None if error is None else error[:2000],
            )

    async def skip_deferred(self, notification_id: int, reason: str) -> None:
        """A claimed deferred notification will not be sent (its kind turned off, the chat
        gone or blocked)."""
        async with autocommit(self.sessions) as db:
            await db.execute(
                "UPDATE notifications SET status = 'skipped', error = $2 WHERE id = $1", notification_id, reason
            )

    async def reschedule_deferred(self, user_id: int, not_before: datetime) -> int:
        """The user changed their quiet hours: their waiting notifications (not those being
        sent right now) are due at ``not_before`` instead; returns how many."""
        async with autocommit(self.sessions) as db:
            status = await db.execute(
                "UPDATE notifications SET not_before = $2 "
                "WHERE user_id = $1 AND status = 'deferred' AND claimed_at IS NULL",
                user_id,
                not_before,
            )
        return int(status.rsplit(" ", 1)[-1])

    async def deferred_count(self, user_id: int) -> int:
        """How many of the user's notifications wait."""
        async with autocommit(self.sessions) as db:
            value = await db.fetchval(
                "SELECT count(*) FROM notifications WHERE user_id = $1 AND status = 'deferred'", user_id
            )
        return int(value)

    # ------------------------------------------------------------------ a customer's newer name

    async def claim_renames(
        self,
        deals: dict[int, int | None],
        *,
        now: datetime,
        stale_before: datetime,
        sent_after: datetime,
    ) -> tuple[list[Rename], int]:
        """Take for editing the sent notifications about ``deals`` (deal id → its assignee)
        whose text shows an older name of the customer than the projection's, and count
        those that need it too but are busy elsewhere (being edited or sent right now).

        Only messages sent after ``sent_after`` (older ones cannot be edited any more), to
        a chat still linked to the same user and not blocked, who may see the deal: its
        assignee, an admin, or anyone while it is unassigned. A taken row is leased from
        ``now``; a lease begun before ``stale_before`` (its process died) is taken again."""
        ids = list(deals)
        assignees = [deals[deal_id] for deal_id in ids]
        async with autocommit(self.sessions) as db:
            rows = await db.fetch(
                f"""
                WITH wanted AS (
                     SELECT n.id FROM {_RENAMABLE}
                        AND n.status = 'sent' AND n.telegram_message_id IS NOT NULL AND n.sent_at > $4
                        AND (n.renaming_at IS NULL OR n.renaming_at < $5)
                      ORDER BY n.id
                        FOR UPDATE OF n SKIP LOCKED)
                UPDATE notifications AS n SET renaming_at = $3
                  FROM wanted AS w, deals AS d
                 WHERE n.id = w.id AND d.deal_id = n.deal_id
                RETURNING n.id, n.chat_id, n.telegram_message_id, n.text, n.markup, n.contact_name,
                          d.contact_name AS to_name, d.contact_at AS to_at
                """,
                ids,
                assignees,
                now,
                sent_after,
                stale_before,
            )
            taken = [row["id"] for row in rows]
            busy = await db.fetchval(
                f"""
                SELECT count(*) FROM {_RENAMABLE}
                   AND n.id <> ALL($3::bigint[])
                   AND ((n.status = 'sent' AND n.telegram_message_id IS NOT NULL AND n.sent_at > $4)
                        OR (n.status IN ('pending', 'deferred') AND n.claimed_at >= $5))
                """,
                ids,
                assignees,
                taken,
                sent_after,
                stale_before,
            )
        renames = [
            Rename(
                id=row["id"],
                chat_id=row["chat_id"],
                message_id=row["telegram_message_id"],
                text=row["text"],
                markup=_json(row["markup"]),
                shown=row["contact_name"],
                to=row["to_name"],
                at=row["to_at"],
            )
            for row in sorted(rows, key=lambda row: row["id"])
        ]
        return renames, int(busy)

    async def record_renamed(self, rename: Rename, text: str) -> None:
        """The message now shows ``rename.to`` (its text is ``text``)."""
        async with autocommit(self.sessions) as db:
            await db.execute(
                "UPDATE notifications SET text = $2, contact_name = $3, contact_at = $4, renaming_at = NULL"
                " WHERE id = $1",
                rename.id,
                text,
                rename.to,
                rename.at,
            )

    async def release_rename(self, notification_id: int) -> None:
        """The edit did not happen for a passing reason: another attempt may take it."""
        async with autocommit(self.sessions) as db:
            await db.execute("UPDATE notifications SET renaming_at = NULL WHERE id = $1", notification_id)

    async def refuse_rename(self, notification_id: int, error: str) -> None:
        """Telegram will not edit the message (too old, deleted...): it keeps the name it
        shows, and its text is no longer kept (nothing will edit it)."""
        async with autocommit(self.sessions) as db:
            await db.execute(
                "UPDATE notifications SET text = NULL, markup = NULL, renaming_at = NULL, error = $2 WHERE id = $1",
                notification_id,
                f"name not corrected: {error}"[:2000],
            )

    # ------------------------------------------------------------------ round robin

    async def offered_to(self, deal_id: int) -> int | None:
        """The manager the round robin gave the deal to, if any."""
        async with autocommit(self.sessions) as db:
            value = await db.fetchval("SELECT offered_to FROM deals WHERE deal_id = $1", deal_id)
        return None if value is None else int(value)

    async def offer_deal(
        self, deal_id: int, eligible: Iterable[int], *, keep: Iterable[int], now: datetime | None = None
    ) -> int | None:
        """The manager who is told of the unassigned deal ``deal_id``: the one it was given
        to while they are among ``keep``, else the next turn of the ``eligible`` user ids,
        remembered as the deal's.

        The turn passes to the next eligible user id after the last one served, from the
        smallest again after the largest. The rotation's row is locked for the choice, and
        the deal's manager read again under it, so replicas handing out turns at once serve
        one manager each, in order, and two events of one deal handled at once give it one
        manager. An event handled again finds the deal's manager and does not move the turn.
        None, and nothing recorded, when the deal's manager is not kept and nobody is
        eligible.
        """
        kept = set(keep)
        candidates = sorted(set(eligible))
        now = now or utcnow()
        async with session_scope(self.sessions) as session:
            db = await driver_connection(session)
            await db.execute(
                "INSERT INTO rotations (name, updated_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", LEADS, now
            )
            last = await db.fetchval("SELECT last_user_id FROM rotations WHERE name = $1 FOR UPDATE", LEADS)
            offered = await db.fetchval("SELECT offered_to FROM deals WHERE deal_id = $1", deal_id)
            if offered in kept:
                return int(offered)
            if not candidates:
                return None
            user_id = next((user for user in candidates if last is None or user > last), candidates[0])
            await db.execute(
                "UPDATE rotations SET last_user_id = $2, turns = turns + 1, updated_at = $3 WHERE name = $1",
                LEADS,
                user_id,
                now,
            )
            await db.execute(
                "INSERT INTO deals AS d (deal_id, offered_to) VALUES ($1, $2)"
                " ON CONFLICT (deal_id) DO UPDATE SET offered_to = EXCLUDED.offered_to",
                deal_id,
                user_id,
            )
        return user_id

    # ------------------------------------------------------------------ preferences

    async def preferences_of(self, user_ids: Iterable[int]) -> dict[int, Preferences]:
        """The preferences of each of ``user_ids`` (the defaults for users who set none)."""
        wanted = sorted(set(user_ids))
        async with autocommit(self.sessions) as db:
            rows = await db.fetch(f"SELECT {_PREFERENCES} FROM preferences WHERE user_id = ANY($1::bigint[])", wanted)
        found = {row["user_id"]: _preferences(row) for row in rows}
        return {user_id: found.get(user_id, Preferences()) for user_id in wanted}

    async def preferences(self, user_id: int) -> Preferences:
        """One user's preferences."""
        return (await self.preferences_of([user_id]))[user_id]

    async def set_muted(self, user_id: int, muted: bool) -> Preferences:
        """``/mute`` (True) or ``/unmute`` (False)."""
        return await self._upsert_preferences(
            user_id, "muted = EXCLUDED.muted", muted=muted, muted_kinds=[], start=None, end=None
        )

    async def set_quiet_hours(self, user_id: int, start: time | None, end: time | None) -> Preferences:
        """Quiet hours from ``start`` to ``end`` (business time zone); None for both: off."""
        return await self._upsert_preferences(
            user_id,
            "quiet_start = EXCLUDED.quiet_start, quiet_end = EXCLUDED.quiet_end",
            muted=False,
            muted_kinds=[],
            start=start,
            end=end,
        )

    async def toggle_kind(self, user_id: int, kind: str) -> Preferences:
        """Turn ``kind`` off if it was on, on if it was off (one statement: two quick
        presses toggle twice)."""
        return await self._upsert_preferences(
            user_id,
            "muted_kinds = CASE WHEN EXCLUDED.muted_kinds[1] = ANY(preferences.muted_kinds) "
            "THEN array_remove(preferences.muted_kinds, EXCLUDED.muted_kinds[1]) "
            "ELSE array_append(preferences.muted_kinds, EXCLUDED.muted_kinds[1]) END",
            muted=False,
            muted_kinds=[kind],
            start=None,
            end=None,
        )

    async def _upsert_preferences(
        self,
        user_id: int,
        update: str,
        *,
        muted: bool,
        muted_kinds: list[str],
        start: time | None,
        end: time | None,
    ) -> Preferences:
        """Insert the user's row with these values, or apply ``update`` (a constant SET
        list of the caller's) to the existing one."""
        async with autocommit(self.sessions) as db:
            row = await db.fetchrow(
                f"""
                INSERT INTO preferences (user_id, muted, muted_kinds, quiet_start, quiet_end, updated_at)
                VALUES ($1, $2, $3::varchar[], $4, $5, $6)
                ON CONFLICT (user_id) DO UPDATE SET {update}, updated_at = EXCLUDED.updated_at
                RETURNING {_PREFERENCES}
                """,
                user_id,
                muted,
                muted_kinds,
                start,
                end,
                utcnow(),
            )
        return _preferences(row)


def _naming(about: Naming | None) -> tuple[int | None, str | None, datetime | None]:
    """The ``deal_id, contact_name, contact_at`` columns of a notification."""
    return (None, None, None) if about is None else (about.deal_id, about.name, about.at)


def _naming_of(row: Any) -> Naming | None:
    if row["deal_id"] is None or row["contact_name"] is None or row["contact_at"] is None:
        return None
    return Naming(row["deal_id"], row["contact_name"], row["contact_at"])


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _preferences(row: Any) -> Preferences:
    return Preferences(
        muted=row["muted"],
        muted_kinds=frozenset(row["muted_kinds"]),
        quiet_start=row["quiet_start"],
        quiet_end=row["quiet_end"],
    )
