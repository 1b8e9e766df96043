"""What the statistics API answers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class ManagerStats(BaseModel):
    """One manager's figures over the range (or the replies typed outside the CRM)."""

    user_id: int | None = Field(description="null for replies typed in Meta's own inbox")
    name: str = Field(description="the manager's name, or e.g. 'Meta inbox'")
    role: str | None
    replies: int = Field(description="replies sent in the range (failed sends excluded)")
    median_response_seconds: float | None = Field(description="median of the replies' response times")
    p90_response_seconds: float | None = Field(description="90th percentile of the replies' response times")
    first_responses: int = Field(description="deals this author answered first, in the range")
    median_first_response_seconds: float | None = Field(description="median time customers waited for them")
    deals_won: int = Field(description="deals assigned to them and won in the range")
    deals_lost: int = Field(description="deals assigned to them and lost in the range")
    open_deals: int = Field(description="deals assigned to them and open now")
    ai_scored_deals: int = Field(description="deals assigned to them that the AI analysed and scored in the range")
    ai_score_average: float | None = Field(
        description="the average AI score (0-10) of how they handled those deals; null if none was scored"
    )


class ManagerStatsReport(BaseModel):
    """Per-manager figures over ``[from, to)``."""

    range_from: datetime = Field(serialization_alias="from")
    range_to: datetime = Field(serialization_alias="to")
    items: list[ManagerStats]


class FunnelStage(BaseModel):
    """How far the range's deals got in the pipeline, at one stage."""

    id: int
    key: str
    name: str
    position: int
    is_active: bool
    reached: int = Field(description="deals that got to this stage or further")
    conversion_to_next: float | None = Field(description="share of them that got to the next stage (0..1)")
    open: int = Field(description="deals open in this stage now")
    won: int = Field(description="deals won while in this stage")
    lost: int = Field(description="deals lost while in this stage")


class FunnelReport(BaseModel):
    """The pipeline funnel of the deals created in ``[from, to)``."""

    range_from: datetime = Field(serialization_alias="from")
    range_to: datetime = Field(serialization_alias="to")
    deals: int = Field(description="deals created in the range")
    open: int
    won: int
    lost: int
    win_rate: float | None = Field(description="won / (won + lost); null before any deal closed")
    stages: list[FunnelStage]
