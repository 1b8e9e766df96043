"""Ingest in-process against the real NATS JetStream and Redis, and ways to look at what it stored.

The shared servers serve other tests at the same time, so nothing here purges or
deletes a stream: every test uses identifiers of its own and reads back only the
``INGEST`` messages that appeared after it started, picking out its own by those ids.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import nats
import pytest
import pytest_asyncio
from fastapi import FastAPI
from nats.aio.client import Client as NatsClient
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from prometheus_client.parser import text_string_to_metric_families

from ingest.app import create_app
from ingest.config import IngestSettings
from jggl_common.streams import INGEST, ensure_streams
from jggl_common.testing import TEST_NATS_URL, TEST_REDIS_URL

APP_SECRET = "ingest-tests-app-secret"
VERIFY_TOKEN = "ingest-tests-verify-token"
TELEGRAM_SECRET = "ingest-tests-telegram-secret"

SIGNED: Any = object()
"""Default of ``signature=``: sign the body with the configured app secret."""


# --------------------------------------------------------------------------- bodies


@dataclass(frozen=True)
class MetaKit:
    """Builds and signs Meta webhook bodies the way Meta sends them."""

    app_secret: str = APP_SECRET
    verify_token: str = VERIFY_TOKEN
    telegram_secret: str = TELEGRAM_SECRET

    @staticmethod
    def new_id() -> str:
        """A fresh numeric id (page, account, PSID) no other test uses."""
        return str(10**15 + secrets.randbits(52))

    @staticmethod
    def new_mid() -> str:
        """A fresh Meta message id."""
        return "m_" + secrets.token_hex(16)

    @staticmethod
    def encode(payload: Any) -> bytes:
        """Compact JSON with every non-ASCII character escaped, as Meta serialises."""
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode("ascii")

    def sign(self, body: bytes, secret: str | None = None) -> str:
        """The ``X-Hub-Signature-256`` value of ``body``."""
        key = self.app_secret if secret is None else secret
        return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()

    @staticmethod
    def webhook(object_: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {"object": object_, "entry": entries}

    @staticmethod
    def entry(entry_id: str, items: list[dict[str, Any]], *, standby: bool = False, time: int = 1767225600000):
        return {"id": entry_id, "time": time, ("standby" if standby else "messaging"): items}

    def text(self, page: str, text: str = "hello", *, sender: str | None = None, mid: str | None = None):
        """A customer's text message to ``page``."""
        return {
            "sender": {"id": sender or self.new_id()},
            "recipient": {"id": page},
            "timestamp": 1767225600000 + secrets.randbelow(10**6),
            "message": {"mid": mid or self.new_mid(), "text": text},
        }

    def messages(self, count: int = 1, object_: str = "page") -> tuple[str, dict[str, Any]]:
        """``(page id, webhook)`` with ``count`` text messages to a fresh page."""
        page = self.new_id()
        return page, self.webhook(object_, [self.entry(page, [self.text(page, f"msg {i}") for i in range(count)])])


@pytest.fixture
def meta() -> MetaKit:
    return MetaKit()


# --------------------------------------------------------------------------- the app


def make_settings(**overrides: Any) -> IngestSettings:
    values: dict[str, Any] = {
        "app_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        "nats_url": TEST_NATS_URL,
        "redis_url": TEST_REDIS_URL,
        "app_url": "http://crm.test",
        "meta_app_secret": APP_SECRET,
        "meta_verify_token": VERIFY_TOKEN,
        "telegram_webhook_secret": TELEGRAM_SECRET,
        "rate_limit_per_minute": 1_000_000,
        "dedupe_ttl_seconds": 120,
        "publish_timeout_seconds": 2.0,
        # A live-settings bucket of the test's own: values other tests write elsewhere never apply.
        "settings_bucket": "SETTINGS_T" + secrets.token_hex(5).upper(),
    }
    values.update(overrides)
    return IngestSettings(**values)


@pytest.fixture
def settings_for() -> Callable[..., IngestSettings]:
    """Settings for a test ingest: the shared servers and a very high rate limit unless overridden."""
    return make_settings


@dataclass
class Metrics:
    """One scrape of ``/metrics``."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    @classmethod
    def parse(cls, text: str) -> Metrics:
        samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return cls(samples)

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` carrying at least ``labels`` (0 when none)."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)


@dataclass
class RunningIngest:
    """An ingest app started with its lifespan, and an HTTP client talking to it."""

    app: FastAPI
    client: httpx.AsyncClient
    kit: MetaKit = field(default_factory=MetaKit)

    async def post_meta(
        self,
        payload: Mapping[str, Any] | bytes,
        *,
        signature: str | None = SIGNED,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """POST a webhook; a mapping is encoded like Meta does; signed unless told otherwise."""
        body = payload if isinstance(payload, bytes) else self.kit.encode(payload)
        sent = {"Content-Type": "application/json", **(headers or {})}
        if signature is SIGNED:
            sent["X-Hub-Signature-256"] = self.kit.sign(body)
        elif signature is not None:
            sent["X-Hub-Signature-256"] = signature
        return await self.client.post("/webhooks/meta", content=body, headers=sent)

    async def post_telegram(self, payload: Any, *, secret: str | None = TELEGRAM_SECRET) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        return await self.client.post("/webhooks/telegram", content=body, headers=headers)

    async def metrics(self) -> Metrics:
        response = await self.client.get("/metrics")
        assert response.status_code == 200
        return Metrics.parse(response.text)


async def _wait_connected(app: FastAPI, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        ingest = app.state.ingest
        publisher = ingest.publisher
        # Secrets are settled once the live settings have been read.
        if publisher is not None and publisher.connected and getattr(ingest, "live", True) is not None:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"ingest did not connect to NATS within {timeout}s")


async def _delete_settings_bucket(settings: IngestSettings) -> None:
    bucket = getattr(settings, "settings_bucket", None)
    if settings.nats_url != TEST_NATS_URL or not bucket:
        return  # private servers go away with their test
    nc = await nats.connect(TEST_NATS_URL, connect_timeout=2, max_reconnect_attempts=0)
    try:
        await nc.jetstream().delete_key_value(bucket)
    except NotFoundError:
        pass
    finally:
        await nc.close()


@asynccontextmanager
async def run_ingest(settings: IngestSettings, *, wait_connected: bool = True) -> AsyncIterator[RunningIngest]:
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=15.0) as client:
                if wait_connected:
                    await _wait_connected(app)
                yield RunningIngest(app, client)
    finally:
        await _delete_settings_bucket(settings)


@pytest.fixture
def start_ingest() -> Callable[..., AbstractAsyncContextManager[RunningIngest]]:
    """``async with start_ingest(**settings overrides) as ingest:`` runs an app of the test's own."""

    def start(*, wait_connected: bool = True, **overrides: Any) -> AbstractAsyncContextManager[RunningIngest]:
        return run_ingest(make_settings(**overrides), wait_connected=wait_connected)

    return start


@pytest_asyncio.fixture
async def ingest() -> AsyncIterator[RunningIngest]:
    """Ingest on the shared NATS and Redis with the default test settings."""
    async with run_ingest(make_settings()) as running:
        yield running


# --------------------------------------------------------------------------- the stream


@dataclass
class Stored:
    """One message of the ``INGEST`` stream."""

    seq: int
    subject: str
    headers: dict[str, str]
    event: dict[str, Any]

    @property
    def data(self) -> dict[str, Any]:
        data = self.event.get("data")
        return data if isinstance(data, dict) else {}


def _decode(raw: bytes) -> dict[str, Any]:
    # Other tests may put anything on ingest.> subjects; only envelopes matter here.
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class IngestStream:
    """Reads the ``INGEST`` stream of one NATS server, from a remembered position on."""

    def __init__(self, nc: NatsClient) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.start = 1

    async def last_seq(self) -> int:
        return int((await self.js.stream_info(INGEST.name)).state.last_seq)

    async def mark(self) -> None:
        """Later reads see only messages stored from now on."""
        self.start = await self.last_seq() + 1

    async def read(self, timeout: float = 10.0) -> list[Stored]:
        """Every message stored since the mark, up to the last one stored right now."""
        end = await self.last_seq()
        if end < self.start:
            return []
        sub = await self.js.subscribe(
            "ingest.>",
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.start),
        )
        found: list[Stored] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise AssertionError(f"INGEST messages {self.start}..{end} not all readable in {timeout}s")
                try:
                    msg = await sub.next_msg(timeout=min(remaining, 1.0))
                except NatsTimeoutError:
                    continue
                seq = msg.metadata.sequence.stream
                found.append(Stored(seq, msg.subject, dict(msg.headers or {}), _decode(msg.data)))
                if seq >= end:
                    return found
        finally:
            await sub.unsubscribe()

    async def meta_events(self, entry_id: str) -> list[Stored]:
        """The Meta events of entry (page or account) ``entry_id`` stored since the mark."""
        return [
            m
            for m in await self.read()
            if m.event.get("type") == "ingest.meta.item" and m.data.get("entry_id") == entry_id
        ]

    async def telegram_updates(self, update_id: int) -> list[Stored]:
        return [
            m
            for m in await self.read()
            if m.event.get("type") == "ingest.telegram.update" and m.data.get("update_id") == update_id
        ]


@asynccontextmanager
async def open_stream(url: str) -> AsyncIterator[IngestStream]:
    nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=2, name="ingest-tests")
    try:
        await ensure_streams(nc.jetstream(), (INGEST,))
        yield IngestStream(nc)
    finally:
        await nc.close()


@pytest.fixture
def stream_at() -> Callable[[str], AbstractAsyncContextManager[IngestStream]]:
    """``async with stream_at(nats_url) as stream:`` reads the INGEST stream of that server."""
    return open_stream


@pytest_asyncio.fixture
async def stream() -> AsyncIterator[IngestStream]:
    """The shared server's INGEST stream, marked at the start of the test."""
    async with open_stream(TEST_NATS_URL) as opened:
        await opened.mark()
        yield opened
