"""Ingest configuration (environment variables, see the README's table)."""

from __future__ import annotations

from pydantic import Field

from jggl_common.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    """What ingest needs: NATS (required), Redis (optional at run time), the Meta secrets."""

    service_name: str = "ingest"
    port: int = 8001
    redis_url: str = Field(description="Redis for the long deduplication window")
    meta_app_secret: str = Field(default="", description="signs Meta webhooks; empty refuses every POST")
    meta_verify_token: str = Field(default="", description="answers Meta's subscription handshake")
    telegram_webhook_secret: str = Field(default="", description="X-Telegram-Bot-Api-Secret-Token")
    rate_limit_per_minute: int = Field(default=300, ge=1, description="webhook requests per source address")
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024, description="larger bodies get 413")
    dedupe_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    publish_timeout_seconds: float = Field(default=3.0, gt=0)
    redis_timeout_seconds: float = Field(default=0.25, gt=0)
