"""Publishing to and consuming from JetStream, the way every service must.

* :class:`EventPublisher` publishes envelopes with ``Nats-Msg-Id`` = event id and the
  correlation id in the headers. Publishes are pipelined: each call sends at once and
  waits only for its own acknowledgements, so concurrent callers share the broker round
  trip instead of queueing behind each other. A returned call means JetStream stored it.
* :class:`ServiceBus` declares a durable pull consumer on a FastStream broker whose
  messages are acknowledged only after the handler returns. A failing message is
  redelivered with growing delays up to ``RetryPolicy.max_deliveries`` times, then moved
  to the ``DLQ`` stream with its error and acknowledged: never dropped, never retried
  forever. (FastStream's own default would terminate, i.e. lose, a failing message.)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from faststream import AckPolicy
from faststream._internal.middlewares import BaseMiddleware
from faststream.exceptions import AckMessage, HandlerException, NackMessage
from faststream.message import StreamMessage
from faststream.nats import JStream, NatsBroker, PullSub
from nats import errors as nats_errors
from nats.aio.client import Client as NatsClient
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy, PubAck
from prometheus_client import Counter, Histogram

from .contracts import DeadLetter, DeadLetterData, Envelope
from .logs import CORRELATION_HEADER, correlation_from_headers, correlation_id, get_logger, set_correlation_id
from .streams import StreamSpec, ensure_streams

__all__ = [
    "BusUnavailable",
    "EventPublisher",
    "PermanentFailure",
    "RetryPolicy",
    "ServiceBus",
    "dead_letter_subject",
    "inbox_prefix",
]

log = get_logger(__name__)

CONSUMED = Counter(
    "jggl_messages_consumed_total",
    "Messages handled by durable consumers, by outcome (ok, retried, dead_lettered)",
    ["consumer", "outcome"],
)
HANDLE_SECONDS = Histogram(
    "jggl_message_handle_seconds",
    "Time spent handling one message",
    ["consumer"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


class _IdleFetchNoise(logging.Filter):
    """Drops what FastStream logs when an idle pull consumer's fetch times out.

    nats-py's ``fetch`` raises a bare ``asyncio.TimeoutError`` on some empty polls, which
    FastStream's pull loop does not catch (it catches ``nats.errors.TimeoutError``): its
    supervisor restarts the loop at once, logging an ERROR traceback the first time and
    an INFO line every time. Nothing is lost or delayed, so an idle service must not
    look broken in its logs; every other failure of the loop is still logged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("callback for ") and message.endswith(" is being executed..."):
            return False
        if " raised an exception, retrying..." in message and record.exc_info:
            exc = record.exc_info[1]
            return type(exc) is not TimeoutError
        return True


def inbox_prefix(service: str) -> str:
    """Where the broker answers ``service``'s requests and delivers its pulled messages:
    ``_INBOX_<service>``. The broker lets each service subscribe to its own prefix only
    (deploy/nats/auth.conf), so no service can read the replies meant for another."""
    return f"_INBOX_{service}"


class BusUnavailable(RuntimeError):
    """The broker did not acknowledge in time, or there is no connection to it."""


class PermanentFailure(Exception):
    """Raised by a handler for a message that can never succeed (it is malformed, say).

    The message goes to the DLQ at once instead of being retried.
    """


class EventPublisher:
    """Publishes contracts to JetStream with deduplication headers.

    ``publish_many`` returns only when JetStream has acknowledged every message, and
    raises :class:`BusUnavailable` when it cannot say so within ``timeout`` seconds.
    Acknowledgements come back on one wildcard inbox and are matched to their publish by
    a counter: far cheaper per message than a request/reply round trip each.
    """

    def __init__(self, nc: NatsClient, *, timeout: float = 5.0) -> None:
        self._nc = nc
        self._timeout = timeout
        self._prefix = ""
        self._waiting: dict[str, asyncio.Future[PubAck]] = {}
        self._counter = 0
        self._inbox_lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        """Whether the underlying connection is up right now."""
        return bool(self._nc.is_connected)

    @staticmethod
    def headers_for(envelope: Envelope) -> dict[str, str]:
        """``Nats-Msg-Id`` and the correlation id of ``envelope``."""
        headers = {"Nats-Msg-Id": envelope.id}
        cid = envelope.correlation_id or correlation_id()
        if cid:
            headers[CORRELATION_HEADER] = cid
        return headers

    async def publish(self, envelope: Envelope, subject: str | None = None) -> PubAck:
        """Publish one envelope (on ``subject``, or the contract's own subject)."""
        (ack,) = await self.publish_many([(subject or envelope.subject, envelope)])
        return ack

    async def publish_many(self, messages: Iterable[tuple[str, Envelope]]) -> list[PubAck]:
        """Publish several envelopes and wait until JetStream stored all of them."""
        return await self.publish_raw(
            (subject, envelope.model_dump_json().encode(), self.headers_for(envelope)) for subject, envelope in messages
        )

    async def _inbox(self) -> str:
        if not self._prefix:
            async with self._inbox_lock:
                if not self._prefix:
                    prefix = self._nc.new_inbox() + "."
                    await self._nc.subscribe(prefix + "*", cb=self._acknowledged)
                    self._prefix = prefix
        return self._prefix

    async def _acknowledged(self, msg: Any) -> None:
        future = self._waiting.pop(msg.subject[len(self._prefix) :], None)
        if future is None or future.done():
            return
        if not msg.data:  # a status message: no stream takes this subject ("no responders")
            future.set_exception(BusUnavailable(f"no stream stored the message ({(msg.headers or {}).get('Status')})"))
            return
        try:
            answer = json.loads(msg.data)
        except ValueError:
            future.set_exception(BusUnavailable("unreadable acknowledgement"))
            return
        if "error" in answer:
            future.set_exception(BusUnavailable(f"JetStream refused the message: {answer['error']}"))
            return
        future.set_result(PubAck(stream=answer.get("stream"), seq=answer.get("seq"), duplicate=answer.get("duplicate")))

    async def publish_raw(self, messages: Iterable[tuple[str, bytes, dict[str, str]]]) -> list[PubAck]:
        """Publish already serialised payloads with their headers; same guarantee."""
        if not self._nc.is_connected:
            raise BusUnavailable("not connected to NATS")
        prefix = await self._inbox()
        loop = asyncio.get_running_loop()
        tokens: list[str] = []
        try:
            async with asyncio.timeout(self._timeout):
                futures = []
                for subject, payload, headers in messages:
                    self._counter += 1
                    token = str(self._counter)
                    future: asyncio.Future[PubAck] = loop.create_future()
                    self._waiting[token] = future
                    tokens.append(token)
                    futures.append(future)
                    await self._nc.publish(subject, payload, reply=prefix + token, headers=headers)
                return [await future for future in futures]
        except TimeoutError as exc:
            raise BusUnavailable("JetStream did not acknowledge in time") from exc
        except BusUnavailable:
            raise
        except Exception as exc:
            raise BusUnavailable(f"publish failed: {type(exc).__name__}: {exc}") from exc
        finally:
            for token in tokens:
                self._waiting.pop(token, None)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how late a failing message is tried again before the DLQ."""

    max_deliveries: int = 5
    backoff: Sequence[float] = field(default=(0.5, 2.0, 5.0, 15.0, 30.0))

    def delay(self, deliveries: int) -> float:
        """Seconds to wait before delivery number ``deliveries + 1``."""
        return float(self.backoff[min(max(deliveries - 1, 0), len(self.backoff) - 1)])


def dead_letter_subject(service: str, original_subject: str) -> str:
    """``dlq.<service>.<original subject>``."""
    return f"dlq.{service}.{original_subject}"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


class ServiceBus:
    """A FastStream NATS broker whose durable consumers never lose a failing message.

    Create one per service process, register handlers with :meth:`consumer`, start it
    with ``await bus.broker.start()`` and stop it with :meth:`stop`. Publishing goes through :attr:`publisher` once
    the broker is connected.
    """

    def __init__(self, nats_url: str, service: str, **broker_options: Any) -> None:
        self.service = service
        self._policies: dict[str, RetryPolicy] = {}
        self._publisher: EventPublisher | None = None
        consumer_log = logging.getLogger(f"{service}.consumer")
        if not any(isinstance(f, _IdleFetchNoise) for f in consumer_log.filters):
            consumer_log.addFilter(_IdleFetchNoise())
        self.broker = NatsBroker(
            nats_url,
            name=service,
            # One line per message belongs at DEBUG; failures are logged by this module.
            logger=consumer_log,
            log_level=logging.DEBUG,
            middlewares=[self._middleware()],
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            **{"inbox_prefix": inbox_prefix(service), **broker_options},
        )

    async def stop(self) -> None:
        """Stop consuming and close the connection; messages in flight finish and are
        acknowledged. While NATS is unreachable the connection cannot drain: stopping goes
        on (what was not acknowledged is delivered again after its ack wait) instead of
        failing the service's shutdown."""
        try:
            await self.broker.stop()
        except (nats_errors.ConnectionReconnectingError, nats_errors.ConnectionClosedError) as exc:
            log.warning(
                "NATS unreachable while stopping; unacknowledged messages will be redelivered", error=_describe(exc)
            )
            with contextlib.suppress(Exception):
                await self.broker.connection.close()

    async def connect(self, *, replicas: int | None = None, max_delay: float = 10.0) -> None:
        """Connect to NATS and declare the streams (``replicas`` as ``ensure_streams``),
        retrying with growing delays until it works: a service may start before its broker.

        On a broker with per-service users only crm may declare streams; the others find
        them declared (and wait here until crm has done so)."""
        delay = 0.5
        while True:
            try:
                await self.broker.connect()
                await ensure_streams(self.broker.connection.jetstream(), replicas=replicas)
                return
            except Exception as exc:
                log.warning("NATS or its streams not ready yet, retrying", error=_describe(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, max_delay)

    @property
    def publisher(self) -> EventPublisher:
        """An :class:`EventPublisher` over the broker's connection (after ``start``)."""
        if self._publisher is None:
            self._publisher = EventPublisher(self.broker.connection)
        return self._publisher

    def consumer(
        self,
        *,
        durable: str,
        stream: StreamSpec,
        subject: str,
        policy: RetryPolicy | None = None,
        batch_size: int = 32,
        max_workers: int | None = None,
        ack_wait: float = 30.0,
        max_ack_pending: int = 1000,
    ) -> Any:
        """A decorator registering a handler as the durable pull consumer ``durable``.

        Replicas using the same ``durable`` share the work. The server-side
        ``max_deliver`` is a safety net above the policy, so only the policy decides.
        """
        policy = policy or RetryPolicy()
        self._policies[durable] = policy
        options: dict[str, Any] = {}
        if max_workers:
            options["max_workers"] = max_workers
        return self.broker.subscriber(
            subject,
            stream=JStream(stream.name, declare=False),
            durable=durable,
            pull_sub=PullSub(batch_size=batch_size, timeout=1.0),
            config=ConsumerConfig(
                durable_name=durable,
                ack_policy=JsAckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=ack_wait,
                max_deliver=policy.max_deliveries + 3,
                max_ack_pending=max_ack_pending,
                filter_subject=subject,
            ),
            ack_policy=AckPolicy.NACK_ON_ERROR,
            # FastStream's own default is the shared _INBOX., which the broker refuses.
            inbox_prefix=(inbox_prefix(self.service) + ".").encode(),
            **options,
        )

    def _middleware(self) -> Callable[..., BaseMiddleware[Any, Any]]:
        bus = self

        class DeadLetterMiddleware(BaseMiddleware[Any, Any]):
            async def consume_scope(
                self, call_next: Callable[[StreamMessage[Any]], Awaitable[Any]], msg: StreamMessage[Any]
            ) -> Any:
                set_correlation_id(correlation_from_headers(msg.headers))
                raw = msg.raw_message
                consumer = _consumer_name(raw)
                started = time.perf_counter()
                try:
                    result = await call_next(msg)
                except HandlerException:
                    raise
                except Exception as exc:
                    if consumer is None:
                        raise
                    await bus._failed(consumer, raw, exc)
                    raise  # unreachable: _failed always raises
                finally:
                    if consumer is not None:
                        HANDLE_SECONDS.labels(consumer).observe(time.perf_counter() - started)
                    set_correlation_id(None)
                if consumer is not None:
                    CONSUMED.labels(consumer, "ok").inc()
                return result

        return DeadLetterMiddleware

    async def _failed(self, consumer: str, raw: Any, exc: Exception) -> None:
        policy = self._policies.get(consumer, RetryPolicy())
        deliveries = int(raw.metadata.num_delivered)
        if deliveries < policy.max_deliveries and not isinstance(exc, PermanentFailure):
            delay = policy.delay(deliveries)
            CONSUMED.labels(consumer, "retried").inc()
            log.warning(
                "message failed, will retry",
                consumer=consumer,
                subject=raw.subject,
                deliveries=deliveries,
                retry_in_seconds=delay,
                error=_describe(exc),
            )
            raise NackMessage(delay=delay) from exc
        body: bytes = raw.data
        try:
            text, b64 = body.decode("utf-8"), None
        except UnicodeDecodeError:
            text, b64 = body.decode("utf-8", "replace"), base64.b64encode(body).decode()
        seq = raw.metadata.sequence.stream if raw.metadata.sequence else None
        letter = DeadLetter(
            id=f"{consumer}:{raw.metadata.stream}:{seq}",
            producer=self.service,
            correlation_id=correlation_id(),
            data=DeadLetterData(
                service=self.service,
                consumer=consumer,
                original_subject=raw.subject,
                original_stream=raw.metadata.stream,
                original_sequence=seq,
                original_headers=dict(raw.headers or {}),
                payload=text,
                payload_base64=b64,
                deliveries=deliveries,
                error=_describe(exc),
            ),
        )
        # If this publish fails the exception propagates, the message is not
        # acknowledged and JetStream delivers it again: still nothing lost.
        await self.publisher.publish(letter, dead_letter_subject(self.service, raw.subject))
        CONSUMED.labels(consumer, "dead_lettered").inc()
        log.error(
            "message moved to the DLQ",
            consumer=consumer,
            subject=raw.subject,
            deliveries=deliveries,
            error=_describe(exc),
        )
        raise AckMessage() from exc


def _consumer_name(raw: Any) -> str | None:
    """The durable consumer a JetStream message came from; None for core NATS messages."""
    reply = getattr(raw, "reply", "") or ""
    if not reply.startswith("$JS.ACK."):
        return None
    return str(raw.metadata.consumer)
