"""Builders of the CRM and AI events about one deal, as crm and ai publish them, for the
projection, the deal buttons and the deal commands' tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from jggl_common.contracts import (
    AnalysisCompleted,
    AnalysisCompletedData,
    AnalysisResult,
    ContactRef,
    DealCreated,
    DealSnapshot,
    DealUpdated,
    DealUpdatedData,
    ManagerNotes,
    MessageReceived,
    MessageReceivedData,
    MessageSent,
    MessageSentData,
)

from .conftest import next_id


@dataclass
class Deal:
    """One deal of a test: its id, contact and current state; each builder returns an event."""

    name: str = "Ann Customer"
    platform: str = "messenger"
    stage: str = "new"
    status: str = "open"
    assignee_id: int | None = None
    id: int = field(default_factory=next_id)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(hours=1))

    @property
    def contact(self) -> ContactRef:
        return ContactRef(
            id=self.id,
            platform=self.platform,
            external_id=f"psid-{self.id}",
            display_name=self.name,
        )

    def snapshot(self) -> DealSnapshot:
        return DealSnapshot(
            id=self.id,
            conversation_id=self.id,
            channel_id=1,
            platform=self.platform,
            stage=self.stage,
            status=self.status,
            assignee_id=self.assignee_id,
            created_at=self.created_at,
            contact=self.contact,
        )

    def created(self, at: datetime) -> DealCreated:
        return DealCreated(producer="crm", occurred_at=at, data=self.snapshot())

    def updated(self, at: datetime, **changes: Any) -> DealUpdated:
        """The deal after ``changes`` (field=new value), applied to this builder too."""
        before = {name: getattr(self, name) for name in changes}
        for name, value in changes.items():
            setattr(self, name, value)
        return DealUpdated(
            producer="crm",
            occurred_at=at,
            data=DealUpdatedData(
                deal=self.snapshot(), changes={name: (before[name], value) for name, value in changes.items()}
            ),
        )

    def received(self, at: datetime, text: str | None, *, first: bool = False, **extra: Any) -> MessageReceived:
        return MessageReceived(
            producer="crm",
            occurred_at=at,
            data=MessageReceivedData(
                message_id=next_id(),
                mid=f"m.{next_id()}",
                deal_id=self.id,
                conversation_id=self.id,
                kind=extra.pop("kind", "text"),
                text=text,
                sent_at=at,
                is_first_message=first,
                deal_stage=self.stage,
                assignee_id=self.assignee_id,
                contact=self.contact,
                **extra,
            ),
        )

    def sent(self, at: datetime, text: str, author: int | None, response_seconds: int | None = None) -> MessageSent:
        return MessageSent(
            producer="crm",
            occurred_at=at,
            data=MessageSentData(
                message_id=next_id(),
                mid=f"m.out.{next_id()}",
                deal_id=self.id,
                conversation_id=self.id,
                kind="text",
                text=text,
                sent_at=at,
                messaging_type="RESPONSE",
                author_user_id=author,
                response_seconds=response_seconds,
                deal_stage=self.stage,
                assignee_id=self.assignee_id,
                contact=self.contact,
            ),
        )

    def analysed(self, version: int, summary: str, *, provider: str = "heuristic") -> AnalysisCompleted:
        return AnalysisCompleted(
            producer="ai",
            data=AnalysisCompletedData(
                analysis_id=next_id(),
                conversation_id=self.id,
                deal_id=self.id,
                version=version,
                provider=provider,
                result=AnalysisResult(
                    summary=summary,
                    intent="price",
                    temperature="warm",
                    manager_score=None,
                    manager_notes=ManagerNotes(speed="-", politeness="-", needs_discovery="-", next_step="-"),
                    next_action="Send the price",
                    language="en",
                ),
                analyzed_at=datetime.now(UTC),
            ),
        )
