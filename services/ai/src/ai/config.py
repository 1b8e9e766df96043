"""ai configuration (environment variables; see the README's table).

The AI settings an admin changes at run time (``ai.enabled``, ``gemini.api_key``,
``gemini.model``, ``ai.debounce_seconds``, ``ai.requests_per_minute``, ``ai.concurrency``)
start from these defaults and follow the live-settings bucket afterwards.
"""

from __future__ import annotations

from pydantic import Field

from jggl_common.settings import ServiceSettings


class AiSettings(ServiceSettings):
    """What ai needs."""

    service_name: str = "ai"
    port: int = 8003
    database_url: str = Field(description="PostgreSQL, e.g. postgresql://postgres@127.0.0.1:5432/jggl")
    db_schema: str = Field(default="ai", description="the Postgres schema ai owns")
    db_pool_size: int = Field(default=8, ge=2)
    ai_enabled: bool = Field(default=True, description="default of ai.enabled: analyse conversations at all")
    gemini_api_key: str = Field(default="", description="no key: heuristic analyses only")
    gemini_model: str = Field(default="gemini-2.5-flash")
    gemini_base_url: str = Field(default="", description="empty: Google's endpoint; the sandbox points it elsewhere")
    gemini_api_version: str = "v1beta"
    gemini_timeout_seconds: float = Field(default=30.0, gt=0)
    ai_debounce_seconds: float = Field(
        default=20.0, ge=0, description="a conversation is analysed once it has been quiet this long"
    )
    ai_max_new_messages: int = Field(
        default=10, ge=1, description="...or once this many new messages arrived (at most once per debounce period)"
    )
    ai_requests_per_minute: float = Field(default=10.0, gt=0, description="Gemini calls per minute per replica")
    ai_concurrency: int = Field(default=2, ge=1, description="Gemini calls in flight per replica")
    ai_token_budget: int = Field(
        default=8000,
        ge=500,
        description="transcript tokens sent per call; earlier parts travel as the last analysis",
    )
    ai_max_attempts: int = Field(
        default=4, ge=1, description="Gemini calls per analysis (429, 503, timeouts) before the heuristic answers"
    )
    ai_retry_max_seconds: float = Field(default=60.0, gt=0, description="longest wait between two calls, even on 429")
    ai_breaker_failures: int = Field(default=5, ge=1, description="failed calls in a row that open the breaker")
    ai_breaker_cooldown_seconds: float = Field(default=30.0, gt=0, description="open breaker: seconds before a trial")
    ai_analyses_retention_days: float = Field(
        default=30.0,
        gt=0,
        description="analyses older than this go (each conversation's newest, and newest Gemini, one stays)",
    )
    outbox_retention_hours: float = Field(
        default=24.0, gt=0, description="how long published events stay in the outbox table"
    )
