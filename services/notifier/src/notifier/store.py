"""The statements the notifier runs on its schema: link codes, links and the notification log.

A few hand-written statements on the asyncpg connection; each entry point owns its
transaction. The unique keys carry the guarantees: ``links.user_id`` and ``links.chat_id``
(one chat per manager and one manager per chat), ``notifications (event_id, chat_id)``
(one notification per event and chat, whatever the redeliveries and replicas) and
``handled_updates.update_id`` (a Telegram update answered once).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jggl_common.contracts import TelegramLinkRequestedData, utcnow
from jggl_common.db import autocommit, driver_connection, session_scope

__all__ = ["Claim", "Link", "LinkOutcome", "LinkResult", "Store"]

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
class Claim:
    """A notification row this process may send now (``attempts`` counts this one)."""

    id: int
    attempts: int


_LINK = "user_id, chat_id, name, role, blocked_at"
BLOCKED_REASON = "the chat blocked the bot (cleared by /start)"

_CLAIM = """
INSERT INTO notifications (event_id, chat_id, user_id, kind, status, attempts, created_at, claimed_at)
VALUES ($1, $2, $3, $4, 'pending', 1, $5, $5)
ON CONFLICT (event_id, chat_id) DO UPDATE
   SET status = 'pending', attempts = notifications.attempts + 1, claimed_at = EXCLUDED.claimed_at, error = NULL
 WHERE (notifications.status = 'failed' AND notifications.retryable)
    OR (notifications.status = 'pending' AND notifications.claimed_at < $6)
RETURNING id, attempts
"""


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
        self, event_id: str, link: Link, kind: str, *, stale_before: datetime, now: datetime | None = None
    ) -> Claim | None:
        """Take the (event, chat) notification for sending: a new row, or one whose earlier
        attempt failed in a way worth retrying, or one left ``pending`` before
        ``stale_before`` (its process died mid-send). None: already sent, skipped, given up,
        or being sent right now by another consumer."""
        now = now or utcnow()
        async with autocommit(self.sessions) as db:
            row = await db.fetchrow(_CLAIM, event_id, link.chat_id, link.user_id, kind, now, stale_before)
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

    async def record_sent(self, notification_id: int, telegram_message_id: int) -> None:
        async with autocommit(self.sessions) as db:
            await db.execute(
                "UPDATE notifications SET status = 'sent', telegram_message_id = $2, sent_at = $3, error = NULL "
                "WHERE id = $1",
                notification_id,
                telegram_message_id,
                utcnow(),
            )

    async def record_failed(self, notification_id: int, error: str, *, retryable: bool) -> None:
        async with autocommit(self.sessions) as db:
            await db.execute(
                "UPDATE notifications SET status = 'failed', error = $2, retryable = $3 WHERE id = $1",
                notification_id,
                error[:2000],
                retryable,
            )
