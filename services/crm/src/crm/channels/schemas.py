"""What the channels API reads and writes. A page token is accepted, never returned."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, Field, SecretStr

from crm.models import Channel
from crm.web.types import CleanStr

__all__ = ["ChannelList", "ChannelRead", "ChannelTokenWrite", "ChannelUpdate", "HealthProblemRead"]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value.strip()


ChannelName = Annotated[CleanStr, Field(min_length=1, max_length=200), AfterValidator(_not_blank)]


class HealthProblemRead(BaseModel):
    """One problem the health check found."""

    code: str = Field(
        description="token_invalid, token_expiring, token_missing, token_check_failed, not_subscribed, "
        "subscription_check_failed or no_webhooks"
    )
    message: str = Field(description="what was found, as a sentence")


class ChannelRead(BaseModel):
    """A connected Facebook Page or Instagram account and its health (never its token)."""

    id: int
    platform: Literal["messenger", "instagram"]
    external_id: str = Field(description="Facebook Page id or Instagram account id")
    name: str | None
    is_active: bool = Field(description="inactive channels are not health-checked")
    needs_reauth: bool = Field(description="Meta refused the page token: set a new one")
    has_own_token: bool = Field(description="a channel-specific page token is set (else META_ACCESS_TOKEN is used)")
    last_webhook_at: datetime | None = Field(description="when the last webhook from this page arrived")
    created_at: datetime
    health_status: Literal["ok", "problem", "unknown"] = Field(
        description="unknown: not checked yet, or Meta could not be asked last time"
    )
    health_problems: list[HealthProblemRead]
    health_checked_at: datetime | None
    token_expires_at: datetime | None = Field(description="from Meta's debug_token; null: never, or not known")

    @classmethod
    def of(cls, channel: Channel) -> Self:
        """From the model, without the sealed token."""
        assert channel.id is not None
        problems: list[dict[str, Any]] = list(channel.health_problems or [])
        return cls(
            id=channel.id,
            platform=channel.platform,
            external_id=channel.external_id,
            name=channel.name,
            is_active=channel.is_active,
            needs_reauth=channel.needs_reauth,
            has_own_token=bool(channel.access_token_sealed),
            last_webhook_at=channel.last_webhook_at,
            created_at=channel.created_at,
            health_status=channel.health_status,
            health_problems=[
                HealthProblemRead(code=str(p.get("code")), message=str(p.get("message") or "")) for p in problems
            ],
            health_checked_at=channel.health_checked_at,
            token_expires_at=channel.token_expires_at,
        )


class ChannelList(BaseModel):
    """Every channel, oldest first."""

    items: list[ChannelRead]


class ChannelTokenWrite(BaseModel):
    """A new page access token for the channel (checked by the service, never echoed back)."""

    token: SecretStr = Field(description="the page access token; stored encrypted, never returned")


class ChannelUpdate(BaseModel):
    """What an admin may change on a channel; fields left out stay as they are."""

    is_active: bool | None = Field(default=None, description="false: no health checks, hidden from the watchdog")
    name: ChannelName | None = None
