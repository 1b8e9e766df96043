"""The sender: delivers queued replies through Meta's Send API, one durable event each.

For every ``crm.outbound.send_requested`` it:

1. takes the conversation's *send turn* (a session-level advisory lock, held during the
   call): one reply per conversation is in flight at a time, across replicas, so an
   echo that beats Meta's answer can only be the copy of that one reply, and a
   redelivered event waits for the first delivery and then finds the reply sent;
2. re-decides the messaging window (a reply queued long ago must not go out as
   ``RESPONSE`` after 24 hours) and records the attempt;
3. waits for the page's rate limit, then calls the Send API;
4. stores the outcome: ``sent`` with Meta's id (then response tracking and
   ``crm.message.sent``), or ``failed`` with Meta's code and text (``crm.message.failed``;
   code 190 also flags the channel and publishes ``crm.channel.needs_reauth`` once), or
   :class:`RetryLater` for throttling and outages, which the consumer turns into a
   delayed redelivery, honouring Meta's ``estimated_time_to_regain_access``.

A call whose answer was lost (timeout) is retried like an outage; if Meta had in fact
delivered it, its echo usually arrives first and marks the reply sent, and the retry
then sends nothing. That is the one case where a duplicate can slip through, as with
any API without idempotency keys.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm.channels.tokens import PageTokens
from crm.config import CrmSettings
from crm.conversation import replies
from crm.conversation.repository import load_message, lock_conversation, recompute_deal, touch_conversation
from crm.deals.repository import DealRepository
from crm.graph import GraphClient, GraphError
from jggl_common.contracts import SendRequested, utcnow
from jggl_common.contracts.outbound import FailureReason
from jggl_common.logs import correlation_id, get_logger
from jggl_common.outbox import Outbox

from . import events
from . import repository as repo
from .ratelimit import SendRateLimiter
from .window import Delivery, WindowClosed, decide, human_agent_enabled

__all__ = ["Outcome", "RetryLater", "Sender", "retry_delay"]

log = get_logger(__name__)

Outcome = Literal["sent", "failed", "skipped"]

# A lock key space of its own: the inbound consumer's conversation lock is another one.
_SEND_TURN = "hashtext(current_schema() || '/send'), :id"


@dataclass(frozen=True, slots=True)
class _Prepared:
    target: repo.SendTarget
    delivery: Delivery
    token: str
    attempt: int


@dataclass(frozen=True, slots=True)
class _Closing:
    reason: FailureReason
    error: str


class RetryLater(Exception):
    """Try this reply again in ``delay`` seconds (Meta throttled us, or did not answer)."""

    def __init__(self, delay: float, reason: str) -> None:
        super().__init__(f"retry in {delay:.1f}s: {reason}")
        self.delay = delay


def retry_delay(attempt: int, regain_seconds: float | None, *, base: float, cap: float) -> float:
    """Seconds before attempt ``attempt + 1``: a doubling backoff from ``base``, at least what
    Meta asked for (``estimated_time_to_regain_access``), at most ``cap``, with a little
    jitter so replicas throttled together do not come back in step."""
    backoff = base * 2 ** max(attempt - 1, 0)
    delay = max(backoff, regain_seconds or 0.0)
    return float(min(delay * random.uniform(1.0, 1.1), cap))


class Sender:
    """Delivers queued replies; one per process, shared by the consumer's workers."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        outbox: Outbox,
        settings: CrmSettings,
        graph: GraphClient,
        limiter: SendRateLimiter,
        *,
        engine: AsyncEngine | None = None,
        turn_timeout_seconds: float = 20.0,
    ) -> None:
        self._sessions = sessions
        self._engine: AsyncEngine = engine or sessions.kw["bind"]
        self._outbox = outbox
        self._settings = settings
        self._graph = graph
        self._limiter = limiter
        self._tokens = PageTokens(settings)
        self._turn_timeout = turn_timeout_seconds

    # ----------------------------------------------------------------- policy

    def retry_delay(self, attempt: int, regain_seconds: float | None) -> float:
        """Seconds before attempt ``attempt + 1`` (see :func:`retry_delay`)."""
        return retry_delay(
            attempt,
            regain_seconds,
            base=self._settings.send_retry_base_seconds,
            cap=self._settings.send_retry_max_seconds,
        )

    def _rate(self, platform: str) -> float:
        if platform == "instagram":
            return self._settings.send_rate_instagram
        return self._settings.send_rate_messenger

    def _token(self, sealed: str | None) -> str | None:
        """The channel's own page token, else the configured default one."""
        return self._tokens.token_for(sealed)

    # ------------------------------------------------------------------ flow

    async def handle(self, event: SendRequested) -> Outcome:
        """Deliver the reply ``event`` names, once. Raises :class:`RetryLater` to be tried again."""
        cid = event.correlation_id or correlation_id()
        async with self._sessions() as session:
            message = await load_message(session, event.data.message_id)
        if message is None or message.status != "queued":
            return "skipped"
        async with self._turn(message.conversation_id):
            return await self._attempt(event.data.message_id, cid)

    @asynccontextmanager
    async def _turn(self, conversation_id: int) -> AsyncIterator[None]:
        # A connection of its own in autocommit: the lock outlives the short transactions
        # below without keeping one open while Meta answers. Polling with try-lock keeps
        # the wait bounded without changing the pooled connection's settings.
        key = {"id": conversation_id}
        async with self._engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            deadline = asyncio.get_running_loop().time() + self._turn_timeout
            while not (await conn.execute(text(f"SELECT pg_try_advisory_lock({_SEND_TURN})"), key)).scalar():
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError("another reply of this conversation is still being sent")
                await asyncio.sleep(0.05)
            try:
                yield
            finally:
                try:
                    await conn.execute(text(f"SELECT pg_advisory_unlock({_SEND_TURN})"), key)
                except BaseException as exc:
                    # A session lock survives the pool's ROLLBACK: a connection that may
                    # still hold it is closed (which releases it), never handed back.
                    await conn.invalidate()
                    if not isinstance(exc, Exception):
                        raise
                    log.warning("send turn not released cleanly; connection closed", error=str(exc))

    async def _prepare(self, message_id: int) -> _Prepared | _Closing | None:
        """Decide how to send (or why not) and record the attempt, under the reply's row lock."""
        async with self._outbox.transaction() as session:
            target = await repo.send_target(session, message_id, for_update=True)
            if target is None or target.message.status != "queued":
                return None
            if target.message.send_attempts >= self._settings.send_max_attempts:
                # Attempts that never came back (crashes mid-call) count too: stop somewhere.
                return _Closing("unreachable", "No answer from Meta after repeated attempts.")
            try:
                delivery = decide(
                    target.last_inbound_at, utcnow(), human_agent=await human_agent_enabled(session, self._settings)
                )
            except WindowClosed as exc:
                return _Closing("window_closed", exc.detail)
            token = self._token(target.channel.access_token_sealed)
            if token is None:
                return _Closing("token_invalid", "No page access token is configured for this channel.")
            attempt = await repo.start_attempt(
                session, message_id, messaging_type=delivery.messaging_type, tag=delivery.tag, at=utcnow()
            )
            return _Prepared(target, delivery, token, attempt)

    async def _attempt(self, message_id: int, cid: str | None) -> Outcome:
        prepared = await self._prepare(message_id)
        if prepared is None:
            return "skipped"
        if isinstance(prepared, _Closing):
            return await self._fail(message_id, prepared.reason, None, None, prepared.error, cid)
        channel, contact, message = prepared.target.channel, prepared.target.contact, prepared.target.message
        delivery, token, attempt = prepared.delivery, prepared.token, prepared.attempt
        await self._limiter.acquire(f"{channel.platform}:{channel.external_id}", self._rate(channel.platform))
        try:
            result = await self._graph.send_message(
                channel.external_id,
                contact.external_id,
                _payload(message.text, list(message.attachments)),
                token=token,
                messaging_type=delivery.messaging_type,
                tag=delivery.tag,
            )
        except GraphError as exc:
            return await self._refused(message_id, attempt, exc, cid)
        return await self._delivered(message_id, result.message_id, cid)

    async def _delivered(self, message_id: int, mid: str, cid: str | None) -> Outcome:
        async with self._outbox.transaction() as session:
            message = await load_message(session, message_id)
            assert message is not None
            await lock_conversation(session, message.conversation_id)
            now = utcnow()
            if await repo.finish_sent(session, message_id, mid, now):
                await touch_conversation(session, message.conversation_id, now, inbound=False)
            target = await repo.send_target(session, message_id)
            assert target is not None
            await repo.clear_needs_reauth(session, target.channel.id)  # type: ignore[arg-type]
            await recompute_deal(session, message.deal_id)
            await replies.stage_sent(session, message_id, cid)
        log.info("reply sent", message_id=message_id, mid=mid)
        return "sent"

    async def _refused(self, message_id: int, attempt: int, exc: GraphError, cid: str | None) -> Outcome:
        if exc.is_auth:
            return await self._fail(message_id, "token_invalid", exc.code, exc.subcode, exc.message, cid)
        if exc.is_transient:
            if attempt < self._settings.send_max_attempts:
                delay = self.retry_delay(attempt, exc.retry_after)
                log.warning(
                    "Send API refused for now, will retry",
                    message_id=message_id,
                    attempt=attempt,
                    retry_in_seconds=round(delay, 2),
                    error=str(exc),
                )
                raise RetryLater(delay, str(exc))
            reason: FailureReason = "throttled" if exc.is_throttling else "unreachable"
            return await self._fail(message_id, reason, exc.code, exc.subcode, exc.message, cid)
        return await self._fail(message_id, "meta_error", exc.code, exc.subcode, exc.message, cid)

    async def _fail(
        self,
        message_id: int,
        reason: FailureReason,
        code: int | None,
        subcode: int | None,
        error: str,
        cid: str | None,
    ) -> Outcome:
        async with self._outbox.transaction() as session:
            message = await load_message(session, message_id)
            assert message is not None
            await lock_conversation(session, message.conversation_id)
            if not await repo.finish_failed(session, message_id, code=code, subcode=subcode, error=error):
                return "skipped"  # an echo proved it sent meanwhile
            # The customer is waiting again: a failed reply is no answer.
            await recompute_deal(session, message.deal_id)
            DealRepository(session).add_activity(
                message.deal_id,
                "reply_failed",
                None,
                {"message_id": message_id, "reason": reason, "error_code": code, "error": error[:500]},
            )
            await events.stage_failed(session, message_id, reason, cid)
            if reason == "token_invalid":
                target = await repo.send_target(session, message_id)
                assert target is not None
                assert target.channel.id is not None
                if await repo.flag_needs_reauth(session, target.channel.id):
                    await events.stage_needs_reauth(
                        session,
                        target.channel,
                        code=code,
                        subcode=subcode,
                        error=error,
                        cause=f"message:{message_id}",
                        correlation=cid,
                    )
        log.warning("reply failed", message_id=message_id, reason=reason, error_code=code, error=error)
        return "failed"


def _payload(text_: str | None, attachments: list[dict[str, object]]) -> dict[str, object]:
    """The Send API's ``message`` object for a stored reply."""
    if attachments:
        first = attachments[0]
        return {"attachment": {"type": first["type"], "payload": {"url": first["url"], "is_reusable": True}}}
    return {"text": text_ or ""}
