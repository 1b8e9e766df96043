"""What the settings API reads and answers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from crm.web.types import CleanStr
from jggl_common.crypto import fingerprint, mask

from .service import SettingState


class SettingAuthor(BaseModel):
    """The admin who last overrode a setting."""

    id: int | None
    email: str | None


class SettingRead(BaseModel):
    """A runtime setting as it is in force; secrets are masked, never returned in clear."""

    key: str = Field(description="e.g. sla.minutes")
    description: str
    secret: bool = Field(description="stored encrypted and shown masked")
    value: str | None = Field(
        description="the value in force; for secrets only 'set · fp <fingerprint>', no character of it; null when unset"
    )
    fingerprint: str | None = Field(
        default=None,
        description=(
            "secrets: 8 hex digits of a keyed HMAC-SHA256 of the value, equal for equal values "
            "(tells whether a secret changed without revealing it); null for other settings and when unset"
        ),
    )
    source: Literal["database", "environment", "unset"] = Field(
        description="database: overridden by an admin; environment: the default from the service's configuration"
    )
    env: str = Field(description="the environment variable giving the default")
    updated_at: datetime | None = Field(description="when an admin last overrode it")
    updated_by: SettingAuthor | None
    problem: str | None = Field(default=None, description="why the stored value cannot be used, if it cannot")

    @classmethod
    def of(cls, state: SettingState) -> Self:
        """From the service's view; masks secrets."""
        return cls(
            key=state.key,
            description=state.spec.description,
            secret=state.spec.secret,
            value=mask(state.value) if state.spec.secret else state.value,
            fingerprint=fingerprint(state.value) if state.spec.secret and state.value else None,
            source=state.source,
            env=state.spec.env,
            updated_at=state.updated_at,
            updated_by=SettingAuthor(id=state.updated_by_id, email=state.updated_by_email)
            if state.source == "database"
            else None,
            problem=state.problem,
        )


class SettingChange(SettingRead):
    """A setting after a change."""

    changed: bool = Field(description="false when the request left the setting as it was")
    propagated: bool = Field(
        description="the services got the new value already; if false they get it as soon as the broker answers"
    )


class SettingList(BaseModel):
    """Every runtime setting."""

    items: list[SettingRead]


def _as_text(value: Any) -> Any:
    # A JSON true or 30 is what an admin means by "true" or "30".
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return value


class SettingWrite(BaseModel):
    """A new value for a setting."""

    model_config = ConfigDict(extra="forbid")

    value: Annotated[CleanStr, BeforeValidator(_as_text), Field(max_length=8192)] = Field(
        description="the value as text (numbers and booleans are accepted as such)"
    )
