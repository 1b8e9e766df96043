"""The ingest service: Meta and Telegram webhooks in, durable JetStream events out.

A 200 to Meta means every item of the request is stored in the ``INGEST`` stream. Ingest
depends on NATS alone: without NATS it answers 503 (Meta retries), ``/readyz`` answers
503 and it reconnects by itself; without Redis it keeps accepting, deduplicating with
JetStream's window, and ``/readyz`` answers 200 ``degraded``.

The parts: :mod:`ingest.runtime` (connections, deduplication, publishing, live
settings), :mod:`ingest.meta_webhook` (Meta's POST as a plain ASGI endpoint, and the
handshake), :mod:`ingest.telegram` (Telegram's webhook), :mod:`ingest.receiving` (what
both webhooks do alike). This module puts them together.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from redis.asyncio import Redis

from jggl_common.health import health_router
from jggl_common.runtime import freeze_startup_heap

from . import meta_webhook
from .config import IngestSettings
from .runtime import Ingest
from .telegram import telegram_router

__all__ = ["IngestApp", "create_app"]


class IngestApp(FastAPI):
    """FastAPI, with Meta's webhook POST served by :class:`~ingest.meta_webhook.MetaWebhook`
    before the framework's stack, and documented in the schema all the same."""

    meta_webhook: meta_webhook.MetaWebhook

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == meta_webhook.PATH and scope["method"] == "POST":
            await self.meta_webhook(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        """FastAPI's schema, with the Meta webhook POST it does not route itself."""
        if self.openapi_schema is None:
            schema = super().openapi()
            schema["paths"].setdefault(meta_webhook.PATH, {})["post"] = meta_webhook.OPENAPI
        return self.openapi_schema  # type: ignore[return-value]


def create_app(settings: IngestSettings, redis: Redis | None = None) -> FastAPI:
    """The ingest HTTP application (Redis from ``REDIS_URL`` unless a client is given)."""
    ingest = Ingest.create(settings, redis)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connecting = asyncio.create_task(ingest.connect())
        freeze_startup_heap()
        try:
            yield
        finally:
            connecting.cancel()
            await ingest.close()

    app = IngestApp(
        title="JGGL CRM ingest",
        description="Receives Meta (Messenger, Instagram) and Telegram webhooks and stores them in JetStream.",
        version="1.0.0",
        lifespan=lifespan,
    )
    app.state.ingest = ingest
    app.meta_webhook = meta_webhook.MetaWebhook(ingest)
    # NATS is required (nothing is accepted without it); Redis is optional (the long
    # deduplication window): while it is down /readyz says "degraded" and stays 200.
    app.include_router(health_router({"nats": ingest.nats_ready}, optional={"redis": ingest.redis_ready}))
    app.include_router(meta_webhook.handshake_router(ingest))
    app.include_router(telegram_router(ingest))
    return app
