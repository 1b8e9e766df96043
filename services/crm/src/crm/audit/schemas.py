"""What the audit log and system log endpoints answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from crm.models import AuditLogEntry, SystemLogEntry

SystemLogKind = Literal["dead_letter", "integration_failure", "channel_health"]


class AuditEntryRead(BaseModel):
    """One change: who, what, from which value to which (secrets masked), when, from where."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    occurred_at: datetime
    actor_user_id: int | None
    actor_email: str | None
    action: str = Field(description="setting.set (an override) or setting.reset (back to the environment)")
    key: str
    old_value: str | None = Field(description="the value in force before; masked for secrets")
    new_value: str | None = Field(description="the value in force after; masked for secrets")
    client_address: str | None
    details: dict[str, Any] = Field(description="e.g. old_source / new_source: database, environment or unset")

    @classmethod
    def of(cls, entry: AuditLogEntry) -> Self:
        """From the model."""
        return cls.model_validate(entry)


class AuditPage(BaseModel):
    """Audit entries newest first; pass ``next_cursor`` back as ``cursor`` for older ones."""

    items: list[AuditEntryRead]
    next_cursor: str | None = Field(description="null on the last page")


class SystemEntryRead(BaseModel):
    """An integration failure, a message a service gave up on, or a channel's health change."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    occurred_at: datetime
    recorded_at: datetime
    kind: SystemLogKind
    source: str = Field(description="the service (dead letters) or the integration that failed")
    subject: str | None = Field(description="the original NATS subject of a dead letter")
    message: str = Field(description="the error")
    deliveries: int | None = Field(description="how many times the consumer tried a dead letter")
    details: dict[str, Any]

    @classmethod
    def of(cls, entry: SystemLogEntry) -> Self:
        """From the model."""
        return cls.model_validate(entry)


class SystemPage(BaseModel):
    """System log entries newest first; pass ``next_cursor`` back as ``cursor`` for older ones."""

    items: list[SystemEntryRead]
    next_cursor: str | None = Field(description="null on the last page")
