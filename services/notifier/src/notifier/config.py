"""notifier configuration (environment variables; see the README's table)."""

from __future__ import annotations

from pydantic import Field

from jggl_common.settings import ServiceSettings


class NotifierSettings(ServiceSettings):
    """What the notifier needs."""

    service_name: str = "notifier"
    port: int = 8002
    database_url: str = Field(description="PostgreSQL, e.g. postgresql://postgres@127.0.0.1:5432/jggl")
    db_schema: str = Field(default="notifier", description="the Postgres schema the notifier owns")
    db_pool_size: int = Field(default=5, ge=2)
    telegram_bot_token: str = Field(default="", description="empty: notifications are recorded as skipped")
    telegram_api_url: str = Field(default="", description="empty: Telegram's Bot API; the sandbox points it elsewhere")
    telegram_max_retry_after: int = Field(
        default=3, ge=0, description="times one send is repeated after a 429's retry_after before it fails"
    )
    telegram_retry_after_cap_seconds: float = Field(
        default=60.0, gt=0, description="longest wait honoured for one 429 (a longer retry_after fails the send)"
    )
