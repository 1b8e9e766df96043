"""notifier configuration (environment variables; see the README's table)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from jggl_common.settings import ServiceSettings


class NotifierSettings(ServiceSettings):
    """What the notifier needs."""

    service_name: str = "notifier"
    port: int = 8002
    database_url: str = Field(description="PostgreSQL, e.g. postgresql://postgres@127.0.0.1:5432/jggl")
    db_schema: str = Field(default="notifier", description="the Postgres schema the notifier owns")
    db_pool_size: int = Field(default=5, ge=2)
    business_timezone: str = Field(
        default="UTC", description="IANA time zone of the business (live setting business.timezone)"
    )
    notify_unassigned_leads: Literal["everyone", "admins", "round_robin"] = Field(
        default="everyone",
        description=(
            "who is told about a new lead (and an SLA breach) nobody is assigned to: everyone, admins, "
            "or round_robin (each deal to one manager, in turn, who also hears its later notifications) "
            "(live setting notify.unassigned_leads)"
        ),
    )
    quiet_hours_sweep_seconds: float = Field(
        default=5.0, gt=0, description="how often each replica sends the notifications quiet hours held, once due"
    )
    telegram_bot_token: str = Field(default="", description="empty: notifications are recorded as skipped")
    telegram_api_url: str = Field(default="", description="empty: Telegram's Bot API; the sandbox points it elsewhere")
    telegram_max_retry_after: int = Field(
        default=3, ge=0, description="times one send is repeated after a 429's retry_after before it fails"
    )
    telegram_retry_after_cap_seconds: float = Field(
        default=60.0, gt=0, description="longest wait honoured for one 429 (a longer retry_after fails the send)"
    )
    telegram_per_chat_per_second: float = Field(
        default=1.0, ge=0, description="sends to one chat per second (a burst of 3 allowed); 0: not paced"
    )
    telegram_global_per_second: float = Field(
        default=30.0, ge=0, description="sends of the bot per second, per notifier process; 0: not paced"
    )
    telegram_mode: Literal["webhook", "polling"] = Field(
        default="webhook",
        description="webhook: updates come through ingest; polling: getUpdates (live setting telegram.mode)",
    )
    telegram_webhook_secret: str = Field(
        default="", description="the secret ingest checks; without it the webhook is not registered"
    )
    telegram_webhook_check_seconds: float = Field(
        default=60.0, gt=0, description="how often the registered webhook is checked (and set again if changed)"
    )
    telegram_poll_timeout_seconds: int = Field(default=25, ge=0, le=50, description="getUpdates long-poll timeout")
    telegram_poll_lock_retry_seconds: float = Field(
        default=5.0, gt=0, description="how often a replica not polling tries to take over polling"
    )
    notifications_retention_days: float = Field(
        default=30.0,
        ge=8,
        description="sent, skipped and failed notifications, and answered button actions, are kept this long",
    )
    handled_updates_retention_days: float = Field(
        default=14.0, ge=8, description="Telegram update ids already handled are kept this long (INGEST replays 7 days)"
    )
    outbox_retention_hours: float = Field(
        default=24.0, gt=0, description="how long published events stay in the outbox table"
    )
