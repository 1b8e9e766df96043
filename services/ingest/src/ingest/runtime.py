"""What every ingest request uses, created once at start-up: the NATS connection and the
publisher, the Redis deduplication window, the rate limiter, the secrets that follow
live settings, and the metrics.

``Ingest.publish`` is the one way an event leaves ingest: it returns when JetStream has
acknowledged every new item (a 200 to Meta means stored) and raises
:class:`~jggl_common.bus.BusUnavailable` when it cannot say so.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from prometheus_client import Counter, Histogram
from redis.asyncio import Redis

from jggl_common.bus import BusUnavailable, EventPublisher, inbox_prefix
from jggl_common.forwarded import TrustedProxies
from jggl_common.live_settings import SERVICE_SETTINGS, LiveSettings
from jggl_common.logs import get_logger
from jggl_common.streams import ensure_streams

from .config import IngestSettings
from .dedupe import Deduper
from .ratelimit import RateLimiter

__all__ = [
    "DUPLICATES",
    "PUBLISHED",
    "PUBLISH_SECONDS",
    "RECEIVED",
    "RECENT_MS",
    "REJECTED",
    "Ingest",
    "Outgoing",
]

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
DUPLICATES_JETSTREAM = DUPLICATES.labels("jetstream")
DUPLICATES_REDIS = DUPLICATES.labels("redis")

# Live settings ingest follows (written by crm's settings API).
LIVE_APP_SECRET = "meta.app_secret"  # noqa: S105 - a key name, not a secret
LIVE_VERIFY_TOKEN = "meta.verify_token"  # noqa: S105
LIVE_TELEGRAM_SECRET = "telegram.webhook_secret"  # noqa: S105
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


async def _nats_error(exc: Exception) -> None:
    log.warning("NATS error", error=f"{type(exc).__name__}: {exc}")


@dataclass
class Ingest:
    """Everything a request needs, created at start-up (:meth:`create`)."""

    settings: IngestSettings
    redis: Redis
    deduper: Deduper
    limiter: RateLimiter
    trusted_proxies: TrustedProxies
    publisher: EventPublisher | None = None
    nc: NatsClient | None = None
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

    @classmethod
    def create(cls, settings: IngestSettings, redis: Redis | None = None) -> Ingest:
        """The runtime for ``settings``; Redis from ``REDIS_URL`` unless a client is given."""
        client = redis or Redis.from_url(
            settings.redis_url,
            socket_timeout=settings.redis_timeout_seconds,
            socket_connect_timeout=settings.redis_timeout_seconds,
        )
        return cls(
            settings=settings,
            redis=client,
            deduper=Deduper(client, settings.dedupe_ttl_seconds, timeout=settings.redis_timeout_seconds),
            limiter=RateLimiter(settings.rate_limit_per_minute),
            trusted_proxies=settings.trusted_proxies,
        )

    async def connect(self) -> None:
        """Connect to NATS, retrying until it answers; then keep reconnecting forever."""
        delay = 0.2
        while True:
            try:
                nc = await nats.connect(
                    self.settings.nats_url,
                    name="ingest",
                    # The only inbox the broker lets ingest read (deploy/nats/auth.conf).
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

    async def close(self) -> None:
        """Stop following settings, finish Redis writes, drain NATS, close Redis."""
        self.closing = True
        if self.live is not None:
            await self.live.stop()
        await self.deduper.drain()
        if self.nc is not None and not self.nc.is_closed:
            if self.nc.is_connected:
                await self.nc.drain()
            else:
                # Reconnecting: there is nothing to drain to, and drain() refuses.
                await self.nc.close()
        await self.redis.aclose()

    async def nats_ready(self) -> bool:
        """Connected to NATS: without it nothing can be accepted."""
        return self.publisher is not None and self.publisher.connected

    async def redis_ready(self) -> bool:
        """Redis answers: without it webhooks are still accepted (JetStream's window deduplicates)."""
        return bool(await self.redis.ping())

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
            nc,
            self.settings.app_keys,
            self.settings.settings_bucket,
            replicas=self.settings.nats_stream_replicas,
            keys=SERVICE_SETTINGS["ingest"],
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
                for item, was_seen in zip(
                    old, await self.deduper.seen([i.key for i in old], [i.timestamp_ms for i in old]), strict=True
                )
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
