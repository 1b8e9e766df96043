"""The ingest service: Meta and Telegram webhooks in, durable JetStream events out.

A 200 to Meta means every item of the request is stored in the ``INGEST`` stream. Ingest
depends on NATS alone: without NATS it answers 503 (Meta retries) and reconnects by
itself; without Redis it keeps accepting, deduplicating with JetStream's window.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import nats
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from nats.aio.client import Client as NatsClient
from prometheus_client import Counter, Histogram
from redis.asyncio import Redis

from jggl_common.bus import BusUnavailable, EventPublisher, inbox_prefix
from jggl_common.contracts import (
    MetaItemData,
    MetaItemReceived,
    TelegramUpdateData,
    TelegramUpdateReceived,
    meta_subject,
    stable_event_id,
    utcnow,
)
from jggl_common.health import health_router
from jggl_common.live_settings import LiveSettings
from jggl_common.logs import CORRELATION_HEADER, correlation_from_headers, get_logger, set_correlation_id
from jggl_common.runtime import freeze_startup_heap
from jggl_common.streams import ensure_streams

from .config import IngestSettings
from .dedupe import Deduper
from .meta import split_webhook, verify_signature
from .ratelimit import RateLimiter

log = get_logger(__name__)

RECEIVED = Counter("ingest_webhooks_received_total", "Webhook requests received", ["source"])
REJECTED = Counter("ingest_webhooks_rejected_total", "Webhook requests refused, by reason", ["source", "reason"])
DUPLICATES = Counter("ingest_duplicates_total", "Items recognised as already accepted, by layer", ["layer"])
PUBLISHED = Counter("ingest_events_published_total", "Events stored in the INGEST stream", ["object", "kind"])
PUBLISH_SECONDS = Histogram(
    "ingest_publish_seconds",
    "From the first publish of a request to JetStream's last acknowledgement",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

PRODUCER = "ingest"
# Live settings ingest follows (written by crm's settings API).
LIVE_APP_SECRET = "meta.app_secret"  # noqa: S105 - a key name, not a secret
LIVE_VERIFY_TOKEN = "meta.verify_token"  # noqa: S105
LIVE_TELEGRAM_SECRET = "telegram.webhook_secret"  # noqa: S105
DUPLICATES_JETSTREAM = DUPLICATES.labels("jetstream")
DUPLICATES_REDIS = DUPLICATES.labels("redis")
# Items younger than this skip the Redis lookup; it is well inside the INGEST stream's
# duplicate window (15 min), leaving room for clock skew between Meta and us.
RECENT_MS = 10 * 60 * 1000
FUTURE_SKEW_MS = 60 * 1000


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One event ready to publish, with what deduplication and metrics need."""

    subject: str
    key: str
    payload: bytes
    headers: dict[str, str]
    object: str
    kind: str
    timestamp_ms: int | None = None

    def recent(self, now_ms: float) -> bool:
        """Written by the customer within the last few minutes (by Meta's clock)."""
        return self.timestamp_ms is not None and -FUTURE_SKEW_MS <= now_ms - self.timestamp_ms < RECENT_MS


@functools.cache
def _published(object_: str, kind: str) -> Any:
    # Label lookups take a lock and a dict walk; the label set is small and fixed.
    return PUBLISHED.labels(object_, kind)


class _Refused(Exception):
    def __init__(self, status: int, reason: str, detail: str) -> None:
        self.status, self.reason, self.detail = status, reason, detail


@dataclass
class Ingest:
    """Everything a request needs, created at start-up."""

    settings: IngestSettings
    deduper: Deduper
    limiter: RateLimiter
    publisher: EventPublisher | None = None
    nc: NatsClient | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    live: LiveSettings | None = None
    closing: bool = False

    # Runtime secrets: start from the environment, replaced live by the settings watcher.
    app_secret: str = ""
    verify_token: str = ""
    telegram_secret: str = ""

    def __post_init__(self) -> None:
        self.app_secret = self.settings.meta_app_secret
        self.verify_token = self.settings.meta_verify_token
        self.telegram_secret = self.settings.telegram_webhook_secret

    async def connect(self) -> None:
        """Connect to NATS, retrying until it answers; then keep reconnecting forever."""
        delay = 0.2
        while True:
            try:
                nc = await nats.connect(
                    self.settings.nats_url,
                    name="ingest",
                    inbox_prefix=inbox_prefix("ingest"),
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    connect_timeout=2,
                    allow_reconnect=True,
                    error_cb=_nats_error,
                    disconnected_cb=self._disconnected,
                    reconnected_cb=self._reconnected,
                )
                await ensure_streams(nc.jetstream(), replicas=self.settings.nats_stream_replicas)
            except Exception as exc:
                log.warning("NATS not reachable yet, retrying", error=f"{type(exc).__name__}: {exc}", retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.nc = nc
            self.publisher = EventPublisher(nc, timeout=self.settings.publish_timeout_seconds)
            log.info("connected to NATS")
            await self.follow_live_settings(nc)
            return

    async def _disconnected(self) -> None:
        if not self.closing:
            log.warning("disconnected from NATS; answering 503 until it is back")

    async def _reconnected(self) -> None:
        log.info("reconnected to NATS")
        # A server that lost its storage has no streams: declare them again, or every
        # webhook would get 503 until a restart.
        if self.nc is not None:
            try:
                await ensure_streams(self.nc.jetstream(), replicas=self.settings.nats_stream_replicas)
            except Exception as exc:
                log.warning("could not declare streams after reconnecting", error=f"{type(exc).__name__}: {exc}")

    async def follow_live_settings(self, nc: NatsClient) -> None:
        """Take secrets changed by an admin in crm without a restart.

        Until the bucket answers, the environment's values stay in force.
        """
        live = LiveSettings(
            nc, self.settings.app_key, self.settings.settings_bucket, replicas=self.settings.nats_stream_replicas
        )
        defaults = {
            LIVE_APP_SECRET: self.settings.meta_app_secret,
            LIVE_VERIFY_TOKEN: self.settings.meta_verify_token,
            LIVE_TELEGRAM_SECRET: self.settings.telegram_webhook_secret,
        }

        def changed(key: str, value: str | None) -> None:
            if key not in defaults:
                return
            current = value if value is not None else defaults[key]
            if key == LIVE_APP_SECRET:
                self.app_secret = current
            elif key == LIVE_VERIFY_TOKEN:
                self.verify_token = current
            else:
                self.telegram_secret = current

        live.on_change(changed)
        try:
            await live.start()
        except Exception as exc:
            log.warning("live settings unavailable, using the environment", error=f"{type(exc).__name__}: {exc}")
        self.live = live

    async def publish(self, items: list[Outgoing]) -> None:
        """Store ``items`` durably: returns when JetStream acknowledged every new one.

        Raises :class:`BusUnavailable` when it cannot. Items Redis already knows are
        skipped. Items written in the last few minutes skip the Redis lookup: a repeat of
        them is necessarily inside JetStream's duplicate window, which catches it.
        """
        publisher = self.publisher
        if publisher is None or not publisher.connected:
            raise BusUnavailable("not connected to NATS")
        now_ms = time.time() * 1000
        old = [item for item in items if not item.recent(now_ms)]
        if old:
            seen = {
                item.key
                for item, was_seen in zip(old, await self.deduper.seen([i.key for i in old]), strict=True)
                if was_seen
            }
            if seen:
                kept = [item for item in items if item.key not in seen]
                DUPLICATES_REDIS.inc(len(items) - len(kept))
                items = kept
        if not items:
            return
        started = time.perf_counter()
        acks = await publisher.publish_raw((item.subject, item.payload, item.headers) for item in items)
        PUBLISH_SECONDS.observe(time.perf_counter() - started)
        for item, ack in zip(items, acks, strict=True):
            if ack.duplicate:
                DUPLICATES_JETSTREAM.inc()
            else:
                _published(item.object, item.kind).inc()
        self.deduper.remember([item.key for item in items])


async def _nats_error(exc: Exception) -> None:
    log.warning("NATS error", error=f"{type(exc).__name__}: {exc}")


def _client_address(forwarded_for: str | None, client: Any, trust_forwarded: bool) -> str:
    if trust_forwarded and forwarded_for:
        return forwarded_for.split(",")[0].strip()
    return str(client[0]) if client else "unknown"


def _check_length(length: str | None, limit: int) -> None:
    """Refuse a declared ``Content-Length`` that is malformed or over ``limit`` before reading."""
    if length is not None:
        if not (length.isascii() and length.isdigit()):
            raise _Refused(400, "malformed", "invalid Content-Length")
        digits = length.lstrip("0") or "0"
        if len(digits) > 18 or int(digits) > limit:
            raise _Refused(413, "too_large", f"body larger than {limit} bytes")


async def _read_body(request: Request, limit: int) -> bytes:
    _check_length(request.headers.get("content-length"), limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _Refused(413, "too_large", f"body larger than {limit} bytes")
    return bytes(body)


def _meta_envelope(data: MetaItemData, correlation: str) -> Outgoing:
    # ``data`` was validated by split_webhook; constructing the envelope skips a second pass.
    event = MetaItemReceived.model_construct(
        id=stable_event_id(data.dedupe_key),
        type="ingest.meta.item",
        version=1,
        occurred_at=utcnow(),
        producer=PRODUCER,
        correlation_id=correlation,
        data=data,
    )
    headers = {"Nats-Msg-Id": event.id, CORRELATION_HEADER: correlation}
    return Outgoing(
        subject=meta_subject(data.object, data.kind),
        key=data.dedupe_key,
        payload=event.model_dump_json().encode(),
        headers=headers,
        object=data.object,
        kind=data.kind,
        timestamp_ms=data.timestamp,
    )


_JSON_HEADERS = [(b"content-type", b"application/json")]
_ACCEPTED = {n: json.dumps({"status": "ok", "events": n}).encode() for n in range(1, 11)}
RECEIVED_META = RECEIVED.labels("meta")
META_WEBHOOK_PATH = "/webhooks/meta"
META_WEBHOOK_OPENAPI: dict[str, Any] = {
    "summary": "Meta webhook (Messenger and Instagram)",
    "description": (
        "A signed Messenger or Instagram webhook. 200 means every item is stored in JetStream; "
        "401/403 a missing or wrong X-Hub-Signature-256; 400 a body that is not a Meta webhook; "
        "413 a body over the limit; 429 too many requests from one address; 503 the broker is "
        "unreachable (Meta retries)."
    ),
    "parameters": [
        {"name": "X-Hub-Signature-256", "in": "header", "required": True, "schema": {"type": "string"}},
        {"name": CORRELATION_HEADER, "in": "header", "required": False, "schema": {"type": "string"}},
    ],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
    "responses": {
        "200": {"description": "Stored", "content": {"application/json": {"schema": {"type": "object"}}}},
        **{code: {"description": "Refused"} for code in ("400", "401", "403", "413", "429", "503")},
    },
}


class MetaWebhook:
    """``POST /webhooks/meta`` as a plain ASGI endpoint.

    This is the one hot path of ingest: under load the framework's routing, request and
    response objects would cost more than the work itself (verify, split, publish), so
    it talks to the server directly. It answers exactly like a FastAPI route would.
    """

    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest
        self.settings = ingest.settings

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        RECEIVED_META.inc()
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
        # ASGI header names are lowercase; the correlation header is looked up in its canonical case.
        correlation = correlation_from_headers({CORRELATION_HEADER: headers.get(CORRELATION_HEADER.lower(), "")})
        set_correlation_id(correlation)
        status: int = 200
        answer: bytes | None
        try:
            answer = await self._handle(scope, receive, headers, correlation)
        except _Refused as refused:
            REJECTED.labels("meta", refused.reason).inc()
            status, answer = refused.status, json.dumps({"detail": refused.detail}).encode()
        except BusUnavailable as exc:
            log.warning("webhook not accepted: broker unavailable", error=str(exc))
            REJECTED.labels("meta", "unavailable").inc()
            status, answer = 503, b'{"detail":"temporarily unable to store events, retry later"}'
        if answer is None:  # the client went away before sending its body
            return
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*_JSON_HEADERS, (b"content-length", str(len(answer)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    async def _handle(self, scope: Any, receive: Any, headers: dict[str, str], correlation: str) -> bytes | None:
        """The answer's body, or None when the client disconnected before sending all of it."""
        settings, ingest = self.settings, self.ingest
        address = _client_address(headers.get("x-forwarded-for"), scope.get("client"), settings.trust_forwarded_for)
        if not ingest.limiter.allow(address):
            raise _Refused(429, "rate_limited", "too many requests from this address")
        limit = settings.max_body_bytes
        _check_length(headers.get("content-length"), limit)
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if len(body) > limit:
                raise _Refused(413, "too_large", f"body larger than {limit} bytes")
            if not message.get("more_body", False):
                break
        signature = headers.get("x-hub-signature-256")
        if not signature:
            raise _Refused(401, "signature_missing", "X-Hub-Signature-256 is missing")
        if not verify_signature(body, signature, ingest.app_secret):
            raise _Refused(403, "signature_invalid", "X-Hub-Signature-256 does not match the body")
        try:
            object_, items = split_webhook(json.loads(body))
            # Serialising fails for items nested deeper than JSON encoding allows.
            envelopes = [_meta_envelope(item, correlation) for item in items]
        except (ValueError, RecursionError) as exc:
            raise _Refused(400, "malformed", f"not a Meta webhook: {exc}") from None
        if object_ is None:
            REJECTED.labels("meta", "unsupported_object").inc()
            return b'{"status":"ignored","events":0}'
        await ingest.publish(envelopes)
        return _ACCEPTED.get(len(items)) or json.dumps({"status": "ok", "events": len(items)}).encode()


class IngestApp(FastAPI):
    """The ingest application: FastAPI, with the Meta webhook POST served by :class:`MetaWebhook`."""

    meta_webhook: MetaWebhook

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == META_WEBHOOK_PATH:
            await self.meta_webhook(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        """FastAPI's schema, with the Meta webhook POST it does not route itself."""
        if self.openapi_schema is None:
            schema = super().openapi()
            schema["paths"].setdefault(META_WEBHOOK_PATH, {})["post"] = META_WEBHOOK_OPENAPI
        return self.openapi_schema  # type: ignore[return-value]


def create_app(settings: IngestSettings, redis: Redis | None = None) -> FastAPI:
    """The ingest HTTP application."""
    redis_client = redis or Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
    )
    ingest = Ingest(
        settings=settings,
        deduper=Deduper(redis_client, settings.dedupe_ttl_seconds, timeout=settings.redis_timeout_seconds),
        limiter=RateLimiter(settings.rate_limit_per_minute),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connecting = asyncio.create_task(ingest.connect())
        freeze_startup_heap()
        try:
            yield
        finally:
            connecting.cancel()
            ingest.closing = True
            if ingest.live is not None:
                await ingest.live.stop()
            await ingest.deduper.drain()
            if ingest.nc is not None and not ingest.nc.is_closed:
                if ingest.nc.is_connected:
                    await ingest.nc.drain()
                else:
                    # Reconnecting: there is nothing to drain to, and drain() refuses.
                    await ingest.nc.close()
            await redis_client.aclose()

    app = IngestApp(
        title="JGGL CRM ingest",
        description="Receives Meta (Messenger, Instagram) and Telegram webhooks and stores them in JetStream.",
        version="1.0.0",
        lifespan=lifespan,
    )
    app.state.ingest = ingest
    app.meta_webhook = MetaWebhook(ingest)

    async def nats_ready() -> bool:
        return ingest.publisher is not None and ingest.publisher.connected

    async def redis_ready() -> bool:
        # Redis is optional for accepting webhooks, but ops want to see it.
        return bool(await redis_client.ping())

    app.include_router(health_router({"nats": nats_ready, "redis": redis_ready}))

    def refuse(source: str, status: int, reason: str, detail: str) -> JSONResponse:
        REJECTED.labels(source, reason).inc()
        return JSONResponse({"detail": detail}, status_code=status)

    @app.get("/webhooks/meta", response_class=PlainTextResponse, summary="Meta subscription handshake")
    async def meta_handshake(request: Request) -> Response:
        params = request.query_params
        token = params.get("hub.verify_token", "")
        if (
            params.get("hub.mode") == "subscribe"
            and ingest.verify_token
            and hmac.compare_digest(token.encode(), ingest.verify_token.encode())
        ):
            return PlainTextResponse(params.get("hub.challenge", ""))
        REJECTED.labels("meta", "verify_token").inc()
        return PlainTextResponse("verification failed", status_code=403)

    @app.post("/webhooks/telegram", summary="Telegram Bot API webhook")
    async def telegram_webhook(request: Request) -> Response:
        RECEIVED.labels("telegram").inc()
        correlation = correlation_from_headers(request.headers)
        set_correlation_id(correlation)
        try:
            address = _client_address(
                request.headers.get("x-forwarded-for"), request.client, settings.trust_forwarded_for
            )
            if not ingest.limiter.allow(address):
                raise _Refused(429, "rate_limited", "too many requests from this address")
            token = request.headers.get("x-telegram-bot-api-secret-token", "")
            if not ingest.telegram_secret or not hmac.compare_digest(
                token.encode("utf-8", "replace"), ingest.telegram_secret.encode()
            ):
                raise _Refused(403, "secret_token", "X-Telegram-Bot-Api-Secret-Token does not match")
            body = await _read_body(request, settings.max_body_bytes)
            try:
                update = json.loads(body)
                data = TelegramUpdateData(update_id=update["update_id"], update=update)
                event = TelegramUpdateReceived(
                    id=stable_event_id(f"telegram:{data.update_id}"),
                    producer=PRODUCER,
                    correlation_id=correlation,
                    data=data,
                )
                payload = event.model_dump_json().encode()
            except (ValueError, TypeError, KeyError, RecursionError):
                raise _Refused(400, "malformed", "not a Telegram update") from None
            headers = {"Nats-Msg-Id": event.id, CORRELATION_HEADER: correlation}
            await ingest.publish(
                [Outgoing(event.subject, f"telegram:{data.update_id}", payload, headers, "telegram", "update")]
            )
        except _Refused as refused:
            return refuse("telegram", refused.status, refused.reason, refused.detail)
        except BusUnavailable as exc:
            log.warning("telegram update not accepted: broker unavailable", error=str(exc))
            return refuse("telegram", 503, "unavailable", "temporarily unable to store the update, retry later")
        return JSONResponse({"status": "ok"})

    return app
