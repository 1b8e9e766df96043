"""The bot's buttons on a deal: "Take" and "Reply", and crm's answers to them.

A button becomes a command to crm (``crm.cmd.assign_deal``, ``crm.cmd.send_message``),
staged in the notifier's outbox in the same transaction as its ``actions`` row (pending),
so the command is published if and only if the action is recorded. The command's event
id is stable, made from the Telegram callback (take) or the chat and message (reply): an
update handled again stages the same id, which the outbox and JetStream store once, and
crm's idempotency key makes a reply send once.

"Reply" keeps a draft per chat (``reply_drafts``: this chat's next plain text is a reply on
that deal) for :data:`DRAFT_TTL`.

crm answers with events, each settling the pending actions it concerns with one
conditional ``UPDATE ... WHERE status = 'pending'`` (so two replicas or a redelivery settle
an action once) and, in the same transaction, logging the confirmation owed to the chat
in the notification log, which :class:`ActionAnswers` then sends at most once:

* ``crm.cmd.rejected`` for a command of ours → rejected, the chat is told crm's reason;
  for a take of a deal that already was the user's (reason ``ALREADY_ASSIGNED_TO_YOU``)
  → done, "✅ The deal is already yours";
* ``crm.message.sent`` with the same deal, author and text as a pending reply → done,
  "✅ Sent to <name>";
* ``crm.message.failed`` for such a reply → failed, and nothing more is sent here: the
  reply-failed notification already tells its author why;
* ``crm.deal.updated`` making the deal the user's → their pending takes are done,
  "✅ The deal is yours".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jggl_common.contracts import (
    ALREADY_ASSIGNED_TO_YOU,
    AssignDealCommand,
    AssignDealCommandData,
    CommandRejected,
    DealUpdated,
    Envelope,
    MessageFailed,
    MessageSent,
    SendMessageCommand,
    SendMessageCommandData,
    stable_event_id,
    utcnow,
)
from jggl_common.db import autocommit, driver_connection, session_scope
from jggl_common.logs import get_logger
from jggl_common.outbox import Outbox, stage
from notifier.notification_texts import (
    contact_name,
    render_action_rejected,
    render_already_yours,
    render_reply_sent,
    render_taken,
)
from notifier.notifications import SKIP_REASON, Notifier
from notifier.projection import Projection, parse
from notifier.store import Link

__all__ = ["ANSWER_EVENTS", "DRAFT_TTL", "ActionAnswers", "DealActions", "Draft", "ReplyOutcome", "TakeOutcome"]

log = get_logger(__name__)

DRAFT_TTL = timedelta(minutes=15)
"""How long a "Reply" waits for the manager's text."""
PRODUCER = "notifier"

TakeOutcome = Literal["taking", "already_yours"]
ReplyOutcome = Literal["sending", "no_draft", "expired"]

ANSWER_EVENTS: dict[str, type[Envelope]] = {
    contract.subject: contract for contract in (CommandRejected, MessageSent, MessageFailed, DealUpdated)
}
"""The CRM events that answer the bot's actions, by their ``type`` (which is their subject)."""


@dataclass(frozen=True, slots=True)
class Draft:
    """A chat's pending "Reply": its next plain text goes to this deal's customer."""

    user_id: int
    deal_id: int
    expires_at: datetime


class DealActions:
    """What the buttons and the chat's replies do, over the notifier's sessions and outbox."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], outbox: Outbox, projection: Projection) -> None:
        self.sessions = sessions
        self.outbox = outbox
        self.projection = projection

    async def take(self, link: Link, chat_id: int, deal_id: int, callback_id: str) -> TakeOutcome:
        """Ask crm to assign the deal to the linked user (unless it is theirs already)."""
        known = await self.projection.deal(deal_id)
        if known is not None and known.assignee_id == link.user_id:
            return "already_yours"
        command = AssignDealCommand(
            id=stable_event_id(f"notifier.take:{callback_id}"),
            producer=PRODUCER,
            data=AssignDealCommandData(deal_id=deal_id, assignee_id=link.user_id, acting_user_id=link.user_id),
        )
        async with self.outbox.transaction() as session:
            await self._record(session, command.id, "take", link.user_id, chat_id, deal_id, None)
            await stage(session, command)
        log.info("take requested", deal_id=deal_id, user_id=link.user_id, command_id=command.id)
        return "taking"

    async def start_reply(self, link: Link, chat_id: int, deal_id: int, now: datetime | None = None) -> Draft:
        """This chat's next plain text is a reply on ``deal_id`` (replacing any earlier draft)."""
        draft = Draft(link.user_id, deal_id, (now or utcnow()) + DRAFT_TTL)
        async with autocommit(self.sessions) as db:
            await db.execute(
                """
                INSERT INTO reply_drafts (chat_id, user_id, deal_id, expires_at) VALUES ($1, $2, $3, $4)
                ON CONFLICT (chat_id) DO UPDATE
                   SET user_id = EXCLUDED.user_id, deal_id = EXCLUDED.deal_id, expires_at = EXCLUDED.expires_at
                """,
                chat_id,
                draft.user_id,
                draft.deal_id,
                draft.expires_at,
            )
        return draft

    async def draft(self, chat_id: int) -> Draft | None:
        """The chat's draft, expired or not."""
        async with autocommit(self.sessions) as db:
            row = await db.fetchrow("SELECT user_id, deal_id, expires_at FROM reply_drafts WHERE chat_id = $1", chat_id)
        return Draft(**dict(row)) if row else None

    async def cancel_reply(self, chat_id: int) -> bool:
        """Drop the chat's draft; False when there was none (or it had expired)."""
        async with autocommit(self.sessions) as db:
            expires_at = await db.fetchval("DELETE FROM reply_drafts WHERE chat_id = $1 RETURNING expires_at", chat_id)
        return expires_at is not None and expires_at > utcnow()

    async def reply(
        self, link: Link, chat_id: int, message_id: int, text: str, now: datetime | None = None
    ) -> tuple[ReplyOutcome, int | None]:
        """Turn the chat's draft and ``text`` into a ``crm.cmd.send_message``; the outcome
        and the deal it went to."""
        now = now or utcnow()
        key = f"telegram:{chat_id}:{message_id}"
        command_id = stable_event_id(f"notifier.reply:{key}")
        async with self.outbox.transaction() as session:
            db = await driver_connection(session)
            row = await db.fetchrow(
                "DELETE FROM reply_drafts WHERE chat_id = $1 AND user_id = $2 RETURNING deal_id, expires_at",
                chat_id,
                link.user_id,
            )
            if row is None:
                return "no_draft", None
            if row["expires_at"] <= now:
                return "expired", row["deal_id"]
            command = SendMessageCommand(
                id=command_id,
                producer=PRODUCER,
                data=SendMessageCommandData(
                    deal_id=row["deal_id"], acting_user_id=link.user_id, text=text, idempotency_key=key
                ),
            )
            await self._record(session, command.id, "reply", link.user_id, chat_id, row["deal_id"], text)
            await stage(session, command)
        log.info("reply requested", deal_id=row["deal_id"], user_id=link.user_id, command_id=command_id)
        return "sending", row["deal_id"]

    @staticmethod
    async def _record(
        session: AsyncSession, command_id: str, kind: str, user_id: int, chat_id: int, deal_id: int, text: str | None
    ) -> None:
        db = await driver_connection(session)
        await db.execute(
            """
            INSERT INTO actions (command_id, kind, user_id, chat_id, deal_id, text, status, created_at)
            VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7)
            ON CONFLICT (command_id) DO NOTHING
            """,
            command_id,
            kind,
            user_id,
            chat_id,
            deal_id,
            text,
            utcnow(),
        )


_REPLY_MATCH = """
WITH target AS (
    SELECT command_id FROM actions
     WHERE kind = 'reply' AND status = 'pending' AND deal_id = $1 AND user_id = $2 AND text = $3
     ORDER BY created_at, command_id LIMIT 1
       FOR UPDATE SKIP LOCKED
)
UPDATE actions AS a SET status = $4, reason = $5, answered_at = $6
  FROM target WHERE a.command_id = target.command_id
RETURNING a.user_id, a.chat_id
"""


class ActionAnswers(Notifier):
    """crm's answers to the bot's actions: settles them and tells the chat, once."""

    kind = "action_answer"
    essential = True  # the answer to what the user just did passes mute and quiet hours

    async def handle_body(self, body: dict[str, Any]) -> None:
        """Handle a CRM event as it came off the bus, when it is one that answers actions."""
        contract = ANSWER_EVENTS.get(str(body.get("type"))) if isinstance(body, dict) else None
        if contract is not None:
            await self.handle(parse(contract, body))

    async def handle(self, event: Envelope) -> None:
        if isinstance(event, CommandRejected):
            await self._rejected(event)
        elif isinstance(event, MessageSent):
            await self._sent(event)
        elif isinstance(event, MessageFailed):
            await self._failed(event)
        elif isinstance(event, DealUpdated):
            await self._deal_updated(event)

    async def _rejected(self, event: CommandRejected) -> None:
        data = event.data
        async with autocommit(self.store.sessions) as db:
            action = await db.fetchrow(
                "SELECT a.kind, d.contact_name FROM actions a LEFT JOIN deals d ON d.deal_id = a.deal_id"
                " WHERE a.command_id = $1",
                data.command_id,
            )
        if action is None:
            return  # not a command of the bot's
        if action["kind"] == "take" and data.reason == ALREADY_ASSIGNED_TO_YOU:
            # Nothing to take: the deal was theirs already. Done, and said so.
            status, reason = "done", None
            text = render_already_yours(action["contact_name"])
        else:
            status, reason = "rejected", data.reason
            text = render_action_rejected(action["kind"], action["contact_name"], data.reason)
        chats = await self._settle(
            event.id,
            "UPDATE actions SET status = $2, reason = $3, answered_at = $4"
            " WHERE command_id = $1 AND status = 'pending' RETURNING user_id, chat_id",
            data.command_id,
            status,
            reason,
            utcnow(),
        )
        await self.deliver(event.id, chats, text, None)

    async def _sent(self, event: MessageSent) -> None:
        data = event.data
        if data.author_user_id is None or data.text is None:
            return
        chats = await self._settle(
            event.id, _REPLY_MATCH, data.deal_id, data.author_user_id, data.text, "done", None, utcnow()
        )
        await self.deliver(event.id, chats, render_reply_sent(contact_name(data.contact)), None)

    async def _failed(self, event: MessageFailed) -> None:
        data = event.data
        if data.author_user_id is None or data.text is None:
            return
        reason = f"{data.reason}: {data.error_message}"
        async with autocommit(self.store.sessions) as db:
            await db.fetch(_REPLY_MATCH, data.deal_id, data.author_user_id, data.text, "failed", reason, utcnow())

    async def _deal_updated(self, event: DealUpdated) -> None:
        deal = event.data.deal
        if "assignee_id" not in event.data.changes or deal.assignee_id is None:
            return
        chats = await self._settle(
            event.id,
            "UPDATE actions SET status = 'done', answered_at = $3"
            " WHERE kind = 'take' AND status = 'pending' AND deal_id = $1 AND user_id = $2 RETURNING user_id, chat_id",
            deal.id,
            deal.assignee_id,
            utcnow(),
        )
        await self.deliver(event.id, chats, render_taken(contact_name(deal.contact)), None)

    async def _settle(self, event_id: str, statement: str, *args: Any) -> list[Link]:
        """Run ``statement`` (settling actions, returning their user and chat) and log in the
        same transaction the answer owed to each chat; the chats owed an answer for
        ``event_id``, also those logged by an earlier delivery of the event."""
        skip = SKIP_REASON if self.bot is None else None
        async with session_scope(self.store.sessions) as session:
            db = await driver_connection(session)
            now = utcnow()
            for row in await db.fetch(statement, *args):
                await db.execute(
                    """
                    INSERT INTO notifications (event_id, chat_id, user_id, kind, status, retryable, attempts, error,
                                               created_at)
                    VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8)
                    ON CONFLICT (event_id, chat_id) DO NOTHING
                    """,
                    event_id,
                    row["chat_id"],
                    row["user_id"],
                    self.kind,
                    "skipped" if skip else "failed",
                    skip is None,
                    skip or "not sent yet",
                    now,
                )
            owed = await db.fetch(
                "SELECT user_id, chat_id FROM notifications WHERE event_id = $1 AND kind = $2 ORDER BY chat_id",
                event_id,
                self.kind,
            )
        return [Link(user_id=row["user_id"], chat_id=row["chat_id"], name="", role="") for row in owed]
