"""One live event stream per browser connection, read from the ``CRM`` stream.

Each connection gets its own ephemeral JetStream pull consumer (in memory, no acks) on
crm's existing NATS connection, filtered to the live event subjects and starting right
after the stream sequence the browser last saw (``Last-Event-ID``) or, for a new
connection, after the stream's current end. The stream sequence is each event's SSE
``id``, so a reconnecting browser resumes exactly where it stopped, whichever replica it
reaches.

The connection pulls one event at a time, and only when the previous one has been
handed to the client: crm holds at most one event per connection, however slow the
client or long the backlog after a reconnect. A slow client reads JetStream at its own
pace instead of growing crm's memory, and nothing is dropped or skipped.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from datetime import datetime
from typing import Any

import nats.errors
from fastapi.sse import ServerSentEvent
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import Counter, Gauge

from jggl_common.contracts import utcnow
from jggl_common.logs import get_logger
from jggl_common.streams import CRM

from .visibility import LIVE_EVENTS, visible_to

log = get_logger(__name__)

OPEN_STREAMS = Gauge("crm_live_streams_open", "Live event streams (GET /api/events) open in this replica")
STREAMS_ENDED = Counter(
    "crm_live_streams_ended_total",
    "Live event streams ended by crm, by reason "
    "(session_expired, session_revoked, session_check_failed, shutdown, broker_error)",
    ["reason"],
)
EVENTS_SENT = Counter("crm_live_events_sent_total", "Events sent on live event streams")

RECONNECT_MILLISECONDS = 3000
"""How long a browser waits before reconnecting (the SSE ``retry`` field)."""

MIN_WAIT_SECONDS = 0.05
"""The shortest pull from JetStream (a pull's expiry must stay positive)."""

CONSUMER_INACTIVE_SECONDS = 60.0
"""JetStream removes a stream's consumer this long after its connection stopped pulling."""

SessionCheck = Callable[[], Awaitable[bool]]
"""Whether the session a stream was opened with is still valid (the user read again)."""


class LiveEvents:
    """Opens live event streams for users and ends them all on shutdown."""

    def __init__(self, nc: NatsClient, *, heartbeat_seconds: float) -> None:
        self._nc = nc
        self._heartbeat = heartbeat_seconds
        self._open: set[LiveStream] = set()
        self._closing = False

    async def open(
        self,
        *,
        user_id: int,
        admin: bool,
        after: int | None,
        expires_at: datetime,
        session_valid: SessionCheck | None = None,
    ) -> LiveStream:
        """A stream of what the user may see, after stream sequence ``after`` (None: from now on).

        ``session_valid`` is asked once per heartbeat interval; the stream ends when it says
        no (sign-out, deactivation, role or password change).
        Raises ``ConnectionError`` when crm is shutting down or JetStream does not answer.
        """
        if self._closing:
            raise ConnectionError("crm is shutting down")
        stream = LiveStream(
            user_id=user_id,
            admin=admin,
            heartbeat=self._heartbeat,
            expires_at=expires_at,
            session_valid=session_valid,
        )
        try:
            await stream.subscribe(self._nc.jetstream(), after)
        except Exception as exc:
            raise ConnectionError(f"JetStream did not answer: {type(exc).__name__}: {exc}") from exc
        self._open.add(stream)
        stream.on_close = self._open.discard
        return stream

    def close(self) -> None:
        """End every open stream (and refuse new ones): crm is shutting down."""
        self._closing = True
        for stream in list(self._open):
            stream.end("shutdown")


class LiveStream:
    """One connection's events: filtered, pulled one at a time, as Server-Sent Events."""

    def __init__(
        self,
        *,
        user_id: int,
        admin: bool,
        heartbeat: float,
        expires_at: datetime,
        session_valid: SessionCheck | None = None,
    ) -> None:
        self._user_id = user_id
        self._admin = admin
        self._heartbeat = heartbeat
        self._expires_at = expires_at
        self._session_valid = session_valid
        self._sub: JetStreamContext.PullSubscription | None = None
        self._ending = asyncio.Event()
        self.resumes_after = 0
        self.ended: str | None = None
        self.on_close: Callable[[LiveStream], None] | None = None

    async def subscribe(self, js: JetStreamContext, after: int | None) -> None:
        """Create the consumer; ``resumes_after`` is then the sequence the stream starts after."""
        last = (await js.stream_info(CRM.name)).state.last_seq
        # An id beyond the stream's end (the stream was recreated) cannot be resumed: start now.
        self.resumes_after = after if after is not None and after <= last else last
        self._sub = await js.pull_subscribe(
            "crm.>",
            stream=CRM.name,
            config=ConsumerConfig(
                filter_subjects=list(LIVE_EVENTS),
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self.resumes_after + 1,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=CONSUMER_INACTIVE_SECONDS,
                mem_storage=True,
                num_replicas=1,
            ),
        )
        OPEN_STREAMS.inc()

    def end(self, reason: str) -> None:
        """Stop this stream after the event in hand; the browser resumes from its last id."""
        if self.ended is None:
            self.ended = reason
            STREAMS_ENDED.labels(reason).inc()
            self._ending.set()

    async def aclose(self) -> None:
        """Release the consumer (the connection is over, however it ended)."""
        sub, self._sub = self._sub, None
        if sub is None:
            return
        OPEN_STREAMS.dec()
        if self.ended is None:
            self.ended = "closed"
        try:
            await sub.unsubscribe()
        except Exception as exc:
            # JetStream drops the consumer by itself once it is inactive.
            log.info("live events: unsubscribe failed", error=f"{type(exc).__name__}: {exc}")
        if self.on_close is not None:
            self.on_close(self)

    async def _next(self, timeout: float) -> Msg | None:
        """The next event from JetStream, or None after ``timeout`` seconds or when the stream ends."""
        assert self._sub is not None
        fetch = asyncio.ensure_future(self._sub.fetch(1, timeout=timeout))
        ending = asyncio.ensure_future(self._ending.wait())
        try:
            await asyncio.wait((fetch, ending), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (fetch, ending):
                if not waiter.done():
                    waiter.cancel()
                    with suppress(asyncio.CancelledError):
                        await waiter
        if not fetch.done() or fetch.cancelled():
            return None
        try:
            (msg,) = fetch.result()
        except nats.errors.TimeoutError:
            return None
        return msg

    def _visible(self, msg: Msg) -> dict[str, Any] | None:
        try:
            event = json.loads(msg.data)
        except ValueError:
            log.warning("live events: unreadable event skipped", subject=msg.subject)
            return None
        if not isinstance(event, dict) or not visible_to(event, user_id=self._user_id, admin=self._admin):
            return None
        return event

    async def events(self) -> AsyncIterator[ServerSentEvent]:
        """``ready`` first (with the id the stream resumes after), then the events; comments as heartbeats."""
        yield ServerSentEvent(
            event="ready",
            id=str(self.resumes_after),
            data={"last_event_id": self.resumes_after},
            retry=RECONNECT_MILLISECONDS,
        )
        clock = asyncio.get_running_loop().time
        quiet_since = checked_at = clock()
        while self.ended is None:
            left = (self._expires_at - utcnow()).total_seconds()
            if left <= 0:
                # The session expired: the browser reconnects, gets a 401 and signs in again.
                self.end("session_expired")
                return
            # Once per heartbeat interval, busy or idle: a session revoked meanwhile ends the stream
            # (the browser reconnects and gets a 401, or opens a stream fit for its new role).
            until_check = self._heartbeat - (clock() - checked_at)
            if self._session_valid is not None and until_check <= 0:
                checked_at = clock()
                try:
                    valid = await self._session_valid()
                except Exception as exc:
                    log.warning(
                        "live events: the session check failed; the client reconnects",
                        error=f"{type(exc).__name__}: {exc}",
                    )
                    self.end("session_check_failed")
                    return
                if not valid:
                    self.end("session_revoked")
                    return
                continue
            # Counted from the last thing sent: events the user may not see do not keep the line warm.
            until_heartbeat = self._heartbeat - (clock() - quiet_since)
            if until_heartbeat <= 0:
                yield ServerSentEvent(comment="heartbeat")
                quiet_since = clock()
                continue
            wait = min(until_heartbeat, left)
            if self._session_valid is not None:
                wait = min(wait, until_check)
            try:
                msg = await self._next(max(MIN_WAIT_SECONDS, wait))
            except Exception as exc:
                log.warning(
                    "live events: JetStream failed; the client reconnects", error=f"{type(exc).__name__}: {exc}"
                )
                self.end("broker_error")
                return
            event = None if msg is None else self._visible(msg)
            if msg is not None and event is not None:
                EVENTS_SENT.inc()
                yield ServerSentEvent(
                    id=str(msg.metadata.sequence.stream), event=str(event["type"]), raw_data=msg.data.decode()
                )
                quiet_since = clock()
